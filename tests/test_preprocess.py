"""Tests for the Beam preprocessing job (beam_jobs/preprocess.py), run locally on the FnApiRunner.

Three Beam runs in total (module-scoped): the bad-input corpus (one bad record per reason,
a duplicate id, a >300-frame video, a truncated, a CRC-damaged, an empty and a non-TFRecord
file), and its readable records in ONE file and shuffled into FIVE files (fold assignment
must not depend on the sharding).
"""

import glob
import json
import os
import types
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import (DebugOptions, GoogleCloudOptions, SetupOptions, StandardOptions,
                                                  WorkerOptions)

from yt8m import folds, schema, storage, validation, writers
from yt8m.dataset import Dataset
from yt8m_pipeline.beam_jobs import preprocess

NUM_CLASSES = 100
FOLDS = 3
HOLDOUT = 0.2
GOOD_PER_FILE = 20
SPLITS = folds.split_names(FOLDS, HOLDOUT)
INVALID_COPY_OF = "v2x03"  # the wrong-audio-bytes record (train0001) carries this good video's id (train0002)


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
    # an INVALID copy of a good video's id (v2x03, in a later file): the valid copy must still be kept
    ex = writers.frame_level_example(INVALID_COPY_OF, [1], rgb, audio)
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


LONG_FRAMES = 310  # > schema.MAX_FRAMES: kept with every frame; features from the first 300


def _tfrecord_bytes(records) -> bytes:
    """TFRecord framing of ``records`` (written by TensorFlow, read back as bytes)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.tfrecord")
        writers.write_tfrecords(path, records)
        with open(path, "rb") as f:
            return f.read()


def _offsets(records) -> list[int]:
    out, pos = [], 0
    for r in records:
        out.append(pos)
        pos += 16 + len(r)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The bad-input corpus: one bad record per reason, a duplicate id, damaged / empty / non-TFRecord files."""
    rng = np.random.default_rng(8)
    root = tmp_path_factory.mktemp("yt8m_pre")
    in_dir = root / "in"
    in_dir.mkdir()
    good = {}  # video_id -> (raw, labels, rgb, audio)
    bad = _bad_records(rng)  # (reason, raw): every record-level reason
    bad_by_file = {0: bad[:2], 1: bad[2:4], 2: bad[4:]}
    files, expected = [], {}

    def good_record(vid, t=None):
        t = int(rng.integers(1, 12)) if t is None else t
        rgb, audio = _frames(rng, t)
        labels = sorted(rng.choice(NUM_CLASSES, int(rng.integers(1, 4)), replace=False).tolist())
        raw = writers.frame_level_example(vid, labels, rgb, audio).SerializeToString()
        good[vid] = (raw, labels, rgb, audio)
        return raw

    def expect(path, records, written, quarantined, unreadable=()):
        expected[path] = {"read": records, "written": written, "quarantined": Counter(quarantined),
                          "unreadable": list(unreadable)}

    for f in range(3):
        records = [good_record(f"v{f}x{i:02d}", LONG_FRAMES if (f, i) == (1, 0) else None)
                   for i in range(GOOD_PER_FILE)]
        for j, (_, raw) in enumerate(bad_by_file[f]):
            records.insert(3 + 5 * j, raw)
        quarantined = [reason for reason, _ in bad_by_file[f]]
        if f == 2:  # a second copy of v0x05 (other labels): the copy in train0000 (smaller file name) is kept
            _, labels, rgb, audio = good["v0x05"]
            records.append(writers.frame_level_example("v0x05", [labels[0] + 1 if labels[0] + 1 < NUM_CLASSES
                                                                  else 0], rgb, audio).SerializeToString())
            quarantined.append(validation.DUPLICATE_VIDEO_ID)
        path = str(in_dir / f"train{f:04d}.tfrecord")
        writers.write_tfrecords(path, records)
        files.append(path)
        expect(path, len(records), GOOD_PER_FILE, quarantined)
    # empty file, not a TFRecord
    empty = str(in_dir / "train0003.tfrecord")
    writers.write_tfrecords(empty, [])
    expect(empty, 0, 0, [], [(validation.EMPTY_FILE, 0, 0)])
    text = str(in_dir / "train0004.tfrecord")
    with open(text, "w") as fh:
        fh.write("video_id,labels\nabc,1 2 3\n" * 20)
    expect(text, 0, 0, [], [(validation.NOT_A_TFRECORD, 0, os.path.getsize(text))])
    # truncated: 4 whole records, the 5th cut in its data
    recs = [good_record(f"t{i}") for i in range(5)]
    blob = _tfrecord_bytes(recs)
    cut = _offsets(recs)[4] + 16 + len(recs[4]) // 2
    truncated = str(in_dir / "train0005.tfrecord")
    with open(truncated, "wb") as fh:
        fh.write(blob[:cut])
    del good["t4"]
    expect(truncated, 4, 4, [], [(validation.TRUNCATED, _offsets(recs)[4], cut - _offsets(recs)[4])])
    # data CRC damaged in record 1 (kept in quarantine, the scan goes on), then a length CRC damaged at record 4
    recs = [good_record(f"c{i}") for i in range(6)]
    blob = bytearray(_tfrecord_bytes(recs))
    offs = _offsets(recs)
    blob[offs[1] + 12 + 40] ^= 0xFF  # inside record 1's data
    blob[offs[4] + 9] ^= 0xFF  # record 4's length checksum
    damaged = str(in_dir / "train0006.tfrecord")
    with open(damaged, "wb") as fh:
        fh.write(bytes(blob))
    crc_raw = bytes(blob[offs[1] + 12: offs[1] + 12 + len(recs[1])])
    for vid in ("c1", "c4", "c5"):
        del good[vid]
    expect(damaged, 4, 3, [validation.CRC_MISMATCH],
           [(validation.CORRUPT_FRAMING, offs[4], len(blob) - offs[4])])
    return {"root": root, "in_dir": in_dir, "good": good, "bad": bad, "expected": expected,
            "crc_raw": crc_raw, "pattern": str(in_dir / "*.tfrecord")}


