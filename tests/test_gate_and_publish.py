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


# ---- the gate against the last release, the baseline, latency, the release report, a killed publish

def _separable_videos(rng, count: int, prefix: str):
    """Videos of one label c each, whose rgb dimension c is 255 in every frame (the rest 0..40)."""
    videos = []
    for i in range(count):
        label = i % NUM_CLASSES
        rgb = rng.integers(0, 41, (6, 1024), dtype=np.uint8)
        rgb[:, label] = 255
        audio = rng.integers(0, 41, (6, 128), dtype=np.uint8)
        videos.append((f"{prefix}{i}", [label], rgb, audio))
    return videos


def _logistic(good: bool):
    """A logistic member that reads the label off rgb dimension c (good) or random weights (not good)."""
    import keras

    keras.utils.set_random_seed(1)
    model = registry.build_model("logistic", NUM_CLASSES, "small")
    if good:
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][0]
        kernel = np.zeros(dense.kernel.shape, np.float32)
        kernel[np.arange(NUM_CLASSES), np.arange(NUM_CLASSES)] = 50.0
        dense.set_weights([kernel, np.zeros(NUM_CLASSES, np.float32)])
    return model


@pytest.fixture(scope="module")
def good_and_bad_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("release")
    dirs = {}
    for name in ("good", "bad"):
        dirs[name] = str(d / name)
        export.export_serving_model([export.Member("logistic", _logistic(name == "good"), "video",
                                                   {"family": "logistic"})], dirs[name])
    data = str(d / "holdout.tfrecord")
    write_videos(data, _separable_videos(np.random.default_rng(3), 40, "s"))
    return dirs, data


def test_gate_refuses_a_model_worse_than_the_previous_release_on_the_same_holdout(good_and_bad_models, tmp_path):
    dirs, data = good_and_bad_models
    root = str(tmp_path / "published")
    version = publish.publish_model(dirs["good"], root, {"run": "good"})
    reference = gate.previous_release_reference(root, data, NUM_CLASSES)
    assert reference.name == f"previous release {os.path.basename(version)}"
    assert reference.gap > 0.95  # the good model, scored afresh on this holdout
    result = gate.run_gate(dirs["bad"], data, NUM_CLASSES, min_gap=0.0, max_size_bytes=1 << 30, reference=reference)
    assert not result.passed
    check = {c.name: c for c in result.checks}["vs_reference"]
    assert not check.passed and check.limit == pytest.approx(reference.gap, abs=1e-6)
    assert f"vs the previous release {os.path.basename(version)} {reference.gap:.4f}" in check.message
    assert result.reasons() == [check.message]  # the only failing check, named with both values


def test_gate_passes_a_model_that_matches_the_previous_release_within_the_tolerance(good_and_bad_models, tmp_path):
    dirs, data = good_and_bad_models
    root = str(tmp_path / "published")
    publish.publish_model(dirs["bad"], root, {"run": "bad"})
    better = gate.run_gate(dirs["good"], data, NUM_CLASSES, 0.0, 1 << 30,
                           reference=gate.previous_release_reference(root, data, NUM_CLASSES))
    assert better.passed
    publish.publish_model(dirs["good"], root, {"run": "good"})
    equal = gate.run_gate(dirs["good"], data, NUM_CLASSES, 0.0, 1 << 30,
                          reference=gate.previous_release_reference(root, data, NUM_CLASSES))
    assert equal.passed  # the same model again: >= the previous release
    tolerated = gate.run_gate(dirs["bad"], data, NUM_CLASSES, 0.0, 1 << 30, max_gap_drop=1.0,
                              reference=gate.previous_release_reference(root, data, NUM_CLASSES))
    assert tolerated.passed


def test_no_previous_release_means_no_previous_reference(good_and_bad_models, tmp_path):
    _dirs, data = good_and_bad_models
    assert gate.previous_release_reference(str(tmp_path / "empty"), data, NUM_CLASSES) is None
    assert gate.previous_release_reference("", data, NUM_CLASSES) is None


