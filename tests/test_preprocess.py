"""Tests for the Beam preprocessing job (beam_jobs/preprocess.py), run locally on the FnApiRunner.

Two Beam runs in total (module-scoped): the original 3 (+1 empty) files, and the same
records reshuffled into 5 files (fold assignment must not depend on the sharding).
"""

import glob
import json
import os
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import (DebugOptions, GoogleCloudOptions, SetupOptions, StandardOptions,
                                                  WorkerOptions)

from yt8m import folds, schema, storage, validation, writers
from yt8m_pipeline.beam_jobs import preprocess

NUM_CLASSES = 100
FOLDS = 3
HOLDOUT = 0.2
GOOD_PER_FILE = 20
SPLITS = folds.split_names(FOLDS, HOLDOUT)


def _frames(rng, t):
    return (rng.integers(0, 256, (t, schema.RGB_SIZE), dtype=np.uint8),
            rng.integers(0, 256, (t, schema.AUDIO_SIZE), dtype=np.uint8))


def _bad_records(rng):
    """(reason, serialized) for every kind of bad record."""
    bad = []
    garbage = b"\xff" * 11 + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()  # varint overflow: not a proto
    bad.append((validation.UNPARSABLE, garbage))
    rgb, audio = _frames(rng, 4)
    ex = writers.frame_level_example("bad-rgb", [1], rgb, audio)
    ex.feature_lists.feature_list["rgb"].feature[2].bytes_list.value[0] = b"\x01" * 1000
    bad.append((validation.WRONG_RGB_BYTES, ex.SerializeToString()))
    ex = writers.frame_level_example("bad-audio", [1], rgb, audio)
    ex.feature_lists.feature_list["audio"].feature[0].bytes_list.value[0] = b"\x01" * 129
    bad.append((validation.WRONG_AUDIO_BYTES, ex.SerializeToString()))
    rgb5, _ = _frames(rng, 5)
    _, audio4 = _frames(rng, 4)
    bad.append((validation.FRAME_COUNT_MISMATCH, writers.frame_level_example("bad-mismatch", [2], rgb5, audio4)
                .SerializeToString()))
    rgb0, audio0 = _frames(rng, 0)
    bad.append((validation.ZERO_FRAMES, writers.frame_level_example("bad-zero", [3], rgb0, audio0).SerializeToString()))
    bad.append((validation.LABEL_OUT_OF_RANGE, writers.frame_level_example("bad-label", [5, NUM_CLASSES], rgb, audio)
                .SerializeToString()))
    ex = writers.frame_level_example("x", [4], rgb, audio)
    del ex.context.feature["id"]
    bad.append((validation.MISSING_ID, ex.SerializeToString()))
    # self-check: the library agrees with the intended reasons
    for reason, raw in bad:
        with pytest.raises(validation.InvalidRecord) as info:
            validation.parse_frame_level(raw, NUM_CLASSES)
        assert info.value.reason == reason
    return bad


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(8)
    root = tmp_path_factory.mktemp("yt8m_pre")
    in_dir = root / "in"
    in_dir.mkdir()
    good = {}  # video_id -> (raw, labels, rgb, audio)
    bad = _bad_records(rng)
    bad_by_file = {0: bad[:2], 1: bad[2:4], 2: bad[4:]}
    files, expected = [], {}
    for f in range(3):
        records = []
        for i in range(GOOD_PER_FILE):
            vid = f"v{f}x{i:02d}"
            t = int(rng.integers(1, 12))
            rgb, audio = _frames(rng, t)
            labels = sorted(rng.choice(NUM_CLASSES, int(rng.integers(1, 4)), replace=False).tolist())
            raw = writers.frame_level_example(vid, labels, rgb, audio).SerializeToString()
            good[vid] = (raw, labels, rgb, audio)
            records.append(raw)
        for j, (_, raw) in enumerate(bad_by_file[f]):
            records.insert(3 + 5 * j, raw)
        path = str(in_dir / f"train{f:04d}.tfrecord")
        writers.write_tfrecords(path, records)
        files.append(path)
        expected[path] = {"read": len(records), "written": GOOD_PER_FILE,
                          "quarantined": Counter(reason for reason, _ in bad_by_file[f])}
    empty = str(in_dir / "train0003.tfrecord")
    writers.write_tfrecords(empty, [])
    expected[empty] = {"read": 0, "written": 0, "quarantined": Counter()}
    return {"root": root, "in_dir": in_dir, "good": good, "bad": bad, "expected": expected,
            "pattern": str(in_dir / "*.tfrecord")}