@pytest.fixture(scope="module")
def run1(data):
    out = str(data["root"] / "out1")
    counts = preprocess.run_preprocess(data["pattern"], out, NUM_CLASSES, FOLDS, HOLDOUT, runner="local",
                                       verify_outputs=True)
    return {"out": out, "counts": counts}


def _readable_records(data):
    """Every record of the corpus that can be read (good, bad, duplicate, CRC-damaged), in file order."""
    import io

    records = []
    for path in sorted(data["expected"]):
        with open(path, "rb") as fh:
            blob = fh.read()
        records += [item.data for item in validation.scan_tfrecord(io.BytesIO(blob), len(blob))
                    if isinstance(item, validation.ScannedRecord) and item.crc_ok]
    return records


def _resharded_run(data, name, num_files, **kwargs):
    rng = np.random.default_rng(num_files)
    records = _readable_records(data)
    order = rng.permutation(len(records))
    in_dir = data["root"] / f"in-{name}"
    in_dir.mkdir()
    for k in range(num_files):
        writers.write_tfrecords(str(in_dir / f"shard{k}.tfrecord"), [records[i] for i in order[k::num_files]])
    out = str(data["root"] / f"out-{name}")
    counts = preprocess.run_preprocess(str(in_dir / "*.tfrecord"), out, NUM_CLASSES, FOLDS, HOLDOUT, num_shards=0,
                                       write_report=False, **kwargs)
    return {"out": out, "counts": counts}


@pytest.fixture(scope="module")
def run_one_file(data):
    """The readable records in ONE file; num_shards=0 (Beam decides), no on-disk recount; z-scored means too."""
    return _resharded_run(data, "one", 1, standardized_features=True)


@pytest.fixture(scope="module")
def run_five_files(data):
    """The same records shuffled into FIVE files."""
    return _resharded_run(data, "five", 5)


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
        assert [(u["reason"], u["offset"], u["bytes"]) for u in got["unreadable"]] == exp["unreadable"], path
        assert got["read"] == got["written_total"] + got["quarantined_total"]
        assert got["size_bytes"] == os.path.getsize(path) == got["framed_bytes"] + got["unreadable_bytes"]
        assert sum(got["written"].values()) == got["written_total"]
    total = counts["total"]
    assert INVALID_COPY_OF in data["good"]  # its invalid copy was quarantined, the valid one counted as written
    assert total["read"] == sum(e["read"] for e in data["expected"].values())
    assert total["written_total"] == len(data["good"])
    assert total["quarantined"] == {r: 1 for r in validation.REASONS}
    assert total["unreadable_files"] == {r: 1 for r in validation.UNREADABLE_REASONS}
    assert total["read"] == total["written_total"] + total["quarantined_total"]
    expected_splits = Counter(folds.assign_split(v, FOLDS, HOLDOUT) for v in data["good"])
    assert total["written"] == {s: expected_splits.get(s, 0) for s in SPLITS}
    for kind in ("frame", "video"):
        assert counts["write_records"][kind] == total["written"]
        assert counts["output_records"][kind] == total["written"]
    n_quarantine = len(validation.REASONS) + len(validation.UNREADABLE_REASONS)
    assert counts["write_records"]["quarantine"] == counts["output_records"]["quarantine"] == n_quarantine


