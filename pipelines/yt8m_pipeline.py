"""The yt8m pipeline, as the picture reads:

    preprocess -> ParallelFor(model configs): train -> ensemble (Collected) -> gate -> If(publish): publish
"""

from kfp import dsl

from yt8m import config as config_lib

from yt8m_pipeline.components.ensemble import ensemble_op
from yt8m_pipeline.components.gate import gate_op
from yt8m_pipeline.components.preprocess import preprocess_op
from yt8m_pipeline.components.publish import publish_op
from yt8m_pipeline.components.train import train_op

PIPELINE_NAME = "yt8m-pipeline"


@dsl.pipeline(name=PIPELINE_NAME, description="YouTube-8M: preprocess, train per config and fold, ensemble, "
                                              "quantize into one graph, gate, publish")
def yt8m_pipeline(train_pattern: str, model_configs: list, run_config: dict, publish_root: str,
                  test_pattern: str = "", num_classes: int = 3862, folds: int = 5, holdout_fraction: float = 0.1,
                  quantize_min_elements: int = 17000, oof_top_k: int = 20, min_gap: float = 0.8,
                  max_size_bytes: int = 1 << 30,
                  beam_runner: str = "local"):
    data = preprocess_op(input_pattern=train_pattern, num_classes=num_classes, folds=folds,
                         holdout_fraction=holdout_fraction, runner=beam_runner).set_display_name("preprocess")
    with dsl.ParallelFor(items=model_configs, name="model-configs") as model_config:
        trained = train_op(model_config=model_config, dataset=data.outputs["dataset"],
                           top_k=oof_top_k).set_display_name("train")
    merged = ensemble_op(members=dsl.Collected(trained.outputs["model"]), dataset=data.outputs["dataset"],
                         quantize_min_elements=quantize_min_elements).set_display_name("ensemble")
    gate = gate_op(merged_model=merged.outputs["merged_model"], dataset=data.outputs["dataset"], min_gap=min_gap,
                   max_size_bytes=max_size_bytes).set_display_name("gate")
    with dsl.If(gate.outputs["Output"] == "publish", name="gate-passed"):
        publish_op(merged_model=merged.outputs["merged_model"], dataset=data.outputs["dataset"],
                   gate_metrics=gate.outputs["metrics"], publish_root=publish_root, test_pattern=test_pattern,
                   run_config=run_config).set_display_name("publish")


def pipeline_arguments(cfg: config_lib.RunConfig, train_pattern: str, test_pattern: str, publish_root: str,
                       num_classes: int, beam_runner: str = "local") -> dict:
    """The pipeline's parameters from a run config (the same for kfp.local and Vertex)."""
    return {
        "train_pattern": train_pattern,
        "test_pattern": test_pattern,
        "model_configs": [config_lib.to_dict(m) for m in cfg.models],
        "run_config": config_lib.to_dict(cfg),
        "publish_root": publish_root,
        "num_classes": num_classes,
        "folds": cfg.data.folds,
        "holdout_fraction": cfg.data.holdout_fraction,
        "quantize_min_elements": cfg.ensemble.quantize_min_elements,
        "oof_top_k": cfg.ensemble.top_k_predictions,
        "min_gap": cfg.gate.min_gap,
        "max_size_bytes": cfg.gate.max_size_bytes,
        "beam_runner": beam_runner,
    }


def compile_pipeline(package_path: str) -> str:
    from kfp import compiler

    compiler.Compiler().compile(yt8m_pipeline, package_path=package_path)
    return package_path