@pytest.fixture(scope="module")
def run1(data):
    out = str(data["root"] / "out1")
    counts = preprocess.run_preprocess(data["pattern"], out, NUM_CLASSES, FOLDS, HOLDOUT, runner="local")
    return {"out": out, "counts": counts}


@pytest.fixture(scope="module")
def run2(data):
    """The same records, shuffled and resharded into 5 files; num_shards=0 (Beam decides), no on-disk recount."""
    rng = np.random.default_rng(1)
    records = [g[0] for g in data["good"].values()] + [raw for _, raw in data["bad"]]
    order = rng.permutation(len(records))
    in_dir = data["root"] / "in2"
    in_dir.mkdir()
    for k in range(5):
        writers.write_tfrecords(str(in_dir / f"shard{k}.tfrecord"), [records[i] for i in order[k::5]])
    out = str(data["root"] / "out2")
    counts = preprocess.run_preprocess(str(in_dir / "*.tfrecord"), out, NUM_CLASSES, FOLDS, HOLDOUT, num_shards=0,
                                       verify_outputs=False)
    return {"out": out, "counts": counts}


def _records(pattern):
    files = sorted(glob.glob(pattern))
    return [r.numpy() for r in tf.data.TFRecordDataset(files)] if files else []


def _frame_ids_by_split(out):
    result = {}
    for split in SPLITS:
        for raw in _records(os.path.join(out, "frame", split, "*.tfrecord")):
            vid = tf.train.SequenceExample.FromString(raw).context.feature["id"].bytes_list.value[0].decode()
            assert vid not in result
            result[vid] = split
    return result


# ------------------------------------------------------------------------------------------ counts


def test_counts_reconcile_per_file_and_total(data, run1):
    counts = run1["counts"]
    assert counts["reconciled"] and counts["problems"] == []
    assert set(counts["per_file"]) == set(data["expected"])
    for path, exp in data["expected"].items():
        got = counts["per_file"][path]
        assert got["read"] == exp["read"], path
        assert got["written_total"] == exp["written"], path
        assert {r: n for r, n in got["quarantined"].items() if n} == dict(exp["quarantined"]), path
        assert got["read"] == got["written_total"] + got["quarantined_total"]
        assert sum(got["written"].values()) == got["written_total"]
    total = counts["total"]
    assert total["read"] == 3 * GOOD_PER_FILE + len(data["bad"])
    assert total["written_total"] == 3 * GOOD_PER_FILE
    assert total["quarantined"] == {r: 1 for r in validation.REASONS}
    assert total["read"] == total["written_total"] + total["quarantined_total"]
    expected_splits = Counter(folds.assign_split(v, FOLDS, HOLDOUT) for v in data["good"])
    assert total["written"] == {s: expected_splits.get(s, 0) for s in SPLITS}
    for kind in ("frame", "video"):
        assert counts["output_records"][kind] == total["written"]
    assert counts["output_records"]["quarantine"] == len(data["bad"])


def test_counts_and_dataset_json_files(data, run1):
    on_disk = storage.read_json(os.path.join(run1["out"], "counts.json"))
    assert on_disk == json.loads(json.dumps(run1["counts"]))
    assert not os.path.exists(os.path.join(run1["out"], "_counts"))
    ds = storage.read_json(os.path.join(run1["out"], "dataset.json"))
    assert (ds["num_classes"], ds["folds"], ds["holdout_fraction"]) == (NUM_CLASSES, FOLDS, HOLDOUT)
    assert ds["input_pattern"] == data["pattern"]
    assert sorted(ds["input_files"]) == sorted(data["expected"])
    assert set(ds["splits"]) == set(SPLITS)
    for split, info in ds["splits"].items():
        assert len(info["frame_files"]) == 2 and len(info["video_files"]) == 2  # default local num_shards
        assert all(os.path.exists(p) for p in info["frame_files"] + info["video_files"])
        assert info["num_videos"] == run1["counts"]["total"]["written"][split]
    assert ds["quarantine"]["num_records"] == len(data["bad"])
    assert ds["counts"]["read"] == run1["counts"]["total"]["read"]


# ------------------------------------------------------------------------------------------ outputs


