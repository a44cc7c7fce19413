"""The pipeline compiles to IR with the data importer, the per-fold fan-out, the collections, the
resources and retries of the run config, the gate condition and an uncached publish."""

import dataclasses
import os
import re

import pytest
import yaml

from yt8m import config, fingerprint
from yt8m_pipeline import local_run
from yt8m_pipeline.pipelines import yt8m_pipeline as pipeline_def

TRAINING_TASKS = ("train-op", "train-final-op")


def _compile(tmp_path, cfg=None) -> dict:
    return yaml.safe_load(open(pipeline_def.compile_pipeline(str(tmp_path / "pipeline.yaml"), cfg)))


def _all_tasks(ir) -> dict:
    """{task name: (its task spec, the name of the DAG holding it)} over the root and every sub-DAG."""
    tasks = {name: (spec, "root") for name, spec in ir["root"]["dag"]["tasks"].items()}
    for comp_name, comp in ir["components"].items():
        for name, spec in comp.get("dag", {}).get("tasks", {}).items():
            tasks[name] = (spec, comp_name)
    return tasks


def _resources(ir, task_name) -> dict:
    spec, _ = _all_tasks(ir)[task_name]
    executor = ir["components"][spec["componentRef"]["name"]]["executorLabel"]
    return ir["deploymentSpec"]["executors"][executor]["container"].get("resources", {})


def _loop(ir, items_parameter) -> dict:
    return next(t for t in ir["root"]["dag"]["tasks"].values()
                if t.get("parameterIterator", {}).get("items", {}).get("inputParameter", "").endswith(items_parameter))


def test_per_fold_fan_out_collects_folds_into_final_members_then_the_ensemble(tmp_path):
    ir = _compile(tmp_path)
    tasks = _all_tasks(ir)
    root = ir["root"]["dag"]["tasks"]
    assert {"importer", "preprocess-op", "collect-folds-op", "ensemble-op", "gate-op"} <= set(root)
    # K folds x configs: one training task per (config, fold) item, inside the first loop ...
    folds = _loop(ir, "fold_tasks")
    fold_dag = folds["componentRef"]["name"]
    train, holder = tasks["train-op"]
    assert holder == fold_dag and train["taskInfo"]["name"] == "train fold"
    selectors = {k: v.get("parameterExpressionSelector", "") for k, v in train["inputs"]["parameters"].items()}
    assert '["model_config"]' in selectors["model_config"] and '["fold"]' in selectors["fold"]
    # ... every fold output collected into one artifact ...
    collect = root["collect-folds-op"]["inputs"]["artifacts"]["fold_outputs"]["taskOutputArtifact"]
    assert collect["producerTask"] == [n for n, t in root.items() if t is folds][0]
    assert ir["components"]["comp-collect-folds-op"]["inputDefinitions"]["artifacts"]["fold_outputs"]["isArtifactList"]
    # ... which each config's final member (second loop) reads, and the members go to the ensemble.
    members = _loop(ir, "model_configs")
    final, holder = tasks["train-final-op"]
    assert holder == members["componentRef"]["name"] and final["taskInfo"]["name"] == "train final member"
    assert "collect-folds-op" in members["dependentTasks"]
    components = ir["components"]
    assert components["comp-train-final-op"]["outputDefinitions"]["artifacts"]["model"]["artifactType"][
        "schemaTitle"] == "system.Model"
    assert components["comp-ensemble-op"]["inputDefinitions"]["artifacts"]["members"]["isArtifactList"]
    condition = next(t for t in root.values() if "triggerPolicy" in t)
    assert "publish" in condition["triggerPolicy"]["condition"]
    # the gate gets the run's gate settings and the publish root (to score the previous release)
    gate_params = root["gate-op"]["inputs"]["parameters"]
    assert gate_params["gate_config"]["componentInputParameter"] == "gate_config"
    assert gate_params["publish_root"]["componentInputParameter"] == "publish_root"
    assert components["comp-gate-op"]["outputDefinitions"]["artifacts"]["release_report"]["artifactType"][
        "schemaTitle"] == "system.HTML"
    images = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values() if "container" in e}
    assert len(images) == 2  # the CPU and the GPU (trainer) image, from yt8m_pipeline.images


