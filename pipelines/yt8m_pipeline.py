"""The yt8m pipeline, as the picture reads:

    importer(raw data + fingerprint) -> preprocess
      -> ParallelFor((config, fold) pairs): train fold        -> collect folds (Collected)
      -> ParallelFor(configs): train final member (+ its OOF) -> ensemble (Collected) -> gate -> If(publish): publish

Every training task (K folds and the final member of each config) is a task of its own, one
GPU each on Vertex, with retries; both loops are capped at ``vertex.parallelism`` (the GPU
quota) and never overlap, so at most that many GPUs are in use.

Why two flat loops and a collection step rather than ParallelFor(configs) > ParallelFor(folds)
with the final member after the inner loop (checked on kfp 2.17):
- kfp.local cannot run nested loops whose inner body uses the outer loop's item: it substitutes
  the inner item for every ``*-loop-item`` input (orchestrator/task_spec_utils.py), and it
  cannot resolve an inner loop over a field of the outer item (``...-subvar-...`` is mangled).
- the compiler cannot pass a ``dsl.Collected`` list of artifacts into another ParallelFor (it
  treats it as a parameter: TypeError in build_component_spec_for_group).
So the fold loop runs over a flat list of (config, fold) items built by ``pipeline_arguments``,
``collect_folds_op`` turns the Collected fold outputs into ONE artifact, and each final-member
task reads its config's folds from it (``training.member_fold_dirs``). The price: the final
members start when every fold is done; with more training tasks than the GPU cap the loops
are quota-bound anyway.

Display names are constants ("train fold", "train final member"): kfp's ``set_display_name``
takes a string at compile time, not a loop item. The config name and fold are in each task's
output artifact metadata (``name``, ``fold``) and the local console's task lines.

Resources, retries and the parallelism cap are properties of the compiled IR, so the pipeline
is built from a run config's ``vertex`` section (``build_pipeline``); ``pipeline_arguments``
maps the rest of the run config to the pipeline's parameters. Both serve ``yt8m run --local``
and ``yt8m submit``.
"""

from kfp import dsl

from yt8m import config as config_lib
from yt8m import fingerprint

from yt8m_pipeline.components.collect_folds import collect_folds_op
from yt8m_pipeline.components.ensemble import ensemble_op
from yt8m_pipeline.components.gate import gate_op
from yt8m_pipeline.components.preprocess import preprocess_op
from yt8m_pipeline.components.publish import publish_op
from yt8m_pipeline.components.train import train_final_op, train_op

PIPELINE_NAME = "yt8m-pipeline"


def _limits(task: dsl.PipelineTask, resources) -> dsl.PipelineTask:
    return task.set_cpu_limit(resources.cpu).set_memory_limit(resources.memory)


def _training(task: dsl.PipelineTask, vertex: config_lib.VertexConfig) -> dsl.PipelineTask:
    """GPUs, CPU, memory and retries of a training task (a retried task resumes from its checkpoints)."""
    t, retry = vertex.resources.train, vertex.training_retry
    _limits(task, t)
    if t.accelerator_count:
        task.set_accelerator_type(t.accelerator_type).set_accelerator_limit(t.accelerator_count)
    return task.set_retry(num_retries=retry.num_retries, backoff_duration=retry.backoff_duration,
                          backoff_factor=retry.backoff_factor, backoff_max_duration=retry.backoff_max_duration)