def test_bad_records_quarantined_with_reason_and_raw_bytes(data, run1):
    quarantined = [tf.train.Example.FromString(r) for r in _records(os.path.join(run1["out"], "quarantine", "*"))]
    assert len(quarantined) == len(data["bad"])

    def value(ex, name):
        return ex.features.feature[name].bytes_list.value[0]

    by_raw = {value(ex, "raw"): ex for ex in quarantined}
    for reason, raw in data["bad"]:
        assert raw in by_raw, reason
        ex = by_raw[raw]
        assert value(ex, "reason").decode() == reason
        assert value(ex, "detail")
        assert value(ex, "source").decode() in data["expected"]
    sources = Counter(value(ex, "source").decode() for ex in quarantined)
    assert sources == Counter({p: sum(e["quarantined"].values()) for p, e in data["expected"].items()
                               if e["quarantined"]})
    assert value(by_raw[data["bad"][1][1]], "video_id") == b"bad-rgb"


def test_good_records_byte_identical_in_their_split(data, run1):
    for split in SPLITS:
        raws = _records(os.path.join(run1["out"], "frame", split, "*.tfrecord"))
        for raw in raws:
            vid = tf.train.SequenceExample.FromString(raw).context.feature["id"].bytes_list.value[0].decode()
            assert raw == data["good"][vid][0]
            assert folds.assign_split(vid, FOLDS, HOLDOUT) == split
    all_raw = Counter(r for s in SPLITS for r in _records(os.path.join(run1["out"], "frame", s, "*.tfrecord")))
    assert all_raw == Counter(g[0] for g in data["good"].values())


def test_video_level_means_match_numpy(data, run1):
    seen = set()
    for split in SPLITS:
        for raw in _records(os.path.join(run1["out"], "video", split, "*.tfrecord")):
            f = tf.train.Example.FromString(raw).features.feature
            vid = f["id"].bytes_list.value[0].decode()
            _, labels, rgb, audio = data["good"][vid]
            assert list(f["labels"].int64_list.value) == labels
            mean_rgb = np.array(f["mean_rgb"].float_list.value, np.float32)
            mean_audio = np.array(f["mean_audio"].float_list.value, np.float32)
            assert mean_rgb.shape == (1024,) and mean_audio.shape == (128,)
            deq = lambda q: q.astype(np.float64) * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)  # noqa: E731
            np.testing.assert_allclose(mean_rgb, deq(rgb).mean(axis=0), atol=1e-6, rtol=0)
            np.testing.assert_allclose(mean_audio, deq(audio).mean(axis=0), atol=1e-6, rtol=0)
            assert folds.assign_split(vid, FOLDS, HOLDOUT) == split
            seen.add(vid)
    assert seen == set(data["good"])


def test_split_assignment_independent_of_sharding(data, run1, run2):
    assert run2["counts"]["reconciled"] and not run2["counts"]["outputs_verified"]
    assert run2["counts"]["output_records"] is None and run1["counts"]["outputs_verified"]
    assert run2["counts"]["total"]["written"] == run1["counts"]["total"]["written"]
    assert run2["counts"]["total"]["quarantined"] == run1["counts"]["total"]["quarantined"]
    first, second = _frame_ids_by_split(run1["out"]), _frame_ids_by_split(run2["out"])
    assert first == second
    assert len(first) == len(data["good"])


# ------------------------------------------------------------------------------------------ pieces


def test_reconcile_reports_lost_records():
    files = ["/a.tfrecord", "/b.tfrecord"]
    lines = [json.dumps(x) for x in [
        ["read", "/a.tfrecord", "", 3], ["written", "/a.tfrecord", "fold-0", 2],
        ["quarantined", "/a.tfrecord", "unparsable", 1],
        ["read", "/b.tfrecord", "", 2], ["written", "/b.tfrecord", "fold-0", 1],  # one record lost
        ["output_records", "frame", "fold-0", 3], ["output_records", "video", "fold-0", 2],  # one lost on disk
        ["output_records", "quarantine", "", 1]]]
    counts = preprocess.assemble_counts(lines, files, ["fold-0"])
    problems = preprocess.reconcile(counts)
    assert any(p.startswith("/b.tfrecord: read 2") for p in problems)
    assert any(p.startswith("total: read 5") for p in problems)
    assert any(p.startswith("video/fold-0") for p in problems)
    assert not any("/a.tfrecord" in p for p in problems)
    assert counts["total"]["read"] == 5 and counts["total"]["quarantined"]["unparsable"] == 1


def test_parse_and_validate_dofn_tags_garbage():
    fn = preprocess.ParseAndValidateFn(NUM_CLASSES)
    fn.setup()
    (out,) = list(fn.process(("src.tfrecord", b"\xff" * 20)))
    assert out.tag == preprocess.QUARANTINE_TAG
    source, reason, payload = out.value
    assert (source, reason) == ("src.tfrecord", validation.UNPARSABLE)
    assert tf.train.Example.FromString(payload).features.feature["raw"].bytes_list.value[0] == b"\xff" * 20