def test_every_training_task_has_its_gpu_resources_and_retries_with_backoff(tmp_path):
    ir = _compile(tmp_path)
    for task in TRAINING_TASKS:
        resources = _resources(ir, task)
        assert resources["accelerator"]["resourceType"] == "NVIDIA_L4", task
        assert resources["accelerator"]["resourceCount"] == "1", task
        assert (resources["resourceCpuLimit"], resources["resourceMemoryLimit"]) == ("8", "32G"), task
        spec, _ = _all_tasks(ir)[task]
        assert spec["retryPolicy"] == {"maxRetryCount": 3, "backoffDuration": "60s", "backoffFactor": 2.0,
                                       "backoffMaxDuration": "3600s"}, task
    for loop in (_loop(ir, "fold_tasks"), _loop(ir, "model_configs")):
        assert loop["iteratorPolicy"]["parallelismLimit"] == 8  # the GPU quota cap


def test_every_task_has_cpu_and_memory_limits_and_ensemble_and_gate_hold_fp32_members(tmp_path):
    ir = _compile(tmp_path)
    containers = [n for n, (spec, _) in _all_tasks(ir).items()
                  if "executorLabel" in ir["components"][spec["componentRef"]["name"]] and n != "importer"]
    assert set(containers) == {"preprocess-op", "train-op", "collect-folds-op", "train-final-op", "ensemble-op",
                               "gate-op", "publish-op"}
    for task in containers:
        assert {"resourceCpuLimit", "resourceMemoryLimit"} <= set(_resources(ir, task)), task
    for task in ("ensemble-op", "gate-op"):
        assert _resources(ir, task)["resourceMemoryLimit"] == "64G"
        assert "accelerator" not in _resources(ir, task)


def test_raw_data_enters_through_an_importer_with_its_fingerprint_and_publish_is_never_cached(tmp_path):
    ir = _compile(tmp_path)
    root = ir["root"]["dag"]["tasks"]
    importer = ir["deploymentSpec"]["executors"]["exec-importer"]["importer"]
    assert importer["typeSchema"]["schemaTitle"] == "system.Dataset" and not importer.get("reimport", False)
    assert set(importer["metadata"]) == {"pattern", "fingerprint", "summary"}
    uri = root["importer"]["inputs"]["parameters"]["uri"]
    assert uri["componentInputParameter"] == "train_pattern"
    fingerprint_input = importer["metadata"]["fingerprint"].split("'")[1]  # {{$.inputs.parameters['metadata-2']}}
    assert root["importer"]["inputs"]["parameters"][fingerprint_input]["componentInputParameter"] == \
        "data_fingerprint"
    preprocess = root["preprocess-op"]["inputs"]
    assert preprocess["artifacts"]["raw_data"]["taskOutputArtifact"]["producerTask"] == "importer"
    # the fingerprint is a parameter too: the preprocess cache key changes when the files change
    assert preprocess["parameters"]["data_fingerprint"]["componentInputParameter"] == "data_fingerprint"
    publish, _ = _all_tasks(ir)["publish-op"]
    assert publish["cachingOptions"] == {}  # enableCache: false is the proto default, left out
    assert all(spec["cachingOptions"].get("enableCache") for name, (spec, _) in _all_tasks(ir).items()
               if "cachingOptions" in spec and name != "publish-op")
    outputs = ir["components"]["comp-publish-op"]["outputDefinitions"]
    assert outputs["artifacts"]["published_model"]["artifactType"]["schemaTitle"] == "system.Model"
    assert outputs["parameters"]["Output"]["parameterType"] == "STRING"  # the version dir, read by run --local