def test_reason_counters_match_counts(run1):
    counters, total = run1["counts"]["counters"], run1["counts"]["total"]
    for reason in validation.REASONS:
        assert counters.get(f"quarantined_{reason}") == 1, reason
    for reason in validation.UNREADABLE_REASONS:
        assert counters.get(f"unreadable_{reason}") == 1, reason
    assert counters["read"] == total["read"] and counters["unreadable_bytes"] == total["unreadable_bytes"]


def test_counts_and_dataset_json_files(data, run1):
    on_disk = storage.read_json(os.path.join(run1["out"], "counts.json"))
    assert on_disk == json.loads(json.dumps(run1["counts"]))
    for temp in ("_counts", "_tft_tmp"):
        assert not os.path.exists(os.path.join(run1["out"], temp))
    info = storage.read_json(os.path.join(run1["out"], "dataset.json"))
    assert (info["num_classes"], info["folds"], info["holdout_fraction"]) == (NUM_CLASSES, FOLDS, HOLDOUT)
    assert info["input_pattern"] == data["pattern"]
    assert sorted(info["input_files"]) == sorted(data["expected"])
    assert info["source_fingerprint"]["files"] == len(data["expected"])
    ds = Dataset.open(run1["out"])
    assert ds.split_names == SPLITS and ds.fold_names == SPLITS[:-1] and ds.holdout == "holdout"
    for split in SPLITS:
        frame_files, video_files = ds.files("frame", [split]), ds.files("video", [split])
        assert len(frame_files) == 2 and len(video_files) == 2  # default local num_shards
        assert sorted(frame_files) == sorted(glob.glob(os.path.join(run1["out"], "frame", split, "*")))
        assert sorted(video_files) == sorted(glob.glob(os.path.join(run1["out"], "video", split, "*")))
        assert ds.num_videos([split]) == run1["counts"]["total"]["written"][split]
    assert ds.quarantine_files() == glob.glob(os.path.join(run1["out"], "quarantine", "*"))
    assert info["quarantine"]["num_records"] == len(validation.REASONS)
    assert ds.counts["read"] == run1["counts"]["total"]["read"]
    assert os.path.isdir(ds.transform_path) and ds.transform_path == os.path.join(run1["out"], "transform_fn")


def test_report_html_has_every_chart(run1):
    page = open(os.path.join(run1["out"], "report.html")).read()
    for heading in ("Label frequency", "Frames per video", "Fold balance", "Quarantine", "Per input file"):
        assert heading in page
    assert page.count("<svg") >= 4 and "reconcile" in page
    assert validation.DUPLICATE_VIDEO_ID in page and validation.CORRUPT_FRAMING in page


# ------------------------------------------------------------------------------------------ outputs


def _value(ex, name):
    return ex.features.feature[name].bytes_list.value[0]


def test_bad_records_and_unreadable_ranges_quarantined_with_reason(data, run1):
    quarantined = [tf.train.Example.FromString(r) for r in _records(os.path.join(run1["out"], "quarantine", "*"))]
    assert len(quarantined) == len(validation.REASONS) + len(validation.UNREADABLE_REASONS)
    by_reason = {_value(ex, "reason").decode(): ex for ex in quarantined}
    assert set(by_reason) == set(validation.REASONS) | set(validation.UNREADABLE_REASONS)
    for reason, raw in data["bad"]:
        ex = by_reason[reason]
        assert _value(ex, "raw") == raw, reason
        assert _value(ex, "detail")
        assert _value(ex, "source").decode() in data["expected"]
        assert ex.features.feature["offset"].int64_list.value[0] >= 0
    assert _value(by_reason[validation.WRONG_RGB_BYTES], "video_id") == b"bad-rgb"
    assert _value(by_reason[validation.CRC_MISMATCH], "raw") == data["crc_raw"]
    dup = by_reason[validation.DUPLICATE_VIDEO_ID]
    assert _value(dup, "video_id") == b"v0x05" and _value(dup, "source").decode().endswith("train0002.tfrecord")
    assert b"train0000.tfrecord" in _value(dup, "detail")
    for path, exp in data["expected"].items():
        for reason, offset, nbytes in exp["unreadable"]:
            ex = by_reason[reason]
            assert _value(ex, "source").decode() == path and _value(ex, "raw") == b""
            assert ex.features.feature["offset"].int64_list.value[0] == offset
            assert ex.features.feature["unreadable_bytes"].int64_list.value[0] == nbytes
            detail = _value(ex, "detail").decode()
            assert len(detail) < 200  # a sentence, never the bytes
            assert reason == validation.EMPTY_FILE or f"offset {offset}" in detail