def test_missing_input_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        preprocess.run_preprocess(str(tmp_path / "nothing-*.tfrecord"), str(tmp_path / "out"), NUM_CLASSES, 3, 0.1)
    assert "\n" not in str(info.value) and "nothing-*" in str(info.value)
    assert not os.path.exists(tmp_path / "out")


def test_dataflow_options_offline():
    opts = preprocess.build_pipeline_options(
        "dataflow", "gs://bucket/run1", project="my-proj", region="europe-west4", machine_type="n2-standard-8",
        max_num_workers=20, job_name="yt8m-pre-test", extra_args=["--experiments=use_runner_v2"])
    assert opts.view_as(StandardOptions).runner == "DataflowRunner"
    gco = opts.view_as(GoogleCloudOptions)
    assert (gco.project, gco.region, gco.job_name) == ("my-proj", "europe-west4", "yt8m-pre-test")
    assert gco.temp_location == "gs://bucket/run1/_beam/tmp"
    assert gco.staging_location == "gs://bucket/run1/_beam/staging"
    setup_file = opts.view_as(SetupOptions).setup_file
    assert os.path.basename(setup_file) == "setup.py" and os.path.isfile(setup_file)
    assert "yt8m-pipeline" in open(setup_file).read()
    workers = opts.view_as(WorkerOptions)
    assert (workers.machine_type, workers.max_num_workers) == ("n2-standard-8", 20)
    assert "use_runner_v2" in opts.view_as(DebugOptions).experiments

    explicit = preprocess.build_pipeline_options(
        "dataflow", "gs://bucket/run1", project="p", region="us-central1", temp_location="gs://tmp-bucket/t",
        sdk_container_image="europe-docker.pkg.dev/p/r/yt8m@sha256:abc")
    assert explicit.view_as(GoogleCloudOptions).temp_location == "gs://tmp-bucket/t"
    assert explicit.view_as(SetupOptions).setup_file is None  # the image already holds the package
    from_args = preprocess.build_pipeline_options(
        "dataflow", "gs://b/o", extra_args=["--project=p2", "--region=us-east1"])
    assert from_args.view_as(GoogleCloudOptions).project == "p2"


@pytest.mark.parametrize("kwargs, message", [
    ({"region": "us-central1"}, "project"),
    ({"project": "p"}, "region"),
    ({"project": "p", "region": "r", "output_dir": "/local/out"}, "gs://"),
    ({"project": "p", "region": "r", "setup_file": "/no/such/setup.py"}, "setup_file"),
])
def test_dataflow_options_errors(kwargs, message):
    output_dir = kwargs.pop("output_dir", "gs://bucket/out")
    with pytest.raises(ValueError, match=message):
        preprocess.build_pipeline_options("dataflow", output_dir, **kwargs)


def test_local_options_single_worker():
    from apache_beam.options.pipeline_options import DirectOptions

    opts = preprocess.build_pipeline_options("local", "/tmp/x")
    assert opts.view_as(DirectOptions).direct_num_workers == 1
    assert opts.view_as(DirectOptions).direct_running_mode == "in_memory"
    with pytest.raises(ValueError, match="ONE"):
        preprocess.build_pipeline_options("local", "/tmp/x", extra_args=["--direct_num_workers=2"])
    with pytest.raises(ValueError):
        preprocess.build_pipeline_options("prism", "/tmp/x")


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        preprocess.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--input", "--output", "--num-classes", "--folds", "--holdout", "--runner", "--project",
                 "--region", "--temp-location", "--setup-file", "--num-shards"):
        assert flag in text


def test_dataflow_graph_builds_offline():
    """The whole graph translates for the DataflowRunner (dry_run: no GCS calls, nothing submitted)."""
    import apache_beam as beam

    opts = preprocess.build_pipeline_options("dataflow", "gs://my-bucket/out", project="my-project-123",
                                             region="us-central1", extra_args=["--dry_run=True"])
    pipeline = beam.Pipeline(options=opts)
    shards = preprocess._resolve_shards(None, SPLITS, "dataflow")
    assert set(shards.values()) == {0}
    preprocess.build_pipeline(pipeline, ["gs://my-bucket/in/train0000.tfrecord"], "gs://my-bucket/out", NUM_CLASSES,
                              FOLDS, HOLDOUT, shards)
    names = {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}
    for stage in ("ReadWithSource", "ParseAndValidate", "AssignSplit", "CountRecords", "WriteCounts"):
        assert stage in names
    assert type(pipeline.runner).__name__ == "DataflowRunner"
