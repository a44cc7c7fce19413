"""Every verb that reads YT8M records answers a damaged file or a bad record with ONE line naming the
reason, the file, the record index / byte offset and the video id, exit status 2, no traceback."""

import os

import numpy as np
import pytest
import yaml

from tests.helpers import independent_sequence_example, random_video, write_videos
from yt8m import export, predictions, writers
from yt8m.models import registry
from yt8m_pipeline import cli

NUM_CLASSES = 6


def _frames(rng, n, rgb_bytes=1024):
    return rng.integers(0, 256, (n, rgb_bytes), np.uint8), rng.integers(0, 256, (n, 128), np.uint8)


def _good_records(rng, prefix, count=4):
    return [writers.frame_level_example(*random_video(rng, f"{prefix}{i}", 5, NUM_CLASSES)).SerializeToString()
            for i in range(count)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """name -> (path, expected reason, expects a record index / video id in the message)."""
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    cases = {}

    def write(name, records):
        path = str(d / f"{name}.tfrecord")
        writers.write_tfrecords(path, records)
        return path

    good = write("good", _good_records(rng, "g"))
    raw = open(good, "rb").read()
    truncated = str(d / "truncated.tfrecord")
    open(truncated, "wb").write(raw[: len(raw) - 700])
    cases["truncated"] = (truncated, "truncated", False)
    damaged = bytearray(raw)
    second = 12 + int.from_bytes(raw[:8], "little") + 4  # header of record 1
    damaged[second + 12 + 40] ^= 0xFF  # a data byte of record 1: its data CRC fails
    crc = str(d / "crc.tfrecord")
    open(crc, "wb").write(bytes(damaged))
    cases["crc"] = (crc, "crc_mismatch", True)
    text = str(d / "notes.tfrecord")
    open(text, "w").write("this is a text file, not TFRecords\n" * 20)
    cases["not_tfrecord"] = (text, "not_a_tfrecord", False)
    empty = str(d / "empty.tfrecord")
    open(empty, "wb").close()
    cases["empty"] = (empty, "empty_file", False)
    rgb, audio = _frames(rng, 4, rgb_bytes=1000)
    cases["wrong_rgb"] = (write("wrong_rgb", _good_records(rng, "a", 2) + [
        independent_sequence_example(b"short-rgb", [1], rgb, audio)]), "wrong_rgb_bytes", True)
    rgb, _ = _frames(rng, 4)
    _, audio = _frames(rng, 3)
    cases["mismatch"] = (write("mismatch", _good_records(rng, "b", 1) + [
        independent_sequence_example(b"mismatch", [1], rgb, audio)]), "frame_count_mismatch", True)
    rgb, audio = _frames(rng, 0)
    cases["zero"] = (write("zero", _good_records(rng, "c", 1) + [
        independent_sequence_example(b"no-frames", [1], rgb, audio)]), "zero_frames", True)
    no_id = writers.frame_level_example("x", [1], *_frames(rng, 3))
    del no_id.context.feature["id"]
    cases["no_id"] = (write("no_id", _good_records(rng, "e", 1) + [no_id.SerializeToString()]), "missing_id", True)
    model = registry.build_model("logistic", NUM_CLASSES, "small")
    export.export_serving_model([export.Member("logistic", model, "video", {"family": "logistic"})],
                                str(d / "model"))
    config = d / "train.yaml"
    config.write_text(yaml.safe_dump({"name": "m", "family": "moe", "training": {"epochs": 1, "batch_size": 2}}))
    return cases, good, str(d / "model"), str(config), d


def _one_line_error(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    return err[0]


def _check(line, path, reason, per_record):
    assert reason in line and path in line, line
    if per_record:
        assert "record " in line, line  # the record index (and its byte offset where the rescan finds it)
    assert "\\x" not in line and "Traceback" not in line


FRAME_CASES = ["truncated", "crc", "not_tfrecord", "empty", "wrong_rgb", "mismatch", "zero", "no_id"]


@pytest.mark.parametrize("case", FRAME_CASES)
def test_predict_fails_with_one_line(corpus, capsys, tmp_path, case):
    cases, _good, model, _config, _ = corpus
    path, reason, per_record = cases[case]
    line = _one_line_error(capsys, ["predict", "--model", model, "--data", path, "--out", str(tmp_path / "p.csv")])
    _check(line, path, reason, per_record)


@pytest.mark.parametrize("case", ["truncated", "crc", "not_tfrecord", "wrong_rgb", "zero", "no_id"])
def test_train_fails_with_one_line(corpus, capsys, tmp_path, case):
    cases, good, _model, config, _ = corpus
    path, reason, per_record = cases[case]
    line = _one_line_error(capsys, ["train", "--config", config, "--data", f"{good},{path}", "--output",
                                    str(tmp_path / "out"), "--num-classes", str(NUM_CLASSES)])
    _check(line, path, reason, per_record)


@pytest.mark.parametrize("case", ["truncated", "crc", "not_tfrecord", "no_id"])
def test_evaluate_fails_with_one_line(corpus, capsys, tmp_path, case):
    cases, good, _model, _config, _ = corpus
    path, reason, per_record = cases[case]
    csv = str(tmp_path / "sub.csv")
    predictions.write_kaggle_csv(csv, ["g0"], np.ones((1, NUM_CLASSES), np.float32))
    line = _one_line_error(capsys, ["evaluate", "--predictions", csv, "--data", f"{good},{path}",
                                    "--num-classes", str(NUM_CLASSES)])
    _check(line, path, reason, per_record)


def test_evaluate_reports_duplicate_video_ids_in_the_data(corpus, capsys, tmp_path):
    _cases, good, _model, _config, d = corpus
    copy = str(d / "copy.tfrecord")
    open(copy, "wb").write(open(good, "rb").read())
    csv = str(tmp_path / "sub.csv")
    predictions.write_kaggle_csv(csv, ["g0"], np.ones((1, NUM_CLASSES), np.float32))
    line = _one_line_error(capsys, ["evaluate", "--predictions", csv, "--data", f"{good},{copy}",
                                    "--num-classes", str(NUM_CLASSES)])
    assert "duplicate video id 'g0'" in line and copy in line and good in line


def test_predict_skip_scores_the_good_records_and_lists_the_bad(corpus, capsys, tmp_path):
    cases, good, model, _config, _ = corpus
    bad = [cases[c][0] for c in FRAME_CASES]
    out = str(tmp_path / "p.csv")
    assert cli.main(["predict", "--model", model, "--data", ",".join([good] + bad), "--out", out,
                     "--on-bad-record", "skip"]) == 0
    printed = capsys.readouterr().out
    ids, _labels, _scores = predictions.read_kaggle_csv(out)
    # good: 4; crc: 3 of 4 readable (1 damaged); truncated: the records before the damage; others: their good ones
    assert {"g0", "g1", "g2", "g3", "a0", "a1", "b0", "c0", "e0"} <= set(ids)
    assert "short-rgb" not in ids and "mismatch" not in ids and "no-frames" not in ids
    listing = open(out + ".skipped.csv").read().splitlines()
    reasons = {row.split(",")[4] for row in listing[1:]}
    assert reasons == {"truncated", "crc_mismatch", "not_a_tfrecord", "empty_file", "wrong_rgb_bytes", "duplicate_video_id",
                       "frame_count_mismatch", "zero_frames", "missing_id"}
    assert f"skipped {len(listing) - 1} bad records or unreadable ranges" in printed
    assert os.path.exists(out + ".skipped.csv")


def test_a_gs_pattern_without_credentials_is_one_line(corpus, capsys, tmp_path, monkeypatch):
    _cases, _good, model, _config, _ = corpus
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    line = _one_line_error(capsys, ["predict", "--model", model, "--data", "gs://yt8m-bucket/test/*.tfrecord",
                                    "--out", str(tmp_path / "p.csv")])
    assert "gs://yt8m-bucket/test/*.tfrecord" in line and "no Google Cloud credentials" in line


def test_predict_refuses_duplicate_video_ids_unless_skipping(corpus, capsys, tmp_path):
    _cases, good, model, _config, d = corpus
    copy = str(d / "copy-for-predict.tfrecord")
    open(copy, "wb").write(open(good, "rb").read())
    line = _one_line_error(capsys, ["predict", "--model", model, "--data", f"{good},{copy}", "--out",
                                    str(tmp_path / "p.csv")])
    assert "duplicate_video_id" in line and "'g0'" in line


def test_preprocess_with_a_gs_input_and_no_credentials_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    line = _one_line_error(capsys, ["preprocess", "--input", "gs://yt8m-bucket/train/*.tfrecord", "--output",
                                    str(tmp_path / "out")])
    assert "--input gs://yt8m-bucket/train/*.tfrecord: no Google Cloud credentials" in line