def test_resources_retries_and_parallelism_come_from_the_run_config(tmp_path):
    cfg = config.run_config_from_dict({"models": [{"name": "m", "family": "moe"}], "vertex": {
        "resources": {"train": {"accelerator_type": "NVIDIA_A100_80GB", "accelerator_count": 2, "memory": "170G",
                                "cpu": "24"},
                      "gate": {"memory": "96G"}},
        "training_retry": {"num_retries": 5, "backoff_duration": "2m", "backoff_factor": 3,
                           "backoff_max_duration": "2h"},
        "parallelism": 3}})
    ir = _compile(tmp_path, cfg)
    for task in TRAINING_TASKS:
        resources = _resources(ir, task)
        assert resources["accelerator"] == {"type": "NVIDIA_A100_80GB", "count": "2",
                                            "resourceType": "NVIDIA_A100_80GB", "resourceCount": "2"}
        assert (resources["resourceCpuLimit"], resources["resourceMemoryLimit"]) == ("24", "170G")
        assert _all_tasks(ir)[task][0]["retryPolicy"] == {"maxRetryCount": 5, "backoffDuration": "120s",
                                                          "backoffFactor": 3.0, "backoffMaxDuration": "7200s"}
    assert _resources(ir, "gate-op")["resourceMemoryLimit"] == "96G"
    assert _loop(ir, "fold_tasks")["iteratorPolicy"]["parallelismLimit"] == 3
    cpu_only = dataclasses.replace(cfg, vertex=config.vertex_config_from_dict(
        {"resources": {"train": {"accelerator_count": 0}}}))
    ir = _compile(tmp_path, cpu_only)
    assert "accelerator" not in _resources(ir, "train-op")


def _data(tmp_path, n=3):
    os.makedirs(tmp_path / "train", exist_ok=True)
    for i in range(n):
        (tmp_path / "train" / f"train{i}.tfrecord").write_bytes(b"x" * (i + 1))
    return str(tmp_path / "train" / "*.tfrecord")


def test_pipeline_arguments_come_from_the_run_config_and_fan_out_per_config_and_fold(tmp_path):
    cfg = config.load_run_config(local_run.default_config_path())
    args = pipeline_def.pipeline_arguments(cfg, _data(tmp_path), "test/*.tfrecord", "/pub", 100)
    assert args["folds"] == cfg.data.folds and args["gate_config"]["min_gap"] == cfg.gate.min_gap
    assert config.gate_config_from_dict(args["gate_config"]) == cfg.gate  # one owner: the run config
    assert [m["name"] for m in args["model_configs"]] == [m.name for m in cfg.models]
    assert [(t["model_config"]["name"], t["fold"]) for t in args["fold_tasks"]] == \
        [(m.name, k) for m in cfg.models for k in range(cfg.data.folds)]
    assert args["data_fingerprint"].startswith("sha256:") and args["data_summary"] == "3 files, 6 bytes"
    assert args["register_model"] is False and args["gcp_project"] == ""  # local runs never register
    ir = _compile(tmp_path, cfg)
    assert set(args) == set(ir["root"]["inputDefinitions"]["parameters"])  # every parameter, nothing else


def test_model_registry_is_on_for_submitted_runs_unless_the_config_turns_it_off(tmp_path):
    cfg = config.load_run_config(local_run.default_config_path())
    fp = fingerprint.unknown("gs://b/train*.tfrecord", "dry run")
    args = pipeline_def.pipeline_arguments(cfg, "gs://b/train*.tfrecord", "", "gs://b/pub", 100,
                                           data_fingerprint=fp, gcp_project="p", gcp_region="us-central1")
    assert args["register_model"] is True and (args["gcp_project"], args["gcp_region"]) == ("p", "us-central1")
    off = dataclasses.replace(cfg, vertex=config.vertex_config_from_dict({"model_registry": {"register": False}}))
    assert pipeline_def.pipeline_arguments(off, "gs://b/t*", "", "gs://b/pub", 100, data_fingerprint=fp,
                                           gcp_project="p", gcp_region="r")["register_model"] is False


