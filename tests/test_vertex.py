"""Vertex AI: the run config's vertex section, the data fingerprint, the Model Registry upload's
arguments, the publish task's output artifact, and submission (job built offline, dry run, errors)."""

import json
import os

import pytest

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