def build_pipeline(vertex: config_lib.VertexConfig | None = None):
    """The pipeline function with ``vertex``'s resources, retries and parallelism cap compiled in."""
    v = vertex or config_lib.VertexConfig()
    r = v.resources

    @dsl.pipeline(name=PIPELINE_NAME, description="YouTube-8M: preprocess, train per config and fold, ensemble, "
                                                  "quantize into one graph, gate, publish")
    def yt8m_pipeline(train_pattern: str, data_fingerprint: str, data_summary: str, model_configs: list,
                      fold_tasks: list, run_config: dict, publish_root: str, test_pattern: str = "",
                      num_classes: int = 3862, folds: int = 5, holdout_fraction: float = 0.1,
                      quantize_min_elements: int = 17000, oof_top_k: int = 20, min_gap: float = 0.8,
                      max_size_bytes: int = 1 << 30, beam_runner: str = "local", register_model: bool = False,
                      gcp_project: str = "", gcp_region: str = ""):
        raw = dsl.importer(artifact_uri=train_pattern, artifact_class=dsl.Dataset, reimport=False,
                           metadata={"pattern": train_pattern, "fingerprint": data_fingerprint,
                                     "summary": data_summary}).set_display_name("raw data")
        data = _limits(preprocess_op(raw_data=raw.output, data_fingerprint=data_fingerprint, num_classes=num_classes,
                                     folds=folds, holdout_fraction=holdout_fraction, runner=beam_runner),
                       r.preprocess).set_display_name("preprocess")
        dataset = data.outputs["dataset"]
        with dsl.ParallelFor(items=fold_tasks, parallelism=v.parallelism, name="folds") as item:
            fold = _training(train_op(model_config=item.model_config, fold=item.fold, dataset=dataset,
                                      top_k=oof_top_k), v).set_display_name("train fold")
        collected = _limits(collect_folds_op(fold_outputs=dsl.Collected(fold.outputs["oof_predictions"])),
                            r.collect).set_display_name("collect folds")
        with dsl.ParallelFor(items=model_configs, parallelism=v.parallelism, name="members") as model_config:
            member = _training(train_final_op(model_config=model_config, dataset=dataset,
                                              collected_folds=collected.outputs["collected_folds"],
                                              top_k=oof_top_k), v).set_display_name("train final member")
        merged = _limits(ensemble_op(members=dsl.Collected(member.outputs["model"]), dataset=dataset,
                                     quantize_min_elements=quantize_min_elements), r.ensemble)
        merged.set_display_name("ensemble")
        gate = _limits(gate_op(merged_model=merged.outputs["merged_model"], dataset=dataset, min_gap=min_gap,
                               max_size_bytes=max_size_bytes), r.gate).set_display_name("gate")
        with dsl.If(gate.outputs["Output"] == "publish", name="gate-passed"):
            published = publish_op(merged_model=merged.outputs["merged_model"], dataset=dataset,
                                   gate_metrics=gate.outputs["metrics"], publish_root=publish_root,
                                   test_pattern=test_pattern, run_config=run_config, register_model=register_model,
                                   gcp_project=gcp_project, gcp_region=gcp_region)
            _limits(published, r.publish).set_display_name("publish").set_caching_options(False)  # never cached

    return yt8m_pipeline


def yt8m_pipeline(**arguments):
    """Run the pipeline (under kfp.local) built from the ``vertex`` section of ``arguments["run_config"]``."""
    vertex = config_lib.vertex_config_from_dict(arguments["run_config"].get("vertex"), "run_config.vertex")
    return build_pipeline(vertex)(**arguments)


def pipeline_arguments(cfg: config_lib.RunConfig, train_pattern: str, test_pattern: str, publish_root: str,
                       num_classes: int, beam_runner: str = "local", *,
                       data_fingerprint: fingerprint.Fingerprint | None = None, gcp_project: str = "",
                       gcp_region: str = "") -> dict:
    """The pipeline's parameters from a run config (the same for kfp.local and Vertex).

    ``data_fingerprint`` defaults to fingerprinting ``train_pattern``'s files now (a listing, no
    reads). With a ``gcp_project`` (a run submitted to Vertex) the publish task also registers the
    model when ``vertex.model_registry.register`` says so; local runs never do.
    """
    data_fingerprint = data_fingerprint or fingerprint.fingerprint_files(train_pattern, "training data")
    model_configs = [config_lib.to_dict(m) for m in cfg.models]
    return {
        "train_pattern": train_pattern,
        "data_fingerprint": data_fingerprint.digest,
        "data_summary": data_fingerprint.summary,
        "test_pattern": test_pattern,
        "model_configs": model_configs,
        "fold_tasks": [{"model_config": m, "fold": k} for m in model_configs for k in range(cfg.data.folds)],
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
        "register_model": bool(gcp_project) and cfg.vertex.model_registry.register,
        "gcp_project": gcp_project,
        "gcp_region": gcp_region,
    }


def compile_pipeline(package_path: str, cfg: config_lib.RunConfig | None = None) -> str:
    """kfp IR YAML of the pipeline built from ``cfg``'s ``vertex`` section (the defaults without a config)."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(cfg.vertex if cfg else None), package_path=package_path)
    return package_path
