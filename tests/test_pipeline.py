"""The pipeline compiles to IR with the fan-out, the collection and the gate condition."""

import yaml

from yt8m import config
from yt8m_pipeline import local_run
from yt8m_pipeline.pipelines import yt8m_pipeline as pipeline_def


def test_pipeline_compiles_with_parallel_training_collected_ensemble_and_gated_publish(tmp_path):
    path = pipeline_def.compile_pipeline(str(tmp_path / "pipeline.yaml"))
    ir = yaml.safe_load(open(path))
    tasks = ir["root"]["dag"]["tasks"]
    assert {"preprocess-op", "ensemble-op", "gate-op"} <= set(tasks)
    loop = next(t for t in tasks.values() if "parameterIterator" in t)
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("model_configs")
    condition = next(t for t in tasks.values() if "triggerPolicy" in t)
    assert "publish" in condition["triggerPolicy"]["condition"]
    components = ir["components"]
    assert components["comp-train-op"]["outputDefinitions"]["artifacts"]["model"]["artifactType"]["schemaTitle"] == \
        "system.Model"
    assert components["comp-ensemble-op"]["inputDefinitions"]["artifacts"]["members"]["isArtifactList"]
    images = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values()}
    assert len(images) == 2  # the CPU and the GPU (trainer) image, from yt8m_pipeline.images


def test_pipeline_arguments_come_from_the_run_config():
    cfg = config.load_run_config(local_run.default_config_path())
    args = pipeline_def.pipeline_arguments(cfg, "train/*.tfrecord", "test/*.tfrecord", "/pub", 100)
    assert args["folds"] == cfg.data.folds and args["min_gap"] == cfg.gate.min_gap
    assert [m["name"] for m in args["model_configs"]] == [m.name for m in cfg.models]