def test_good_records_byte_identical_in_their_split_exactly_once(data, run1):
    for split in SPLITS:
        for raw in _records(os.path.join(run1["out"], "frame", split, "*.tfrecord")):
            vid = tf.train.SequenceExample.FromString(raw).context.feature["id"].bytes_list.value[0].decode()
            assert raw == data["good"][vid][0]
            assert folds.assign_split(vid, FOLDS, HOLDOUT) == split
    all_raw = Counter(r for s in SPLITS for r in _records(os.path.join(run1["out"], "frame", s, "*.tfrecord")))
    assert all_raw == Counter(g[0] for g in data["good"].values())


def _deq(q):
    return q.astype(np.float64) * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)


def test_video_level_means_match_numpy_first_300_frames(data, run1):
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
            np.testing.assert_allclose(mean_rgb, _deq(rgb[:300]).mean(axis=0), atol=1e-6, rtol=0)
            np.testing.assert_allclose(mean_audio, _deq(audio[:300]).mean(axis=0), atol=1e-6, rtol=0)
            assert folds.assign_split(vid, FOLDS, HOLDOUT) == split
            assert vid not in seen
            seen.add(vid)
    assert seen == set(data["good"])


def test_long_video_kept_with_all_frames_and_means_of_first_300(data, run1):
    raw, _, rgb, _ = data["good"]["v1x00"]
    assert rgb.shape[0] == LONG_FRAMES > schema.MAX_FRAMES
    split = folds.assign_split("v1x00", FOLDS, HOLDOUT)
    assert raw in _records(os.path.join(run1["out"], "frame", split, "*.tfrecord"))  # all 310 frames stored
    for r in _records(os.path.join(run1["out"], "video", split, "*.tfrecord")):
        f = tf.train.Example.FromString(r).features.feature
        if f["id"].bytes_list.value[0] == b"v1x00":
            mean_rgb = np.array(f["mean_rgb"].float_list.value)
            np.testing.assert_allclose(mean_rgb, _deq(rgb[:300]).mean(0), atol=1e-6, rtol=0)
            assert np.abs(mean_rgb - _deq(rgb).mean(0)).max() > 1e-3  # all 310 frames would differ
            video = validation.parse_frame_level(raw, NUM_CLASSES)
            np.testing.assert_allclose(validation.video_level_means(video)[0], mean_rgb, atol=1e-6, rtol=0)
            return
    raise AssertionError("v1x00 not in the video-level shards")


def test_tft_statistics_equal_numpy(data, run1):
    stats = Dataset.open(run1["out"]).statistics()
    rgb = np.concatenate([_deq(g[2][:300]) for g in data["good"].values()])
    audio = np.concatenate([_deq(g[3][:300]) for g in data["good"].values()])
    np.testing.assert_allclose(stats["rgb_frame_mean"], rgb.mean(0), atol=1e-5, rtol=0)
    np.testing.assert_allclose(stats["rgb_frame_var"], rgb.var(0), atol=1e-5, rtol=0)
    np.testing.assert_allclose(stats["audio_frame_mean"], audio.mean(0), atol=1e-5, rtol=0)
    np.testing.assert_allclose(stats["audio_frame_var"], audio.var(0), atol=1e-5, rtol=0)
    label_counts = np.zeros(NUM_CLASSES, np.int64)
    for g in data["good"].values():
        label_counts[sorted(set(g[1]))] += 1
    np.testing.assert_array_equal(stats["label_counts"], label_counts)
    frames = np.array([g[2].shape[0] for g in data["good"].values()])
    assert (int(stats["num_videos"]), int(stats["num_frames_total"])) == (len(frames), frames.sum())
    assert (int(stats["num_frames_min"]), int(stats["num_frames_max"])) == (frames.min(), frames.max())
    q = np.asarray(stats["num_frames_quantiles"])
    assert len(q) == 9 and np.all(np.diff(q) >= 0)
    for i, boundary in enumerate(q, start=1):  # each decile boundary sits at its rank (ties: a range of ranks)
        below, at_or_below = (frames < boundary).mean(), (frames <= boundary).mean()
        assert below - 0.02 <= i / 10 <= at_or_below + 0.02, (i, boundary, below, at_or_below)