def test_pipeline_arguments_refuse_a_pattern_without_files(tmp_path):
    cfg = config.load_run_config(local_run.default_config_path())
    with pytest.raises(FileNotFoundError, match="no training data files match"):
        pipeline_def.pipeline_arguments(cfg, str(tmp_path / "none*.tfrecord"), "", "/pub", 100)


_STANDARDIZED = {"training": {"video_features": "standardized"}}


@pytest.mark.parametrize("raw, expected", [
    ({"models": [{"name": "m", "family": "moe"}]}, False),
    ({"models": [{"name": "m", "family": "moe"}, {"name": "z", "family": "logistic", **_STANDARDIZED}]}, True),
    ({"models": [{"name": "m", "family": "moe"}],
      "distillation": {"rounds": 1, "students": [{"name": "s", "family": "moe", **_STANDARDIZED}]}}, True),
    ({"models": [{"name": "m", "family": "moe"}],  # no rounds: the students never train
      "distillation": {"rounds": 0, "students": [{"name": "s", "family": "moe", **_STANDARDIZED}]}}, False),
])
def test_preprocessing_writes_standardized_features_exactly_when_a_member_or_student_trains_on_them(raw, expected):
    cfg = config.run_config_from_dict(raw)
    args = pipeline_def.pipeline_arguments(cfg, "gs://b/t*.tfrecord", "", "/pub", 10,
                                           data_fingerprint=fingerprint.unknown("gs://b/t*.tfrecord", "dry run"))
    assert args["standardized_features"] is expected
    assert config.needs_standardized_features(cfg) is expected


# ----------------------------------------------------------------------------------------- Dataflow

_FLEX = "gs://acme-ml/templates/preprocess.json"
_DATAFLOW = {"runner": "dataflow", "flex_template": _FLEX, "project": "acme-data", "region": "europe-west4",
             "machine_type": "n2-highmem-16", "max_workers": 120, "temp_location": "gs://acme-ml/tmp",
             "staging_location": "gs://acme-ml/staging",
             "service_account": "yt8m-dataflow@acme-ml.iam.gserviceaccount.com",
             "worker_image": "europe-docker.pkg.dev/acme-ml/yt8m/yt8m-dataflow@sha256:" + "d" * 64}


def _dataflow_config(**changes):
    return config.run_config_from_dict({"models": [{"name": "m", "family": "moe"}],
                                        "vertex": {"dataflow": {**_DATAFLOW, **changes}}})


def _constant(task, name):
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def _channel(name):
    return "{{$.inputs.parameters['pipelinechannel--%s']}}" % name


