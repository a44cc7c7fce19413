import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import random_video, write_videos
from yt8m import export, predictions
from yt8m.models import registry
from yt8m_pipeline import cli

VERBS = ["synth", "run", "predict", "evaluate", "compile"]


def _run(*args):
    # -P: the repo root must not shadow installed packages (its docker/ folder is not the docker SDK)
    return subprocess.run([sys.executable, "-P", "-m", "yt8m_pipeline.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([verb, "--help"])
    assert exit_info.value.code == 0
    assert "usage: yt8m " + verb in capsys.readouterr().out


def test_unknown_flag_exits_non_zero_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["synth", "--out", "x", "--videos", "-3"])
    assert exit_info.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["predict", "--model", "/nonexistent", "--data", "x", "--out", "y.csv"], "no SavedModel there"),
    (["evaluate", "--predictions", "/nonexistent.csv", "--data", "x"], "nonexistent.csv"),
    (["run", "--local", "--data", "/nonexistent/*.tfrecord"], "no --data files match"),
    (["run", "--local", "--config", "/nonexistent.yaml"], "config file not found"),
    (["run"], "only --local"),
])
def test_bad_input_gives_one_line_reason_and_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"yt8m {argv[0]}: error:") and message in err[0]


def test_synth_predict_evaluate_round_trip(tmp_path):
    out = tmp_path / "synth"
    result = _run("synth", "--out", str(out), "--videos", "60", "--classes", "8", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(out)
    model = registry.build_model("logistic", 8, "small")
    export.export_serving_model([export.Member("logistic", model, "video", {"family": "logistic"})],
                                str(tmp_path / "model"))
    csv = tmp_path / "pred.csv"
    result = _run("predict", "--model", str(tmp_path / "model"), "--data", str(out / "test" / "*.tfrecord"),
                  "--out", str(csv))
    assert result.returncode == 0, result.stderr
    ids, labels, scores = predictions.read_kaggle_csv(str(csv))
    assert len(ids) == 6 and all(len(l) == 8 for l in labels)
    result = _run("evaluate", "--predictions", str(csv), "--data", str(out / "test" / "*.tfrecord"),
                  "--num-classes", "8", "--json")
    assert result.returncode == 0, result.stderr
    import json

    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["num_videos"] == 6 and 0 <= metrics["gap"] <= 1


def test_evaluate_rejects_predictions_for_unknown_videos(tmp_path, capsys):
    data = str(tmp_path / "d.tfrecord")
    write_videos(data, [random_video(np.random.default_rng(0), "known", 3, 5)])
    csv = str(tmp_path / "p.csv")
    predictions.write_kaggle_csv(csv, ["stranger"], np.ones((1, 5), np.float32))
    assert cli.main(["evaluate", "--predictions", csv, "--data", data, "--num-classes", "5"]) == 2
    assert "not in --data" in capsys.readouterr().err
