"""`yt8m component` reruns one task of a local run into a new folder; `yt8m lineage` draws the run's graph."""

import hashlib
import os
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow


def _yt8m(*args, cwd=None):
    return subprocess.run([sys.executable, "-P", "-m", "yt8m_pipeline.cli", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


def _snapshot(folder):
    digest = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            digest[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "synth": {"videos": 400, "classes": 12, "seed": 3},
        "data": {"num_classes": 12, "folds": 2, "holdout_fraction": 0.2},
        "models": [{"name": "moe", "family": "moe", "training": {"epochs": 2, "batch_size": 32}}],
        "gate": {"min_gap": 0.0, "compare_with_previous": False},  # 2 epochs: not a release candidate
    }))
    workdir = root / "w"
    result = _yt8m("run", "--local", "--config", str(config), "--workdir", str(workdir))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return workdir, result.stdout.strip().splitlines()[-1]


def test_rerun_one_training_task_locally_into_a_new_folder_without_touching_the_run(tiny_run):
    workdir, _published = tiny_run
    before = _snapshot(workdir / "pipeline_root")
    result = _yt8m("component", "train", "--local", "--run-dir", str(workdir))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out_dir = result.stdout.strip().splitlines()[-1]
    assert out_dir.startswith(str(workdir / "reruns" / "train-"))
    assert "rerunning train-" in result.stdout and "epoch 2/2" in result.stdout
    produced = [p for p in os.listdir(out_dir) if os.path.isdir(os.path.join(out_dir, p))]
    assert produced, os.listdir(out_dir)
    assert os.path.exists(os.path.join(out_dir, "executor_output.json"))
    assert _snapshot(workdir / "pipeline_root") == before


def test_rerun_publish_goes_to_its_own_publish_root(tiny_run):
    workdir, published = tiny_run
    versions = sorted(os.listdir(workdir / "published" / "versions"))
    result = _yt8m("component", "publish", "--run-dir", str(workdir))
    assert result.returncode == 0, result.stderr[-2000:]
    out_dir = result.stdout.strip().splitlines()[-1]
    assert os.listdir(os.path.join(out_dir, "published", "versions"))
    assert sorted(os.listdir(workdir / "published" / "versions")) == versions


def test_docker_rerun_without_an_engine_is_one_line_and_writes_the_docker_run_line(tiny_run):
    workdir, _ = tiny_run
    result = _yt8m("component", "gate", "--docker", "--run-dir", str(workdir))
    assert result.returncode == 2
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "no Docker engine reachable" in err[0], result.stderr
    assert "equivalent: docker run --rm -v" in result.stdout
    script = [l for l in result.stdout.splitlines() if "whole line:" in l][0].rsplit(" ", 1)[-1].rstrip(")")
    text = open(script).read()
    assert "docker run --rm" in text and "--executor_input" in text and "python3 -m kfp.dsl.executor_main" in text


@pytest.mark.parametrize("args, message", [
    (["component", "nonsense", "--run-dir", "W"], "unknown component 'nonsense'"),
    (["component", "train", "--task", "train-op-99", "--run-dir", "W"], "no train task 'train-op-99'"),
    (["component", "train", "--run-dir", "/nonexistent"], "not a local run's workdir"),
])
def test_bad_rerun_requests_are_one_line(tiny_run, args, message):
    workdir, _ = tiny_run
    result = _yt8m(*[str(workdir) if a == "W" else a for a in args])
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_lineage_goes_from_the_published_model_back_to_the_raw_data(tiny_run):
    workdir, published = tiny_run
    result = _yt8m("lineage", str(workdir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"published model {published}")
    text = "\n".join(lines)
    for step in ("publish", "gate", "ensemble", "train final moe", "train moe fold 0", "train moe fold 1",
                 "preprocess", str(workdir / "data" / "train" / "*.tfrecord")):
        assert step in text, step
    html_path = lines[-1].rsplit(" ", 1)[-1]
    page = open(html_path).read()
    assert "<svg" in page and "preprocess" in page and published in page