def test_dataflow_runner_launches_the_flex_template_then_waits_then_registers_the_dataset(tmp_path):
    from yt8m_pipeline import dataflow

    ir = _compile(tmp_path, _dataflow_config())
    root = ir["root"]["dag"]["tasks"]
    assert "preprocess-op" not in root
    launch, wait, register = root["dataflow-flex-template"], root["wait-gcp-resources"], root["register-dataset-op"]
    assert [t["taskInfo"]["name"] for t in (launch, wait, register)] == \
        ["preprocess on dataflow", "wait for dataflow", "register dataset"]
    # the launch: our Flex Template, the job's parameters (gs:// in, a per-run gs:// folder out), the config's options
    assert _constant(launch, "container_spec_gcs_path") == _FLEX
    output = _channel("dataflow_root") + "/dataset"
    assert _constant(launch, "parameters") == {
        "input": _channel("train_pattern"), "output": output, "num_classes": _channel("num_classes"),
        "folds": _channel("folds"), "holdout": _channel("holdout_fraction"),
        "standardized": _channel("standardized_features")}
    assert sorted(_constant(launch, "parameters")) == sorted(dataflow.FLEX_PARAMETERS)  # the metadata's names
    for channel in ("train_pattern", "dataflow_root", "num_classes", "folds", "holdout_fraction",
                    "standardized_features"):
        assert launch["inputs"]["parameters"][f"pipelinechannel--{channel}"] == {"componentInputParameter": channel}
    expected = {"project": "acme-data", "location": "europe-west4", "machine_type": "n2-highmem-16",
                "max_workers": 120, "temp_location": "gs://acme-ml/tmp", "staging_location": "gs://acme-ml/staging",
                "service_account_email": _DATAFLOW["service_account"], "sdk_container_image": _DATAFLOW["worker_image"]}
    assert {name: _constant(launch, name) for name in expected} == expected
    assert launch["inputs"]["parameters"]["job_name"] == {"componentInputParameter": "dataflow_job_name"}
    executors = ir["deploymentSpec"]["executors"]
    gcpc = "gcr.io/ml-pipeline/google-cloud-pipeline-components:2.22.0"
    for task in (launch, wait):
        executor = executors[ir["components"][task["componentRef"]["name"]]["executorLabel"]]["container"]
        assert executor["image"] == gcpc
    assert "flex_template.launcher" in " ".join(executors["exec-dataflow-flex-template"]["container"]["command"])
    # the wait consumes the launch's gcp_resources (the Vertex UI's link to the job); register runs after it
    assert wait["inputs"]["parameters"]["gcp_resources"]["taskOutputParameter"] == \
        {"outputParameterKey": "gcp_resources", "producerTask": "dataflow-flex-template"}
    assert register["inputs"]["parameters"]["gcp_resources"]["taskOutputParameter"] == \
        {"outputParameterKey": "gcp_resources", "producerTask": "wait-gcp-resources"}
    assert "wait-gcp-resources" in register["dependentTasks"]
    assert _constant(register, "output_dir") == output  # the folder the job wrote
    assert register["inputs"]["artifacts"]["raw_data"]["taskOutputArtifact"]["producerTask"] == "importer"
    assert executors["exec-register-dataset-op"]["container"]["resources"]["resourceMemoryLimit"] == "32G"
    # downstream reads the registered dataset (the loops and the gate condition pass it on to their tasks)
    registered = {"outputArtifactKey": "dataset", "producerTask": "register-dataset-op"}
    for name in ("ensemble-op", "gate-op"):
        assert root[name]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"] == registered, name
    groups = [t for t in root.values() if "parameterIterator" in t or "triggerPolicy" in t]
    assert len(groups) == 3 and all(
        t["inputs"]["artifacts"]["pipelinechannel--register-dataset-op-dataset"]["taskOutputArtifact"] == registered
        for t in groups)
    # never a /gcs/ (FUSE) path in what the Dataflow tasks receive
    assert "/gcs/" not in yaml.safe_dump([launch, wait, register, executors["exec-dataflow-flex-template"]])


def test_dataflow_defaults_run_in_the_submitted_project_and_region_with_the_dataflow_image(tmp_path):
    from yt8m_pipeline import images

    cfg = config.run_config_from_dict({"models": [{"name": "m", "family": "moe"}],
                                       "vertex": {"dataflow": {"runner": "dataflow", "flex_template": _FLEX}}})
    launch = _compile(tmp_path, cfg)["root"]["dag"]["tasks"]["dataflow-flex-template"]
    params = launch["inputs"]["parameters"]
    assert params["project"] == {"componentInputParameter": "gcp_project"}
    assert params["location"] == {"componentInputParameter": "gcp_region"}
    assert _constant(launch, "temp_location") == _channel("dataflow_root") + "/tmp"
    assert _constant(launch, "staging_location") == _channel("dataflow_root") + "/staging"
    assert _constant(launch, "sdk_container_image") == images.DATAFLOW_IMAGE
    assert _constant(launch, "service_account_email") == ""  # GCPC drops it: the project's default account


