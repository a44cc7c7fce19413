"""Vertex AI: the run config's vertex section, the data fingerprint, the Model Registry upload's
arguments, the publish task's output artifact, and submission (job built offline, dry run, errors)."""

import json
import os

import pytest
import yaml

from yt8m import config, fingerprint, model_registry
from yt8m_pipeline import local_run

_MOE = {"name": "a", "family": "moe"}


# ----------------------------------------------------------------------------------------- run config


def test_vertex_defaults_are_full_scale_and_the_local_config_keeps_them_but_retries_fast():
    v = config.VertexConfig()
    assert (v.resources.train.accelerator_type, v.resources.train.accelerator_count) == ("NVIDIA_L4", 1)
    assert v.resources.ensemble.memory == v.resources.gate.memory == "64G"
    assert (v.training_retry.num_retries, v.parallelism) == (3, 8)
    local = config.load_run_config(local_run.default_config_path()).vertex
    assert local.resources == v.resources and local.training_retry.num_retries == 1


@pytest.mark.parametrize("vertex, message", [
    ({"resources": {"train": {"accelerator_type": "TPU_V4"}}}, "vertex.resources.train.accelerator_type: expected one"),
    ({"resources": {"train": {"accelerator_count": -1}}}, "vertex.resources.train.accelerator_count: must be >= 0"),
    ({"resources": {"ensemble": {"memory": "64GB"}}}, "vertex.resources.ensemble.memory: expected a positive size"),
    ({"resources": {"gate": {"memory": "0G"}}}, "vertex.resources.gate.memory: expected a positive size"),
    ({"resources": {"preprocess": {"cpu": "eight"}}}, "vertex.resources.preprocess.cpu: expected a positive number"),
    ({"resources": {"publish": {"cpu": 8}}}, "vertex.resources.publish.cpu: expected str"),
    ({"resources": {"gpu": {}}}, "vertex.resources: unknown field(s) gpu"),
    ({"training_retry": {"num_retries": -1}}, "vertex.training_retry.num_retries: must be >= 0"),
    ({"training_retry": {"backoff_duration": "1 minute"}}, "vertex.training_retry.backoff_duration: expected a"),
    ({"training_retry": {"backoff_factor": 0.5}}, "vertex.training_retry.backoff_factor: must be >= 1"),
    ({"parallelism": 0}, "vertex.parallelism: must be >= 1"),
    ({"model_registry": {"model_id": "YT8M model"}}, "vertex.model_registry.model_id: lowercase letters"),
    ({"model_registry": {"register": "yes"}}, "vertex.model_registry.register: expected bool"),
    ({"model_registry": {"serving_image": " "}}, "vertex.model_registry.serving_image: must not be empty"),
])
def test_bad_vertex_settings_name_the_field(vertex, message):
    with pytest.raises(config.ConfigError) as err:
        config.run_config_from_dict({"models": [_MOE], "vertex": vertex}, where="run.yaml")
    assert str(err.value).startswith("run.yaml.") and message in str(err.value)


