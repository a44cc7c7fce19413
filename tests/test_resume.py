"""Checkpoints and resume: SIGKILL a `yt8m train` run, restart it, and it resumes and finishes on schedule."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from yt8m import checkpoints, config as config_lib, synth, train_loop, writers

NUM_CLASSES = 20


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth.generate(str(root), videos=200, classes=NUM_CLASSES, seed=0, progress=False)
    return root


def _train_cmd(config, data, out):
    return [sys.executable, "-m", "yt8m_pipeline.cli", "train", "--config", config, "--data", data, "--output", out,
            "--num-classes", str(NUM_CLASSES)]


def test_sigkill_then_restart_resumes_from_the_checkpoint_and_finishes_the_configured_steps(tmp_path, synth_dir):
    epochs, batch = 12, 16
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump({
        "name": "killme", "family": "moe", "preset": "small",
        "training": {"epochs": epochs, "batch_size": batch, "learning_rate": 0.01, "checkpoint_every_steps": 10,
                     "ema_halflife": 20, "ema_start_step": 5, "mixup_prob": 0.5}}))
    data = str(synth_dir / "train" / "*.tfrecord")
    out = str(tmp_path / "out")
    ckpt_dir = os.path.join(out, "checkpoints")
    first_log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(_train_cmd(str(config), data, out), stdout=first_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while checkpoints.latest_step(ckpt_dir) == 0:
            assert proc.poll() is None, open(tmp_path / "first.log").read()[-3000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        first_log.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoints.latest_step(ckpt_dir)
    state = checkpoints.read_state(ckpt_dir)
    total = state["total_steps"]
    assert state["steps_per_epoch"] * epochs == total and 0 < killed_at < total, (killed_at, state)
    assert not os.path.exists(os.path.join(out, "metrics.json"))

    second = subprocess.run(_train_cmd(str(config), data, out), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = [line for line in second.stderr.splitlines() if "resumed from checkpoint" in line]
    assert len(resumed) == 1 and f"at step {killed_at}/{total}" in resumed[0], resumed
    assert "training records" not in second.stderr  # the record count came from the state file
    # the console carries the verb's own progress, not TensorFlow's or absl's INFO lines (--verbose shows them)
    assert not [line for line in second.stderr.splitlines() if " INFO absl: " in line or " INFO tensorflow: " in line]
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["steps"] == metrics["total_steps"] == total
    assert metrics["resumed_from_step"] == killed_at and metrics["trained_steps"] == total - killed_at
    state = checkpoints.read_state(ckpt_dir)
    assert state["finished"] and state["step"] == total and state["resumed_from"] == [killed_at]
    assert checkpoints.latest_step(ckpt_dir) == total
    assert os.path.exists(os.path.join(out, "saved_model", "saved_model.pb"))


class _Killed(Exception):
    pass


def test_an_interrupted_run_resumed_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    """Step, weights, optimizer, EMA and data position all come back: the weights match a run never stopped."""
    rng = np.random.default_rng(0)
    records = [writers.video_level_example(f"v{i}", sorted(rng.choice(NUM_CLASSES, 2, replace=False).tolist()),
                                           rng.normal(0, 1, 1024), rng.normal(0, 1, 128)).SerializeToString()
               for i in range(40)]
    data = str(tmp_path / "video.tfrecord")
    writers.write_tfrecords(data, records)
    cfg = config_lib.model_config_from_dict({"name": "r", "family": "moe", "training": {
        "epochs": 3, "batch_size": 8, "learning_rate": 0.01, "checkpoint_every_steps": 4, "ema_halflife": 3,
        "ema_start_step": 2, "lr_decay_examples": 40, "lr_decay": 0.5}})

    straight = train_loop.Trainer(cfg, NUM_CLASSES, str(tmp_path / "straight"))
    straight.fit([data])

    interrupted = train_loop.Trainer(cfg, NUM_CLASSES, str(tmp_path / "resumed"))
    original = interrupted._make_train_step()
    calls = {"n": 0}

    def dying_step(*args):
        calls["n"] += 1
        if calls["n"] == 7:  # after the checkpoint at step 4, mid-epoch 2
            raise _Killed()
        return original(*args)

    interrupted._train_step = dying_step
    with pytest.raises(_Killed):
        interrupted.fit([data])
    assert checkpoints.latest_step(str(tmp_path / "resumed")) == 4

    resumed = train_loop.Trainer(cfg, NUM_CLASSES, str(tmp_path / "resumed"))
    summary = resumed.fit([data])
    assert summary["resumed_from_step"] == 4 and summary["steps"] == summary["total_steps"] == 15
    assert int(resumed.optimizer.iterations.numpy()) == 15
    for a, b in zip(straight.raw_weights(), resumed.raw_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(straight.ema_weights(), resumed.ema_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _video_level_file(path, seed, videos=24):
    rng = np.random.default_rng(seed)
    writers.write_tfrecords(str(path), [
        writers.video_level_example(f"s{seed}v{i}", sorted(rng.choice(NUM_CLASSES, 2, replace=False).tolist()),
                                    rng.normal(0, 1, 1024), rng.normal(0, 1, 128)).SerializeToString()
        for i in range(videos)])
    return str(path)


@pytest.mark.parametrize("change", ["data", "num_classes", "model"])
def test_train_into_an_output_of_another_run_is_refused_unless_restart(tmp_path, capsys, change):
    """The checkpoint of run A is never resumed (nor its model re-exported) for run B on other data/classes/model."""
    from yt8m_pipeline import cli

    first, second = _video_level_file(tmp_path / "a.tfrecord", 1), _video_level_file(tmp_path / "b.tfrecord", 2, 40)
    config = tmp_path / "m.yaml"
    raw = {"name": "m", "family": "moe", "training": {"epochs": 2, "batch_size": 8}}
    config.write_text(yaml.safe_dump(raw))
    out = str(tmp_path / "out")
    assert cli.main(["train", "--config", str(config), "--data", first, "--output", out,
                     "--num-classes", str(NUM_CLASSES)]) == 0
    capsys.readouterr()
    argv = ["train", "--config", str(config), "--data", first, "--output", out, "--num-classes", str(NUM_CLASSES)]
    if change == "data":
        argv[4] = second
    elif change == "num_classes":
        argv[-1] = str(NUM_CLASSES + 5)
    else:
        config.write_text(yaml.safe_dump({**raw, "overrides": {"num_mixtures": 4}}))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds checkpoints of another run" in err[0] and "--restart" in err[0], err
    assert cli.main(argv + ["--restart"]) == 0
    state = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert state["resumed_from_step"] == 0 and state["steps"] == state["total_steps"]


def test_more_epochs_on_the_same_run_still_resume(tmp_path):
    data = _video_level_file(tmp_path / "a.tfrecord", 1)
    cfg = config_lib.model_config_from_dict({"name": "m", "family": "moe", "training": {"epochs": 1, "batch_size": 8}})
    train_loop.Trainer(cfg, NUM_CLASSES, str(tmp_path / "ck")).fit([data])
    longer = config_lib.model_config_from_dict({"name": "m", "family": "moe",
                                                "training": {"epochs": 2, "batch_size": 8}})
    summary = train_loop.Trainer(longer, NUM_CLASSES, str(tmp_path / "ck")).fit([data])
    assert summary["resumed_from_step"] == 3 and summary["steps"] == 6


def test_more_examples_to_see_on_the_same_run_still_resume(tmp_path):
    data = _video_level_file(tmp_path / "a.tfrecord", 1)  # 24 videos: 3 steps per epoch
    seen = {"name": "m", "family": "moe", "training": {"batch_size": 8, "examples_to_see": 40}}
    first = train_loop.Trainer(config_lib.model_config_from_dict(seen), NUM_CLASSES, str(tmp_path / "ck")).fit([data])
    assert first["steps"] == 5 and first["epochs"] == 2
    seen["training"]["examples_to_see"] = 100
    summary = train_loop.Trainer(config_lib.model_config_from_dict(seen), NUM_CLASSES, str(tmp_path / "ck")).fit([data])
    assert summary["resumed_from_step"] == 5 and summary["trained_steps"] == 8 and summary["steps"] == 13