def test_local_runner_keeps_the_one_preprocess_task(tmp_path):
    default = _compile(tmp_path)
    explicit = _compile(tmp_path, config.run_config_from_dict({"models": [{"name": "m", "family": "moe"}],
                                                               "vertex": {"dataflow": {"runner": "local"}}}))
    assert explicit == default
    root = default["root"]["dag"]["tasks"]
    assert "preprocess-op" in root and not {"dataflow-flex-template", "wait-gcp-resources", "register-dataset-op"} \
        & set(root)
    assert root["preprocess-op"]["inputs"]["parameters"]["runner"] == {"componentInputParameter": "beam_runner"}
    assert root["preprocess-op"]["inputs"]["parameters"]["standardized_features"] == \
        {"componentInputParameter": "standardized_features"}
    assert default["root"]["inputDefinitions"]["parameters"]["standardized_features"] == \
        {"defaultValue": False, "isOptional": True, "parameterType": "BOOLEAN"}  # runs without it: as before


def test_kfp_local_runs_build_the_local_graph_even_with_a_dataflow_config(monkeypatch):
    built = []
    monkeypatch.setattr(pipeline_def, "build_pipeline", lambda vertex, rounds=0: built.append(vertex) or (lambda **kw: None))
    run_config = config.to_dict(_dataflow_config())
    pipeline_def.yt8m_pipeline(run_config=run_config)
    assert built[0].dataflow.runner == "local" and built[0].dataflow.flex_template == _FLEX


def test_pipeline_arguments_give_each_dataflow_run_its_own_folder_and_job_name(tmp_path):
    cfg = _dataflow_config()
    fp = fingerprint.unknown("gs://acme-data/train*.tfrecord", "dry run")
    common = dict(data_fingerprint=fp, gcp_project="acme-ml", gcp_region="europe-west4",
                  pipeline_root="gs://acme-ml/root/")
    first, second = (pipeline_def.pipeline_arguments(cfg, "gs://acme-data/train*.tfrecord", "", "gs://acme-ml/pub",
                                                     100, **common) for _ in range(2))
    assert first["dataflow_root"].startswith("gs://acme-ml/root/dataflow/")
    assert first["dataflow_root"] != second["dataflow_root"]
    run_id = first["dataflow_root"].rsplit("/", 1)[1]
    assert first["dataflow_job_name"] == f"yt8m-preprocess-{run_id}"
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", first["dataflow_job_name"])  # Dataflow's job name rule
    assert set(first) == set(_compile(tmp_path, cfg)["root"]["inputDefinitions"]["parameters"])
    local = pipeline_def.pipeline_arguments(config.load_run_config(local_run.default_config_path()),
                                            "gs://acme-data/train*.tfrecord", "", "/pub", 100, **common)
    assert (local["dataflow_root"], local["dataflow_job_name"]) == ("", "")


# ---- distillation rounds, unrolled at compile time


def _distillation_config(rounds: int):
    return config.run_config_from_dict({"models": [{"name": "m", "family": "moe"}],
                                        "distillation": {"rounds": rounds, "soft_labels": "full", "top_k": 10,
                                                         "students": [{"name": "s", "family": "moe"}]}})


def _artifact_source(ir, task_name, input_name) -> tuple[str, str]:
    """(producer task, output key) of a task's input artifact, followed out of its loop's sub-DAG."""
    spec, holder = _all_tasks(ir)[task_name]
    source = spec["inputs"]["artifacts"][input_name]
    if "componentInputArtifact" in source:
        loop = next(t for t in ir["root"]["dag"]["tasks"].values() if t["componentRef"]["name"] == holder)
        source = loop["inputs"]["artifacts"][source["componentInputArtifact"]]
    out = source["taskOutputArtifact"]
    return out["producerTask"], out["outputArtifactKey"]


