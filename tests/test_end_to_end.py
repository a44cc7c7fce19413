"""`yt8m run --local`, the README's main job, end to end (slow: minutes): the packaged config (its members,
combiner, folds, gate) at a smaller size, 1,000 videos and a fifth of the training (~4 minutes instead of
~8; `make run` itself is timed by hand, README "The main job")."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.helpers import independent_sequence_example
from yt8m import config, dataset, metrics, readers, storage
from yt8m_pipeline import local_run as local_run_lib

pytestmark = pytest.mark.slow


def _yt8m(*args, timeout=1500):
    return subprocess.run([sys.executable, "-P", "-m", "yt8m_pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _packaged_config_at_test_size(path) -> str:
    """The packaged local.yaml with 1,000 videos and each member's training examples cut to a fifth."""
    raw = yaml.safe_load(open(local_run_lib.default_config_path()))
    raw["synth"]["videos"] = 1000
    for m in raw["models"]:
        target = config.model_config_from_dict(m).training.examples_target(raw["data"]["num_classes"])
        m["training"] = {**(m.get("training") or {}), "examples_to_see": target // 5, "examples_per_class": 0}
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    result = _yt8m("run", "--local", "--workdir", str(workdir), "--config",
                   _packaged_config_at_test_size(tmp_path_factory.mktemp("config") / "local.yaml"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _CONSOLE["stdout"], _CONSOLE["stderr"] = result.stdout, result.stderr
    return workdir, result.stdout.strip().splitlines()


_CONSOLE = {}


def test_the_console_is_short_and_the_noise_is_in_per_task_log_files(local_run):
    workdir, lines = local_run
    console = _CONSOLE["stdout"].splitlines() + _CONSOLE["stderr"].splitlines()
    # Progress lines are throttled by time (one per task per PROGRESS_INTERVAL_SECONDS, plus each fit's
    # last), so their count grows on a loaded machine (22 quiet, 36 at load 8); everything else is fixed
    # (43 lines). A line per epoch would be hundreds (the logistic member runs 178 epochs per fold).
    progress = [line for line in console if re.search(r": epoch \d+/\d+, loss ", line)]
    assert len(console) - len(progress) <= 60, "\n".join(console)
    assert len(progress) <= 80, "\n".join(progress)
    text = "\n".join(console)
    for noise in ("executor_input", "oneDNN", "cuInit", "absl::InitializeLog", "apache_beam", "UserWarning"):
        assert noise not in text, noise
    first_member = config.load_run_config(local_run_lib.default_config_path()).models[0].name
    assert any(line.strip().startswith(f"done     train {first_member}") for line in console)
    logs = [line for line in console if "task logs in" in line][0].rsplit(" ", 1)[-1]
    names = sorted(os.listdir(logs))
    assert {"preprocess-op.log", "ensemble-op.log", "gate-op.log", "publish-op.log"} <= set(names), names
    assert "executor_input" in open(os.path.join(logs, "kfp-local.log")).read() + "".join(
        open(os.path.join(logs, n)).read() for n in names if n.startswith("train"))


def test_run_prints_the_published_directory_last_with_gap_oracle_and_size(local_run):
    workdir, lines = local_run
    published = lines[-1]
    assert published.startswith(str(workdir / "published" / "versions"))
    assert os.path.isfile(os.path.join(published, "saved_model", "saved_model.pb"))
    assert "holdout GAP@20" in lines[-2] and "oracle ceiling" in lines[-2] and "MB" in lines[-2]


def test_published_model_beats_the_class_prior_by_a_wide_margin(local_run):
    workdir, lines = local_run
    manifest = storage.read_json(os.path.join(lines[-1], "manifest.json"))
    dataset_dir = manifest["dataset"]["uri"]
    ds = dataset.Dataset.open(dataset_dir)
    train = readers.read_id_labels(ds.files("video", ds.fold_names))
    holdout = readers.read_id_labels(ds.files("video", [ds.holdout]))
    num_classes = int(manifest["dataset"]["num_classes"])
    prior = metrics.dense_labels(list(train.values()), num_classes).mean(0)
    labels = metrics.dense_labels(list(holdout.values()), num_classes)
    prior_gap = metrics.gap_at_k(np.tile(prior, (len(holdout), 1)), labels)
    assert manifest["gate"]["num_videos"] == len(holdout)
    assert manifest["gate"]["gap"] > prior_gap + 0.15, (manifest["gate"]["gap"], prior_gap)
    # a first release: the gate compared it with the mean-pooled logistic trained on the same folds
    assert manifest["gate"]["gap"] >= manifest["gate"]["reference_gap"] > prior_gap


def test_manifest_has_lineage_and_the_kaggle_csv_covers_the_test_split(local_run):
    workdir, lines = local_run
    published = lines[-1]
    manifest = storage.read_json(os.path.join(published, "manifest.json"))
    assert manifest["dataset"]["source"].endswith("train/*.tfrecord")
    packaged = config.load_run_config(local_run_lib.default_config_path())  # the config `make run` uses
    assert [m["name"] for m in manifest["ensemble"]["members"]] == [m.name for m in packaged.models]
    assert manifest["run_config"]["data"]["folds"] == packaged.data.folds
    synth_info = json.load(open(workdir / "data" / "synth.json"))
    rows = open(os.path.join(published, "test_predictions.csv")).read().splitlines()
    assert rows[0] == "VideoId,LabelConfidencePairs"
    assert len(rows) - 1 == synth_info["splits"]["test"]["videos"] > 0
    result = _yt8m("evaluate", "--predictions", os.path.join(published, "test_predictions.csv"), "--data",
                   str(workdir / "data" / "test" / "*.tfrecord"), "--num-classes", "100", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["gap"] > 0.3


def test_published_model_scores_independently_written_records_in_a_new_process(local_run, tmp_path):
    _, lines = local_run
    rng = np.random.default_rng(5)
    records = [independent_sequence_example(f"new{i}".encode(), [1], rng.integers(0, 256, (n, 1024), np.uint8),
                                            rng.integers(0, 256, (n, 128), np.uint8)) for i, n in enumerate([7, 350])]
    np.save(tmp_path / "records.npy", np.array(records, dtype=object), allow_pickle=True)
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"serve = tf.saved_model.load({os.path.join(lines[-1], 'saved_model')!r}).signatures['serving_default']\n"
        f"records = np.load({str(tmp_path / 'records.npy')!r}, allow_pickle=True).tolist()\n"
        "out = serve(serialized=tf.constant(records))\n"
        "print(out['scores'].shape, out['video_id'].numpy().tolist())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "(2, 100) [b'new0', b'new1']"


# A run the gate refuses (exit 1, "NOT published", nothing under LATEST): tests/test_local_run.py's two concurrent
# runs, one of them refused.