def test_standardized_means_are_z_scores_over_videos(data, run_one_file):
    rows = {}
    for raw in _records(os.path.join(run_one_file["out"], "video", "*", "*.tfrecord")):
        f = tf.train.Example.FromString(raw).features.feature
        rows[f["id"].bytes_list.value[0].decode()] = {k: np.array(f[k].float_list.value) for k in (
            "mean_rgb", "mean_audio", "mean_rgb_z", "mean_audio_z")}
    assert set(rows) == set(data["good"])
    for name in ("rgb", "audio"):
        means = np.stack([_deq(g[2 if name == "rgb" else 3][:300]).mean(0) for g in
                          (data["good"][v] for v in sorted(rows))])
        z = (means - means.mean(0)) / means.std(0)
        got = np.stack([rows[v][f"mean_{name}_z"] for v in sorted(rows)])
        np.testing.assert_allclose(got, z, atol=1e-4, rtol=0)
    info = storage.read_json(os.path.join(run_one_file["out"], "dataset.json"))
    assert "mean_rgb_z" in info["video_features"]


def test_split_assignment_independent_of_sharding(data, run1, run_one_file, run_five_files):
    one, five = run_one_file["counts"], run_five_files["counts"]
    assert one["reconciled"] and five["reconciled"] and not five["outputs_verified"]
    assert five["output_records"] is None and run1["counts"]["outputs_verified"]
    assert (one["num_input_files"], five["num_input_files"]) == (1, 5)
    assert one["total"]["written"] == five["total"]["written"] == run1["counts"]["total"]["written"]
    first, second = _frame_ids_by_split(run_one_file["out"]), _frame_ids_by_split(run_five_files["out"])
    assert first == second == _frame_ids_by_split(run1["out"])
    assert len(first) == len(data["good"])
    assert one["total"]["quarantined"] == five["total"]["quarantined"]


# ------------------------------------------------------------------------------------------ pieces


def test_reconcile_reports_lost_records_and_bytes():
    files = ["/a.tfrecord", "/b.tfrecord", "/c.tfrecord"]
    lines = [json.dumps(x) for x in [
        ["size_bytes", "/a.tfrecord", "", 100], ["framed_bytes", "/a.tfrecord", "", 60],
        ["unreadable", "/a.tfrecord", "truncated@60", 40],
        ["read", "/a.tfrecord", "", 3], ["written", "/a.tfrecord", "fold-0", 2],
        ["quarantined", "/a.tfrecord", "unparsable", 1],
        ["size_bytes", "/b.tfrecord", "", 50], ["framed_bytes", "/b.tfrecord", "", 40],  # 10 bytes unaccounted
        ["read", "/b.tfrecord", "", 2], ["written", "/b.tfrecord", "fold-0", 1],  # one record lost
        # /c.tfrecord: never read
        ["write_records", "frame", "fold-0", 3], ["write_records", "video", "fold-0", 2],  # one lost before the write
        ["write_records", "quarantine", "", 2],
        ["output_records", "frame", "fold-0", 2], ["output_records", "video", "fold-0", 2],  # one lost on disk
        ["output_records", "quarantine", "", 2]]]
    counts = preprocess.assemble_counts(lines, files, ["fold-0"])
    problems = preprocess.reconcile(counts)
    assert any(p.startswith("/b.tfrecord: read 2") for p in problems)
    assert any(p.startswith("/b.tfrecord: 50 bytes") for p in problems)
    assert any(p.startswith("/c.tfrecord: never read") for p in problems)
    assert any(p.startswith("total: read 5") for p in problems)
    assert any(p.startswith("video/fold-0: 3 records written but 2") for p in problems)
    assert any(p.startswith("frame/fold-0: 3 records sent to the writer but 2") for p in problems)
    assert not any("/a.tfrecord" in p or p.startswith("quarantine") for p in problems)
    assert counts["per_file"]["/a.tfrecord"]["unreadable"] == [{"offset": 60, "bytes": 40, "reason": "truncated"}]
    assert counts["total"]["read"] == 5 and counts["total"]["quarantined"]["unparsable"] == 1
    assert counts["total"]["unreadable_files"]["truncated"] == 1
    assert not any(p.startswith("frame/fold-0: 3 records sent") for p in preprocess.reconcile(counts, False))


def test_parse_and_validate_dofn_tags_garbage():
    fn = preprocess.ParseAndValidateFn(NUM_CLASSES)
    fn.setup()
    (out,) = list(fn.process(("src.tfrecord", b"\xff" * 20)))
    assert out.tag == preprocess.QUARANTINE_TAG
    source, reason, payload = out.value
    assert (source, reason) == ("src.tfrecord", validation.UNPARSABLE)
    assert tf.train.Example.FromString(payload).features.feature["raw"].bytes_list.value[0] == b"\xff" * 20