def test_without_distillation_rounds_the_dag_has_the_members_ensemble_only(tmp_path):
    ir = _compile(tmp_path)
    assert ir == _compile(tmp_path, _distillation_config(0))
    tasks = _all_tasks(ir)
    assert sorted(n for n in tasks if not n.startswith(("for-loop", "condition"))) == [
        "collect-folds-op", "ensemble-op", "gate-op", "importer", "preprocess-op", "publish-op", "train-final-op",
        "train-op"]
    assert "teacher" not in tasks["train-op"][0]["inputs"].get("artifacts", {})
    assert "teacher_model" not in tasks["ensemble-op"][0]["inputs"]["artifacts"]
    assert _artifact_source(ir, "gate-op", "merged_model") == ("ensemble-op", "merged_model")
    args = pipeline_def.pipeline_arguments(config.run_config_from_dict({"models": [{"name": "m", "family": "moe"}]}),
                                           "gs://b/t*.tfrecord", "", "/pub", 10,
                                           data_fingerprint=fingerprint.unknown("gs://b/t*.tfrecord", "dry run"))
    assert (args["soft_labels"], args["student_configs"], args["student_fold_tasks"]) == ("", [], [])


def test_each_distillation_round_trains_students_on_the_previous_ensembles_soft_labels(tmp_path):
    ir = _compile(tmp_path, _distillation_config(2))
    tasks = _all_tasks(ir)
    ensembles = ["ensemble-op", "ensemble-op-2", "ensemble-op-3"]
    assert set(ensembles) <= set(tasks) and "ensemble-op-4" not in tasks
    for n, (fold_task, final_task) in enumerate((("train-op-2", "train-final-op-2"),
                                                 ("train-op-3", "train-final-op-3")), start=1):
        teacher = ensembles[n - 1]
        assert _artifact_source(ir, fold_task, "teacher") == (teacher, "soft_labels")
        assert _artifact_source(ir, final_task, "teacher") == (teacher, "soft_labels")
        assert tasks[fold_task][0]["taskInfo"]["name"] == f"train fold (student round {n})"
        # the round's ensemble gathers its students and reports them next to the previous ensemble
        assert _artifact_source(ir, ensembles[n], "teacher_model") == (teacher, "merged_model")
        # ... and passes the teacher and its soft labels on when the students score lower (distillation.keep)
        assert _artifact_source(ir, ensembles[n], "teacher_soft_labels") == (teacher, "soft_labels")
        params = tasks[ensembles[n]][0]["inputs"]["parameters"]
        assert params["distillation_round"]["runtimeValue"]["constant"] == n
        assert params["distillation_keep"] == {"componentInputParameter": "distillation_keep"}
        loop = next(t for t in ir["root"]["dag"]["tasks"].values()
                    if t["componentRef"]["name"] == tasks[fold_task][1])
        assert loop["parameterIterator"]["items"]["inputParameter"].endswith("student_fold_tasks")
    assert "teacher" not in tasks["train-op"][0]["inputs"].get("artifacts", {})  # the members have no teacher
    assert _artifact_source(ir, "gate-op", "merged_model") == ("ensemble-op-3", "merged_model")
    assert _artifact_source(ir, "publish-op", "merged_model") == ("ensemble-op-3", "merged_model")
    for name in ensembles:
        params = tasks[name][0]["inputs"]["parameters"]
        assert params["soft_label_kind"] == {"componentInputParameter": "soft_labels"}
    args = pipeline_def.pipeline_arguments(_distillation_config(2), "gs://b/t*.tfrecord", "", "/pub", 10,
                                           data_fingerprint=fingerprint.unknown("gs://b/t*.tfrecord", "dry run"))
    assert (args["soft_labels"], args["soft_label_top_k"], args["distillation_keep"]) == ("full", 10, "best")
    assert [t["fold"] for t in args["student_fold_tasks"]] == list(range(5))
    assert args["student_configs"][0]["training"]["distill_weight"] == 0.5
    assert set(args) == set(ir["root"]["inputDefinitions"]["parameters"])