def test_vertex_settings_round_trip_through_pipeline_parameters():
    cfg = config.run_config_from_dict({"models": [_MOE], "vertex": {
        "resources": {"train": {"accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 8}},
        "model_registry": {"register": False}}})
    raw = json.loads(json.dumps(config.to_dict(cfg)))
    raw["vertex"]["resources"]["train"]["accelerator_count"] = 8.0  # protobuf Struct numbers arrive as floats
    assert config.run_config_from_dict(raw) == cfg
    assert config.vertex_config_from_dict(raw["vertex"]) == cfg.vertex


# ----------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_changes_when_a_file_is_added_resized_or_rewritten(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.tfrecord").write_bytes(b"12345")
    pattern = str(tmp_path / "*.tfrecord")
    first = fingerprint.fingerprint_files(pattern)
    assert first == fingerprint.fingerprint_files(pattern)  # a listing, stable
    assert (first.files, first.bytes, first.summary) == (2, 10, "2 files, 10 bytes")
    assert first.to_metadata() == {"pattern": pattern, "fingerprint": first.digest, "summary": "2 files, 10 bytes"}
    os.utime(tmp_path / "a.tfrecord", ns=(1, 10**18))  # same size, rewritten
    rewritten = fingerprint.fingerprint_files(pattern)
    (tmp_path / "b.tfrecord").write_bytes(b"123456")
    resized = fingerprint.fingerprint_files(pattern)
    (tmp_path / "c.tfrecord").write_bytes(b"")
    added = fingerprint.fingerprint_files(pattern)
    assert len({first.digest, rewritten.digest, resized.digest, added.digest}) == 4
    (tmp_path / "notes.txt").write_text("not matched")
    assert fingerprint.fingerprint_files(pattern) == added
    with pytest.raises(FileNotFoundError, match="no data files match"):
        fingerprint.fingerprint_files(str(tmp_path / "none*"))
    assert fingerprint.unknown("gs://b/x*", "dry run").digest == "unknown (dry run)"


# ----------------------------------------------------------------------------------------- model registry


_MANIFEST = {"version": "v20260101T120000-ab12cd34", "model_bytes": 1_234_567_890,
             "gate": {"gap": 0.84712, "hit_at_1": 0.8812, "perr": 0.7, "map": 0.5, "size_bytes": 1_234_567_890},
             "model": {"members": ["netvlad", "dbof"]}, "dataset": {"source": "gs://b/train*.tfrecord"}}


def test_registry_upload_creates_the_model_once_then_adds_default_versions():
    settings = config.ModelRegistryConfig()
    first = model_registry.upload_kwargs("gs://b/pub/versions/v1", _MANIFEST, settings, project="p",
                                         location="us-central1", parent_exists=False)
    assert first["model_id"] == "yt8m" and "parent_model" not in first
    later = model_registry.upload_kwargs("gs://b/pub/versions/v1", _MANIFEST, settings, project="p",
                                         location="us-central1", parent_exists=True)
    assert later["parent_model"] == "projects/p/locations/us-central1/models/yt8m" and "model_id" not in later
    assert later["artifact_uri"] == "gs://b/pub/versions/v1/saved_model"
    assert later["serving_container_image_uri"] == settings.serving_image
    assert later["is_default_version"] is True and later["version_aliases"] == ["v20260101t120000-ab12cd34"]
    assert later["labels"] == {"pipeline": "yt8m", "publish_version": "v20260101t120000-ab12cd34",
                               "gap_at_20": "0_8471", "hit_at_1": "0_8812", "perr": "0_7000", "map": "0_5000",
                               "size_mb": "1234_5679"}
    assert "GAP@20 0.8471" in later["description"] and "netvlad, dbof" in later["description"]
    assert (later["project"], later["location"], later["display_name"]) == ("p", "us-central1", "yt8m-ensemble")
    import inspect

    from google.cloud import aiplatform

    accepted = set(inspect.signature(aiplatform.Model.upload).parameters)
    assert set(first) <= accepted and set(later) <= accepted


def test_label_rules():
    assert model_registry.check_labels({"team": "video-ml", "cost_center": "a1"})
    for bad in ({"Team": "x"}, {"1team": "x"}, {"team": "Video"}, {"team": "a" * 64}, {"t": "a.b"},
                {f"k{i}": "v" for i in range(65)}):
        with pytest.raises(ValueError):
            model_registry.check_labels(bad)
    assert model_registry.label_value(0.47513) == "0_4751" and model_registry.label_value("V1.T") == "v1_t"


def _publish_inputs(tmp_path):
    from kfp import dsl

    merged = tmp_path / "merged"
    (merged / "saved_model").mkdir(parents=True, exist_ok=True)
    (merged / "saved_model" / "saved_model.pb").write_bytes(b"graph")
    (merged / "ensemble.json").write_text(json.dumps({"members": []}))
    model = dsl.Model(uri=str(merged), metadata={"members": ["moe"]})
    dataset = dsl.Dataset(uri=str(tmp_path / "dataset"), metadata={"source": "train/*.tfrecord"})
    gate = dsl.Metrics(uri=str(tmp_path / "gate"), metadata={"gap": 0.5})
    out = dsl.Model(uri=str(tmp_path / "published_model"))
    return model, dataset, gate, out


def test_publish_task_outputs_the_published_version_as_a_model_and_registers_only_when_asked(tmp_path, monkeypatch):
    from yt8m_pipeline.components.publish import publish_op

    calls = []
    monkeypatch.setattr(model_registry, "upload_version",
                        lambda version_dir, settings, project, location: calls.append(
                            (version_dir, settings.model_id, project, location)) or "projects/p/models/m@2")
    run_config = config.to_dict(config.run_config_from_dict({"models": [_MOE]}))
    model, dataset, gate, out = _publish_inputs(tmp_path)
    version = publish_op.python_func(merged_model=model, dataset=dataset, gate_metrics=gate,
                                     publish_root=str(tmp_path / "pub"), test_pattern="", run_config=run_config,
                                     register_model=False, gcp_project="", gcp_region="", published_model=out)
    assert version.startswith(str(tmp_path / "pub" / "versions")) and out.uri == version
    assert out.metadata["gap"] == 0.5 and out.metadata["version"] == os.path.basename(version) and not calls
    model, dataset, gate, out = _publish_inputs(tmp_path)
    version = publish_op.python_func(merged_model=model, dataset=dataset, gate_metrics=gate,
                                     publish_root=str(tmp_path / "pub2"), test_pattern="", run_config=run_config,
                                     register_model=True, gcp_project="p", gcp_region="europe-west4",
                                     published_model=out)
    assert calls == [(version, "yt8m", "p", "europe-west4")]
    assert out.metadata["registry_model"] == "projects/p/models/m@2"


def test_registering_refuses_a_local_version(tmp_path):
    with pytest.raises(ValueError, match="gs:// only"):
        model_registry.upload_version(str(tmp_path), config.ModelRegistryConfig(), "p", "us-central1")


# ----------------------------------------------------------------------------------------- submission

_SUBMIT = dict(config_path=None, project="my-project", region="us-central1", pipeline_root="gs://bucket/root",
               data="gs://bucket/yt8m/train*.tfrecord", num_classes=3862, test_data="gs://bucket/yt8m/test*.tfrecord",
               publish_root=None, service_account="pipeline@my-project.iam.gserviceaccount.com",
               labels="team=video-ml,env=dev", no_cache=False, dry_run_path=None)


def _dry_run(tmp_path, **changes) -> dict:
    from yt8m_pipeline import vertex

    path = str(tmp_path / "job.json")
    assert vertex.submit_from_args(**{**_SUBMIT, "dry_run_path": path, **changes}) == path
    return json.load(open(path))


def _tasks(spec: dict) -> dict:
    out = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        out.update(comp.get("dag", {}).get("tasks", {}))
    return out


def test_dry_run_writes_the_full_job_spec_of_the_same_pipeline_and_run_config(tmp_path):
    from yt8m_pipeline.pipelines import yt8m_pipeline as pipeline_def

    spec = _dry_run(tmp_path)
    assert spec["parent"] == "projects/my-project/locations/us-central1"
    job = spec["pipelineJob"]
    assert job["labels"] == {"team": "video-ml", "env": "dev"}
    assert job["serviceAccount"] == _SUBMIT["service_account"]
    runtime = job["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == "gs://bucket/root"
    params = runtime["parameterValues"]
    cfg = config.load_run_config(local_run.default_config_path())
    assert params["train_pattern"] == _SUBMIT["data"] and params["test_pattern"] == _SUBMIT["test_data"]
    assert params["publish_root"] == "gs://bucket/root/published"  # the default: <pipeline root>/published
    assert params["num_classes"] == 3862 and params["folds"] == cfg.data.folds
    assert len(params["fold_tasks"]) == len(cfg.models) * cfg.data.folds
    assert params["register_model"] is True and params["gcp_project"] == "my-project"
    assert params["data_fingerprint"].startswith("unknown (dry run")  # no listing: no network
    assert params["run_config"]["vertex"]["resources"]["train"]["accelerator_type"] == "NVIDIA_L4"
    # the pipeline spec is the compiled pipeline of the same run config, untouched (publish stays uncached)
    compiled = yaml.safe_load(open(pipeline_def.compile_pipeline(str(tmp_path / "p.yaml"), cfg)))
    assert job["pipelineSpec"] == json.loads(json.dumps(compiled))
    assert "enableCache" not in _tasks(job["pipelineSpec"])["publish-op"].get("cachingOptions", {})
    assert _tasks(job["pipelineSpec"])["train-op"]["cachingOptions"] == {"enableCache": True}


def test_the_dry_run_spec_is_accepted_by_pipeline_job_offline(tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    spec = _dry_run(tmp_path)
    job = spec["pipelineJob"]
    template = tmp_path / "pipeline.json"
    template.write_text(json.dumps(job["pipelineSpec"]))
    rebuilt = aiplatform.PipelineJob(display_name=job["displayName"], template_path=str(template),
                                     pipeline_root=job["runtimeConfig"]["gcsOutputDirectory"],
                                     parameter_values=job["runtimeConfig"]["parameterValues"], labels=job["labels"],
                                     project="my-project", location="us-central1",
                                     credentials=AnonymousCredentials())
    again = rebuilt.to_dict()
    assert again["runtimeConfig"] == job["runtimeConfig"] and again["pipelineSpec"] == job["pipelineSpec"]


def test_no_cache_turns_caching_off_for_every_task(tmp_path):
    tasks = _tasks(_dry_run(tmp_path, no_cache=True)["pipelineJob"]["pipelineSpec"])
    assert tasks and all(t["cachingOptions"] == {"enableCache": False} for t in tasks.values())


def test_build_job_takes_the_config_resources_and_explicit_arguments(tmp_path):
    from google.auth.credentials import AnonymousCredentials

    from yt8m_pipeline import vertex

    cfg = config.run_config_from_dict({"models": [_MOE], "data": {"folds": 4}, "vertex": {
        "resources": {"train": {"accelerator_type": "NVIDIA_H100_80GB"}}, "parallelism": 2}})
    job = vertex.build_job(cfg, project="my-project", region="europe-west4", pipeline_root="gs://bkt/root",
                           train_pattern="gs://bkt/train*.tfrecord", publish_root="gs://bkt/models", num_classes=100,
                           labels={"run": "h100"}, display_name="h100-run",
                           data_fingerprint=fingerprint.Fingerprint("gs://bkt/train*.tfrecord", "sha256:ab", 3, 9),
                           credentials=AnonymousCredentials())
    spec = vertex.dry_run_spec(job)
    body = spec["pipelineJob"]
    assert spec["parent"] == "projects/my-project/locations/europe-west4" and "serviceAccount" not in body
    assert (body["displayName"], body["labels"]) == ("h100-run", {"run": "h100"})
    params = body["runtimeConfig"]["parameterValues"]
    assert (params["data_fingerprint"], params["data_summary"]) == ("sha256:ab", "3 files, 9 bytes")
    assert params["publish_root"] == "gs://bkt/models" and len(params["fold_tasks"]) == 4
    executors = body["pipelineSpec"]["deploymentSpec"]["executors"]
    assert executors["exec-train-op"]["container"]["resources"]["accelerator"]["type"] == "NVIDIA_H100_80GB"
    loops = [t for t in body["pipelineSpec"]["root"]["dag"]["tasks"].values() if "iteratorPolicy" in t]
    assert len(loops) == 2 and all(t["iteratorPolicy"]["parallelismLimit"] == 2 for t in loops)


@pytest.mark.parametrize("changes, message", [
    ({"project": None}, "--project is required"),
    ({"project": "My Project"}, "--project: 'My Project' is not a project ID"),
    ({"region": ""}, "--region is required"),
    ({"region": "central"}, "--region: 'central' is not a region name"),
    ({"pipeline_root": None}, "--pipeline-root is required"),
    ({"pipeline_root": "/tmp/root"}, "--pipeline-root: '/tmp/root' is not a gs:// URI"),
    ({"pipeline_root": "gs://b/root"}, "--pipeline-root: 'gs://b/root' does not start with a bucket name"),
    ({"data": "/data/train*.tfrecord"}, "--data: '/data/train*.tfrecord' is not a gs:// URI"),
    ({"test_data": "test*.tfrecord"}, "--test-data: 'test*.tfrecord' is not a gs:// URI"),
    ({"publish_root": "./published"}, "--publish-root: './published' is not a gs:// URI"),
    ({"service_account": "me"}, "--service-account: 'me' is not a service account email"),
    ({"num_classes": 1}, "--num-classes: must be an integer >= 2"),
    ({"labels": "Team=x"}, "--labels: bad label key 'Team'"),
    ({"labels": "team=Video ML"}, "--labels: bad value 'Video ML' of label 'team'"),
    ({"labels": "team"}, "--labels: expected key=value pairs"),
    ({"labels": "a=1,a=2"}, "--labels: label 'a' given twice"),
    ({"dry_run_path": "gs://bucket/job.json"}, "--dry-run: write the spec to a local file"),
])
def test_bad_submissions_are_one_line_errors_before_anything_is_built(tmp_path, monkeypatch, changes, message):
    from yt8m_pipeline import vertex

    monkeypatch.setattr(vertex, "build_job", lambda *a, **k: pytest.fail("built before the arguments were checked"))
    monkeypatch.setattr(config, "load_run_config", lambda *a, **k: pytest.fail("config loaded before the checks"))
    arguments = {**_SUBMIT, "dry_run_path": str(tmp_path / "job.json"), **changes}
    with pytest.raises(vertex.SubmitError) as err:
        vertex.submit_from_args(**arguments)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError) and not os.path.exists(tmp_path / "job.json")


def test_parse_labels():
    from yt8m_pipeline import vertex

    assert vertex.parse_labels("team=video-ml, env=dev,,cost_center=") == {"team": "video-ml", "env": "dev",
                                                                           "cost_center": ""}
    assert vertex.parse_labels(None) == {} and vertex.parse_labels("") == {}
    with pytest.raises(vertex.SubmitError, match="at most 63"):
        vertex.parse_labels(f"k={'x' * 64}")


def test_submit_uses_the_service_account_and_application_default_credentials(tmp_path, monkeypatch):
    import google.auth
    from google.auth import exceptions as auth_exceptions

    from yt8m_pipeline import images, vertex

    class FakeJob:
        resource_name = "projects/1/locations/us-central1/pipelineJobs/yt8m-1"

        def submit(self, service_account=None):
            self.service_account = service_account

        def _dashboard_uri(self):
            return "https://console.cloud.google.com/vertex-ai/pipelines/runs/yt8m-1"

    job = FakeJob()
    assert vertex.submit(job, "sa@p.iam.gserviceaccount.com") == \
        f"submitted {job.resource_name} (https://console.cloud.google.com/vertex-ai/pipelines/runs/yt8m-1)"
    assert job.service_account == "sa@p.iam.gserviceaccount.com"
    # A real submission refuses placeholder images, then needs credentials (none here: one line).
    with pytest.raises(vertex.SubmitError, match="is a placeholder"):
        vertex.submit_from_args(**_SUBMIT)
    for name in ("CPU_IMAGE", "GPU_IMAGE"):
        monkeypatch.setattr(images, name, f"europe-docker.pkg.dev/p/yt8m/{name.lower()}@sha256:{'a' * 64}")
    monkeypatch.setattr(fingerprint, "fingerprint_files",
                        lambda pattern, what="data": fingerprint.Fingerprint(pattern, "sha256:ab", 1, 1))
    monkeypatch.setattr(google.auth, "default",
                        lambda *a, **k: (_ for _ in ()).throw(auth_exceptions.DefaultCredentialsError("none")))
    with pytest.raises(vertex.SubmitError, match="no Application Default Credentials: run `gcloud auth"):
        vertex.submit_from_args(**_SUBMIT)


# ----------------------------------------------------------------------------------------- Dataflow preprocessing

_FLEX = "gs://bucket/templates/preprocess.json"


@pytest.mark.parametrize("dataflow, message", [
    ({"runner": "spark"}, "vertex.dataflow.runner: expected one of local, dataflow, got 'spark'"),
    ({"runner": "dataflow"}, "vertex.dataflow.flex_template: required with runner dataflow"),
    ({"flex_template": "templates/preprocess.json"}, "vertex.dataflow.flex_template: expected a gs://BUCKET/"),
    ({"flex_template": "gs://bucket/templates/preprocess.yaml"}, "vertex.dataflow.flex_template: expected the "
                                                                 "template spec file (.json)"),
    ({"temp_location": "/tmp/beam"}, "vertex.dataflow.temp_location: expected a gs://BUCKET/... path"),
    ({"staging_location": "/gcs/bucket/staging"}, "vertex.dataflow.staging_location: expected a gs://BUCKET/"),
    ({"max_workers": 0}, "vertex.dataflow.max_workers: must be >= 1 and <= 1000"),
    ({"max_workers": "many"}, "vertex.dataflow.max_workers: expected int"),
    ({"machine_type": "N2 highmem"}, "vertex.dataflow.machine_type: expected a Compute Engine machine type"),
    ({"service_account": "dataflow-workers"}, "vertex.dataflow.service_account: expected a service account email"),
    ({"project": "My Project"}, "vertex.dataflow.project: expected a project ID"),
    ({"region": "europe"}, "vertex.dataflow.region: expected a region like us-central1"),
    ({"worker_image": "repo/image: 1"}, "vertex.dataflow.worker_image: expected an image reference without spaces"),
    ({"workers": 3}, "vertex.dataflow: unknown field(s) workers"),
])
def test_bad_dataflow_settings_name_the_field(dataflow, message):
    with pytest.raises(config.ConfigError) as err:
        config.run_config_from_dict({"models": [_MOE], "vertex": {"dataflow": dataflow}}, where="run.yaml")
    assert str(err.value).startswith("run.yaml.") and message in str(err.value)


def test_dataflow_defaults_run_locally_and_settings_round_trip_through_pipeline_parameters():
    assert config.VertexConfig().dataflow.runner == "local"
    assert config.load_run_config(local_run.default_config_path()).vertex.dataflow == config.DataflowConfig()
    cfg = config.run_config_from_dict({"models": [_MOE], "vertex": {"dataflow": {
        "runner": "dataflow", "flex_template": _FLEX, "max_workers": 200}}})
    raw = json.loads(json.dumps(config.to_dict(cfg)))
    raw["vertex"]["dataflow"]["max_workers"] = 200.0  # protobuf Struct numbers arrive as floats
    assert config.vertex_config_from_dict(raw["vertex"]) == cfg.vertex


def _dataflow_config_file(tmp_path) -> str:
    raw = yaml.safe_load(open(local_run.default_config_path()))
    raw["vertex"]["dataflow"] = {"runner": "dataflow", "flex_template": _FLEX,
                                 "service_account": "yt8m-dataflow@my-project.iam.gserviceaccount.com"}
    path = tmp_path / "dataflow.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_dry_run_with_a_dataflow_config_launches_the_job_from_the_flex_template(tmp_path, caplog):
    from yt8m_pipeline import images

    with caplog.at_level("WARNING"):
        spec = _dry_run(tmp_path, config_path=_dataflow_config_file(tmp_path))
    job = spec["pipelineJob"]
    tasks = _tasks(job["pipelineSpec"])
    assert "preprocess-op" not in tasks
    launch = tasks["dataflow-flex-template"]["inputs"]["parameters"]
    assert launch["container_spec_gcs_path"]["runtimeValue"]["constant"] == _FLEX
    assert launch["service_account_email"]["runtimeValue"]["constant"] == \
        "yt8m-dataflow@my-project.iam.gserviceaccount.com"
    assert {"wait-gcp-resources", "register-dataset-op"} <= set(tasks)
    params = job["runtimeConfig"]["parameterValues"]
    assert params["dataflow_root"].startswith("gs://bucket/root/dataflow/")  # under the pipeline root, per run
    assert params["dataflow_job_name"] == "yt8m-preprocess-" + params["dataflow_root"].rsplit("/", 1)[1]
    assert (params["gcp_project"], params["gcp_region"]) == ("my-project", "us-central1")
    assert f"image {images.DATAFLOW_IMAGE} is a placeholder" in caplog.text
    assert "/gcs/" not in json.dumps(tasks["dataflow-flex-template"])


def test_a_real_submission_refuses_a_placeholder_dataflow_image(tmp_path, monkeypatch):
    from yt8m_pipeline import images, vertex

    for name in ("CPU_IMAGE", "GPU_IMAGE"):
        monkeypatch.setattr(images, name, f"europe-docker.pkg.dev/p/yt8m/{name.lower()}@sha256:{'a' * 64}")
    with pytest.raises(vertex.SubmitError, match="yt8m-dataflow:0.1.0 is a placeholder"):
        vertex.submit_from_args(**{**_SUBMIT, "config_path": _dataflow_config_file(tmp_path)})