def test_duplicate_pieces_keep_the_smallest_position_among_valid_copies(tmp_path):
    rng = np.random.default_rng(5)
    rgb, audio = _frames(rng, 3)
    records = [writers.frame_level_example(v, [1], rgb, audio).SerializeToString() for v in ("a", "b", "a")]
    records.insert(1, b"\xff" * 30)  # no id: not a position
    path = str(tmp_path / "ids.tfrecord")
    writers.write_tfrecords(path, records)
    ids = list(preprocess.ReadVideoIdsFn().process(path))
    assert [(v, pos[1]) for v, pos in ids] == [("a", 0), ("b", _offsets(records)[2]), ("a", _offsets(records)[3])]
    assert all(pos[0] == path for _, pos in ids)
    grouped = {}
    for v, pos in ids:
        grouped.setdefault(v, []).append(pos)
    repeated = dict(kv for item in grouped.items() for kv in preprocess._repeated_ids(item))
    assert repeated == {"a": 2}
    route = preprocess.RouteRepeatedIdsFn()
    route.setup()
    element_b = ("b", path, 99, b"raw-b", (1,), None)
    assert list(route.process(element_b, repeated)) == [element_b]
    (out,) = list(route.process(("a", "f2", 7, b"raw-a", (1,), None), repeated))
    assert out.tag == preprocess.CONTESTED_TAG and out.value == ("a", ("f2", 7, b"raw-a", (1,), None))
    keep = preprocess.KeepFirstCopyFn()
    keep.setup()
    copies = [("f2", 7, b"late", (1,), None), ("f1", 500, b"early", (1,), None), ("f1", 20, b"first", (1,), None)]
    out = list(keep.process(("a", copies)))
    assert out[0] == ("a", "f1", 20, b"first", (1,), None)
    dropped = [o.value for o in out[1:]]
    assert [(src, reason) for src, reason, _ in dropped] == [("f1", validation.DUPLICATE_VIDEO_ID),
                                                            ("f2", validation.DUPLICATE_VIDEO_ID)]
    detail = tf.train.Example.FromString(dropped[0][2]).features.feature["detail"].bytes_list.value[0].decode()
    assert "offset 500" in detail and "offset 20 of f1" in detail


