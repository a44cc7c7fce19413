import os

import numpy as np
import pytest

from tests.helpers import random_video, write_videos
from yt8m import export, gate, publish, storage
from yt8m.models import registry

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("gate")
    keras.utils.set_random_seed(0)
    model = registry.build_model("logistic", NUM_CLASSES, "small")
    export.export_serving_model([export.Member("logistic", model, "video", {"family": "logistic"})],
                                str(d / "model"))
    rng = np.random.default_rng(0)
    data = str(d / "holdout.tfrecord")
    write_videos(data, [random_video(rng, f"h{i}", 8, NUM_CLASSES) for i in range(20)])
    return str(d / "model"), data


def test_gate_passes_a_model_that_meets_every_check(model_and_data):
    model_dir, data = model_and_data
    result = gate.run_gate(model_dir, data, NUM_CLASSES, min_gap=0.0, max_size_bytes=1 << 30)
    assert result.passed and result.reasons() == []
    assert result.metrics["num_videos"] == 20 and 0 <= result.metrics["gap"] <= 1
    assert "PASSED" in result.to_markdown()


def test_gate_refuses_a_low_gap_model_and_says_value_and_threshold(model_and_data):
    model_dir, data = model_and_data
    result = gate.run_gate(model_dir, data, NUM_CLASSES, min_gap=0.99, max_size_bytes=1 << 30)
    assert not result.passed
    (failed,) = [c for c in result.checks if not c.passed]
    assert failed.name == "gap_at_20" and failed.limit == 0.99 and failed.value < 0.99
    assert "threshold 0.9900" in result.reasons()[0] and "REFUSED" in result.to_markdown()


def test_gate_refuses_an_oversize_model(model_and_data):
    model_dir, data = model_and_data
    size = storage.directory_size(model_dir)
    result = gate.run_gate(model_dir, data, NUM_CLASSES, min_gap=0.0, max_size_bytes=size - 1)
    assert not result.passed
    assert [c.name for c in result.checks if not c.passed] == ["size"]
    assert f"{size:,} bytes" in result.reasons()[0]


def test_gate_refuses_a_model_that_does_not_load(tmp_path, model_and_data):
    _, data = model_and_data
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a model")
    result = gate.run_gate(str(broken), data, NUM_CLASSES, min_gap=0.0, max_size_bytes=1 << 30)
    assert not result.passed
    assert {c.name for c in result.checks if not c.passed} == {"loads_in_fresh_process", "gap_at_20"}


def test_publish_is_versioned_with_manifest_latest_pointer_and_kaggle_csv(tmp_path, model_and_data):
    model_dir, data = model_and_data
    root = str(tmp_path / "published")
    first = publish.publish_model(model_dir, root, {"gap": 0.5}, test_data=data)
    assert publish.latest_version(root) == first
    manifest = storage.read_json(os.path.join(first, "manifest.json"))
    assert manifest["gap"] == 0.5 and manifest["model_bytes"] == storage.directory_size(os.path.join(first, "saved_model"))
    lines = open(os.path.join(first, "test_predictions.csv")).read().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs" and len(lines) == 21
    assert len(lines[1].split(",")[1].split()) == 2 * NUM_CLASSES  # k = min(20, C) pairs
    assert not os.listdir(os.path.join(root, ".staging"))


def test_a_failed_publish_leaves_the_previous_version_and_nothing_partial(tmp_path, model_and_data, monkeypatch):
    model_dir, data = model_and_data
    root = str(tmp_path / "published")
    first = publish.publish_model(model_dir, root, {"run": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full while writing predictions")

    monkeypatch.setattr(publish.predictions, "write_kaggle_csv", crash)
    with pytest.raises(OSError):
        publish.publish_model(model_dir, root, {"run": 2}, test_data=data)
    assert publish.latest_version(root) == first
    assert os.listdir(os.path.join(root, "versions")) == [os.path.basename(first)]


def test_a_failing_publish_leaves_no_staging_folder(model_and_data, tmp_path):
    model_dir, _ = model_and_data
    root = str(tmp_path / "pub")
    bad_test_data = str(tmp_path / "not-a-tfrecord.tfrecord")
    open(bad_test_data, "wb").write(b"this is not a TFRecord file at all")
    with pytest.raises(Exception):
        publish.publish_model(model_dir, root, {"k": 1}, test_data=bad_test_data)
    assert os.listdir(os.path.join(root, ".staging")) == []
    assert not os.path.exists(os.path.join(root, "versions")) or os.listdir(os.path.join(root, "versions")) == []
    assert publish.latest_version(root) is None


def test_abandoned_staging_folders_are_removed_and_recent_ones_kept(model_and_data, tmp_path):
    model_dir, _ = model_and_data
    root = tmp_path / "pub"
    old, recent = root / ".staging" / "v-old-killed", root / ".staging" / "v-running-now"
    for folder in (old, recent):
        (folder / "saved_model").mkdir(parents=True)
        (folder / "saved_model" / "part").write_text("x")
    day_and_more = 25 * 3600
    stale = os.path.getmtime(old / "saved_model" / "part") - day_and_more
    os.utime(old / "saved_model" / "part", (stale, stale))
    final = publish.publish_model(model_dir, str(root), {"k": 2})
    assert sorted(os.listdir(root / ".staging")) == ["v-running-now"]
    assert os.path.isdir(final) and publish.latest_version(str(root)) == final


def test_two_publishes_of_the_same_manifest_in_one_second_get_two_versions(model_and_data, tmp_path):
    model_dir, _ = model_and_data
    root = str(tmp_path / "pub")
    first = publish.publish_model(model_dir, root, {"same": 1})
    second = publish.publish_model(model_dir, root, {"same": 1})
    assert first != second and len(os.listdir(os.path.join(root, "versions"))) == 2