def test_the_logistic_baseline_learns_separable_data_and_not_random_labels(tmp_path):
    from yt8m import baseline, schema, writers

    rng = np.random.default_rng(5)

    def video_level(path, videos):
        records = [writers.video_level_example(vid, labels, schema.dequantize(rgb).mean(0),
                                               schema.dequantize(audio).mean(0)).SerializeToString()
                   for vid, labels, rgb, audio in videos]
        writers.write_tfrecords(path, records)

    video_level(str(tmp_path / "train.tfrecord"), _separable_videos(rng, 200, "t"))
    video_level(str(tmp_path / "holdout.tfrecord"), _separable_videos(rng, 40, "h"))
    video_level(str(tmp_path / "noise.tfrecord"), [random_video(rng, f"n{i}", 6, NUM_CLASSES) for i in range(200)])
    video_level(str(tmp_path / "noise_holdout.tfrecord"),
                [random_video(rng, f"m{i}", 6, NUM_CLASSES) for i in range(40)])
    learned = baseline.logistic_baseline_gap([str(tmp_path / "train.tfrecord")], [str(tmp_path / "holdout.tfrecord")],
                                             NUM_CLASSES, 200)
    chance = baseline.logistic_baseline_gap([str(tmp_path / "noise.tfrecord")],
                                            [str(tmp_path / "noise_holdout.tfrecord")], NUM_CLASSES, 200)
    assert learned > 0.7 and chance < 0.4, (learned, chance)  # chance: ~0.25 with 1-3 of 10 labels
    # tiny data: validation every EVAL_EXAMPLES examples; 5M videos: one pass, one evaluation
    assert baseline.evaluation_schedule(200) == (79, baseline.MAX_EXAMPLES // (79 * 128))
    assert baseline.evaluation_schedule(5_000_000) == (39063, 1)


def test_the_logistic_baseline_trains_until_its_validation_gap_stops_improving(tmp_path, caplog):
    """Converged, not a fixed count: it stops PATIENCE evaluations after its best validation GAP, far below
    the cap, and reports the evaluation it kept."""
    import logging

    from yt8m import baseline, schema, writers

    rng = np.random.default_rng(6)
    records = [writers.video_level_example(vid, labels, schema.dequantize(rgb).mean(0),
                                           schema.dequantize(audio).mean(0)).SerializeToString()
               for vid, labels, rgb, audio in _separable_videos(rng, 200, "t")]
    writers.write_tfrecords(str(tmp_path / "train.tfrecord"), records)
    with caplog.at_level(logging.INFO, logger="yt8m.baseline"):
        baseline.logistic_baseline_gap([str(tmp_path / "train.tfrecord")], [str(tmp_path / "train.tfrecord")],
                                       NUM_CLASSES, 200)
    import re

    best, stopped, allowed = map(int, re.search(r"at evaluation (\d+) of (\d+), at most (\d+)", caplog.text).groups())
    assert stopped == best + baseline.PATIENCE < allowed, caplog.text


@pytest.mark.parametrize("limits, failing", [({"max_load_seconds": 1e-6}, "load_seconds"),
                                             ({"max_ms_per_video": 1e-6}, "ms_per_video")])
def test_gate_refuses_a_model_over_the_latency_budget(model_and_data, limits, failing):
    model_dir, data = model_and_data
    result = gate.run_gate(model_dir, data, NUM_CLASSES, 0.0, 1 << 30, **limits)
    assert not result.passed
    assert [c.name for c in result.checks if not c.passed] == [failing]
    assert result.metrics["load_seconds"] > 0 and result.metrics["ms_per_video"] > 0
    assert "limit 1e-06" in result.reasons()[0]


def test_release_report_shows_checks_members_and_per_class_ap(good_and_bad_models, tmp_path):
    from yt8m import release_report

    dirs, data = good_and_bad_models
    result = gate.run_gate(dirs["good"], data, NUM_CLASSES, 0.5, 1 << 30, max_ms_per_video=1e-6)
    assert [r["class"] for r in result.class_ap] == list(range(NUM_CLASSES))  # 4 positives each, id order
    assert all(r["ap"] > 0.9 and r["positives"] == 4 for r in result.class_ap)
    model_dir = tmp_path / "merged"
    model_dir.mkdir()
    storage.write_json(str(model_dir / "ensemble.json"),
                       {"members": [{"name": "lr", "family": "logistic", "oof_gap": 0.5, "holdout_gap": 0.6}],
                        "oof_gap": 0.55, "holdout_gap": 0.65, "combiners": {"average": 0.55, "weighted": 0.56}})
    page = release_report.render(result, str(model_dir))
    assert "teacher" not in page
    assert "REFUSED" in page and "<td>ms_per_video</td><td>FAIL</td>" in page
    assert "<td>weighted</td><td>0.5600</td>" in page and "<td>lr</td><td>logistic</td>" in page
    assert page.count("<tr>") == 1 + len(result.checks) + 1 + 2 + 1 + 2 + 1 + NUM_CLASSES
    ensemble = storage.read_json(str(model_dir / "ensemble.json"))
    ensemble["teacher"] = {"members": {"big": {"oof_gap": 0.7, "holdout_gap": 0.71}}, "combiner": "stacking",
                           "oof_gap": 0.75, "holdout_gap": 0.76}
    storage.write_json(str(model_dir / "ensemble.json"), ensemble)
    page = release_report.render(result, str(model_dir))
    assert "<td>big</td><td>0.7000</td><td>0.7100</td>" in page
    assert "<td>teacher ensemble (stacking)</td><td>0.7500</td><td>0.7600</td>" in page
    assert "Distillation round" not in page
    ensemble["distillation"] = {"round": 2, "rule": "best", "kept": "teacher", "students": ["s1", "s2"],
                                "students_combiner": "stacking", "students_oof_gap": 0.5, "students_holdout_gap": 0.52,
                                "teacher_combiner": "weighted", "teacher_oof_gap": 0.55, "teacher_holdout_gap": 0.56}
    storage.write_json(str(model_dir / "ensemble.json"), ensemble)
    page = release_report.render(result, str(model_dir))
    assert "<h2>Distillation round 2: kept the teacher (rule best)</h2>" in page
    assert "<td>students (s1, s2)</td><td>stacking</td><td>0.5000</td><td>0.5200</td>" in page
    assert "<td>teacher</td><td>weighted</td><td>0.5500</td><td>0.5600</td>" in page


def test_frequent_and_rare_classes_are_chosen_by_holdout_positives():
    positive = np.zeros((30, 6), bool)
    for c, n in enumerate([9, 1, 5, 0, 3, 7]):
        positive[:n, c] = True
    rows = gate.frequent_and_rare_class_ap(np.random.default_rng(0).random((30, 6)), positive, count=2)
    assert [r["class"] for r in rows] == [0, 5, 4, 1]  # 2 most frequent, then 2 rarest with positives


def test_a_publish_killed_at_any_moment_leaves_only_complete_versions(model_and_data, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    model_dir, data = model_and_data
    root = tmp_path / "published"
    first = publish.publish_model(model_dir, str(root), {"run": 0})
    script = ("import sys; from yt8m import publish; "
              "publish.publish_model(sys.argv[1], sys.argv[2], {'run': sys.argv[3]}, test_data=sys.argv[4])")
    staging = root / ".staging"
    for attempt, when in enumerate(("staging", "manifest", 0.5)):
        proc = subprocess.Popen([sys.executable, "-c", script, model_dir, str(root), str(attempt + 1), data])
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            staged = list(staging.glob("*")) if staging.exists() else []
            if when == "staging" and staged:
                break
            if when == "manifest" and any((s / "test_predictions.csv").exists() for s in staged):
                break
            if isinstance(when, float) and staged:
                time.sleep(when)
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for version in (root / "versions").iterdir():  # nothing partial is visible under a published name
            assert (version / "manifest.json").exists() and (version / "saved_model" / "saved_model.pb").exists()
        latest = publish.latest_version(str(root))
        assert os.path.exists(os.path.join(latest, "manifest.json"))
    assert publish.latest_version(str(root)) is not None and os.path.exists(first)