def test_finalize_names_shards_counts_and_is_idempotent(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    written = []
    for name, records in (("b", [b"1", b"22"]), ("a", [b"333"])):
        path = str(temp / f"{name}.tfrecord")
        with open(path, "wb") as f:
            for r in records:
                preprocess._write_framed(f, r)
        written.append(("fold-0", -1, path, len(records)))
    prefixes = {"fold-0": str(tmp_path / "frame" / "fold-0" / "part"), "holdout": str(tmp_path / "frame" / "h" / "part")}
    for _ in range(2):  # a retried finalize finds the files already renamed
        out = list(preprocess._finalize_files(written, "frame", prefixes, {"fold-0": 0, "holdout": 3}))
        files = [o for o in out if not hasattr(o, "tag")]
        counts = dict(o.value for o in out if hasattr(o, "tag"))
        assert [os.path.basename(p) for _, _, p in files] == [
            "part-00000-of-00002.tfrecord", "part-00001-of-00002.tfrecord",  # fold-0: one file per bundle
            "part-00000-of-00003.tfrecord", "part-00001-of-00003.tfrecord", "part-00002-of-00003.tfrecord"]
        assert counts == {("write_records", "frame", "fold-0"): 3, ("write_records", "frame", "holdout"): 0}
    fold0 = sorted(glob.glob(prefixes["fold-0"] + "*"))
    assert [len(_records(p)) for p in fold0] == [1, 2]  # ordered by temporary name: a.tfrecord first
    assert all(_records(p) == [] for p in glob.glob(prefixes["holdout"] + "*"))  # empty shards are valid files
    assert sorted(os.listdir(temp)) == []


def test_bundle_files_are_numbered_by_their_records_not_their_random_names(tmp_path, monkeypatch):
    shards = {}
    for trial, names in (("ascending", iter(range(1, 10))), ("descending", iter(range(9, 0, -1)))):
        monkeypatch.setattr(preprocess.uuid, "uuid4", lambda names=names: types.SimpleNamespace(hex=f"{next(names):032x}"))
        temp = tmp_path / trial / "tmp"
        temp.mkdir(parents=True)
        write = preprocess.WriteBundleFilesFn(str(temp), "frame")
        written = []
        for bundle in ([b"first bundle"], [b"second bundle", b"x"], [b"third"]):
            write.start_bundle()
            for record in bundle:
                write.process(("fold-0", record))
            written += [w.value for w in write.finish_bundle()]
        prefixes = {"fold-0": str(tmp_path / trial / "out" / "part")}
        list(preprocess._finalize_files(written, "frame", prefixes, {"fold-0": 0}))
        shards[trial] = [_records(p) for p in sorted(glob.glob(prefixes["fold-0"] + "*"))]
    assert len(shards["ascending"]) == 3 and shards["ascending"] == shards["descending"]


@pytest.mark.parametrize("labels", [[], [0], [3, 150, 3861], [2 ** 40]])
def test_video_example_bytes_parse_to_the_writers_example(labels):
    rng = np.random.default_rng(len(labels))
    rgb = rng.normal(size=1024).astype(np.float32)
    audio = rng.normal(size=128).astype(np.float32)
    extra = {"mean_rgb_z": rng.normal(size=1024).astype(np.float32)}
    got = preprocess.video_example_bytes(b"vid-\xc3\xa9", labels, {"mean_rgb": rgb, "mean_audio": audio, **extra})
    want = writers.video_level_example(b"vid-\xc3\xa9", labels, rgb, audio, **extra)
    assert tf.train.Example.FromString(got) == want
    empty = tf.train.Example.FromString(preprocess.video_example_bytes(b"x", [], {"f": np.zeros(0, np.float32)}))
    assert empty.features.feature["f"].HasField("float_list") and not empty.features.feature["f"].float_list.value


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


def test_dataflow_options_worker_image_and_no_single_shard(monkeypatch):
    monkeypatch.setenv("YT8M_DATAFLOW_IMAGE", "europe-docker.pkg.dev/p/r/yt8m-dataflow@sha256:abc")
    opts = preprocess.build_pipeline_options("dataflow", "gs://b/o", project="p", region="europe-west4",
                                             num_workers=3, service_account_email="df@p.iam.gserviceaccount.com")
    workers = opts.view_as(WorkerOptions)
    assert workers.sdk_container_image == "europe-docker.pkg.dev/p/r/yt8m-dataflow@sha256:abc"
    assert workers.num_workers == 3 and opts.view_as(SetupOptions).setup_file is None  # slim: no kfp on workers
    assert "use_runner_v2" in opts.view_as(DebugOptions).experiments
    assert opts.view_as(GoogleCloudOptions).service_account_email == "df@p.iam.gserviceaccount.com"
    explicit = preprocess.build_pipeline_options("dataflow", "gs://b/o", project="p", region="r",
                                                 setup_file=preprocess._default_setup_file())
    assert explicit.view_as(WorkerOptions).sdk_container_image is None  # an explicit setup file wins
    assert set(preprocess._resolve_shards(None, SPLITS, "dataflow").values()) == {0}
    with pytest.raises(ValueError, match="one worker"):
        preprocess._resolve_shards(1, SPLITS, "dataflow")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert preprocess.main(["--input", str(tmp_path / "missing.tfrecord"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.tfrecord" in err and "does not exist" in err
    assert preprocess.main(["--input", str(tmp_path / "none-*.tfrecord"), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        preprocess.main(["--input", "x", "--output", "y", "--folds", "three"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--folds" in err
    assert preprocess.main(["--input", "x*", "--output", "y", "--runner", "dataflow"]) == 2  # no project/region
    assert capsys.readouterr().err.count("\n") == 1


def test_preprocess_from_args_summary_lines():
    import argparse

    args = preprocess.add_arguments(argparse.ArgumentParser()).parse_args(["--input", "a", "--output", "o"])
    assert (args.folds, args.holdout, args.runner, args.verify_outputs) == (5, 0.1, "local", False)
    counts = {"total": {"read": 10, "size_bytes": 2_000_000, "written_total": 7, "written": {"fold-0": 7},
                        "quarantined_total": 3, "quarantined": {"unparsable": 1, "duplicate_video_id": 2},
                        "unreadable_bytes": 12, "unreadable_files": {"truncated": 1, "empty_file": 0}},
              "num_input_files": 2, "elapsed_seconds": 4.0, "records_per_second": 2.5, "mb_per_second": 0.5}
    lines = preprocess.summary_lines(counts, "/out")
    assert lines[0].startswith("read 10 records (2.0 MB) from 2 files")
    assert lines[1] == "written 7 (fold-0 7)"
    assert lines[2] == "quarantined 3 (unparsable 1, duplicate_video_id 2); unreadable 12 bytes (files: truncated 1)"
    assert lines[3] == "dataset: /out"


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        preprocess.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--input", "--output", "--num-classes", "--folds", "--holdout", "--runner", "--project",
                 "--region", "--temp-location", "--setup-file", "--num-shards"):
        assert flag in text


def test_dataflow_graph_builds_offline(tmp_path):
    """The whole graph translates for the DataflowRunner (dry_run: no GCS calls, nothing submitted)."""
    import apache_beam as beam

    opts = preprocess.build_pipeline_options("dataflow", "gs://my-bucket/out", project="my-project-123",
                                             region="us-central1", extra_args=["--dry_run=True"])
    pipeline = beam.Pipeline(options=opts)
    shards = preprocess._resolve_shards(None, SPLITS, "dataflow")
    assert set(shards.values()) == {0}
    # TFT creates its temp dir while the graph is BUILT (tf.io.gfile.makedirs): offline, a local one
    preprocess.build_pipeline(pipeline, ["gs://my-bucket/in/train0000.tfrecord"], "gs://my-bucket/out", NUM_CLASSES,
                              FOLDS, HOLDOUT, shards, temp_dir=str(tmp_path))
    names = {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}
    for stage in ("ReadWithSource", "ReadWithSource/SpreadFiles", "ParseAndValidate", "DropDuplicateIds",
                  "DropDuplicateIds/GroupByVideoId", "AssignSplit", "AnalyzeAndTransform",
                  "AnalyzeAndTransform/Analyze", "AnalyzeAndTransform/WriteTransformFn", "CountRecords", "WriteCounts"):
        assert stage in names, stage
    # the duplicate detection groups (id, position) pairs read by its own light pass, never the record bytes
    proto = pipeline.to_runner_api().components
    by_name = {t.unique_name: t for t in proto.transforms.values()}
    producers = {pc: t.unique_name for t in proto.transforms.values() for pc in t.outputs.values()
                 if not t.subtransforms}
    (grouped,) = by_name["DropDuplicateIds/GroupByVideoId"].inputs.values()
    assert producers[grouped] == "DropDuplicateIds/ReadVideoIds"
    (contested,) = by_name["DropDuplicateIds/GroupCopies"].inputs.values()
    assert producers[contested].startswith("DropDuplicateIds/RouteRepeatedIds")
    # counts come from what goes into each write; no re-read of the outputs unless asked
    for kind in ("Frame", "Video", "Quarantine"):  # ONE write per kind, whatever the number of splits
        assert f"Write{kind}/Finalize" in names and f"Write{kind}/WriteBundleFiles" in names
    assert not any("CountOnDisk" in n for n in names)
    assert type(pipeline.runner).__name__ == "DataflowRunner"


def test_an_input_without_one_valid_record_is_a_one_line_error(tmp_path):
    from tests.helpers import independent_sequence_example
    from yt8m import writers as writers_lib
    from yt8m_pipeline.beam_jobs.preprocess import run_preprocess as run

    path = str(tmp_path / "allbad.tfrecord")
    empty = np.zeros((0, 1024), np.uint8), np.zeros((0, 128), np.uint8)
    writers_lib.write_tfrecords(path, [independent_sequence_example(f"z{i}".encode(), [1], *empty) for i in range(5)])
    with pytest.raises(ValueError) as err:
        run(path, str(tmp_path / "out"), num_classes=10, folds=2, holdout_fraction=0.2, runner="local")
    message = str(err.value)
    assert message.startswith("no valid record in the 1 input file(s)") and "zero_frames" in message
    assert "\n" not in message


def test_rows_and_written_counts_are_gathered_per_bundle_without_losing_a_record():
    """The per-bundle DoFns: every row lands in exactly one RecordBatch of at most batch_size rows, and the
    counts summed per bundle equal the per-record counts."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(5):
        video = validation.Video(f"v{i}", (i % 3,), rng.integers(0, 256, (40 + 100 * i, schema.RGB_SIZE), np.uint8),
                                 rng.integers(0, 256, (40 + 100 * i, schema.AUDIO_SIZE), np.uint8))
        records.append((f"fold-{i % 2}", "src.tfrecord", video.video_id, b"raw", video.labels,
                        validation.frame_sums(video)))

    def run(fn):
        fn.start_bundle()
        out = [x for r in records for x in (fn.process(r) or [])]
        return out + [w.value for w in fn.finish_bundle() or []]

    batches = run(preprocess.TransformRowBatchesFn(batch_size=2))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    ids = [v.as_py() for b in batches for v in b.column(b.schema.get_field_index("id")).flatten()]
    assert ids == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    counts = dict(run(preprocess.CountWrittenFn()))
    assert counts[("written", "src.tfrecord", "fold-0")] == 3 and counts[("written", "src.tfrecord", "fold-1")] == 2
    assert sum(n for (kind, _, _), n in counts.items() if kind == "frames_hist") == 5
    assert counts[("frames_hist", "", preprocess._frames_bucket(40))] == 1  # 340 and 440 frames share "330+"
    assert counts[("frames_hist", "", preprocess._frames_bucket(440))] == 2
