import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import random_video
from yt8m import validation, writers


def _record(video_id="vid1", labels=(1, 2), frames=5, rgb_bytes=1024, audio_frames=None):
    ex = tf.train.SequenceExample()
    if video_id is not None:
        ex.context.feature["id"].bytes_list.value.append(video_id.encode())
    ex.context.feature["labels"].int64_list.value.extend(labels)
    for _ in range(frames):
        ex.feature_lists.feature_list["rgb"].feature.add().bytes_list.value.append(b"\x01" * rgb_bytes)
    for _ in range(frames if audio_frames is None else audio_frames):
        ex.feature_lists.feature_list["audio"].feature.add().bytes_list.value.append(b"\x02" * 128)
    return ex.SerializeToString()


@pytest.mark.parametrize("record, reason", [
    (b"\xff\xff\xff garbage", validation.UNPARSABLE),
    (_record(video_id=None), validation.MISSING_ID),
    (_record(rgb_bytes=1000), validation.WRONG_RGB_BYTES),
    (_record(audio_frames=4), validation.FRAME_COUNT_MISMATCH),
    (_record(frames=0), validation.ZERO_FRAMES),
    (_record(labels=(3, 10)), validation.LABEL_OUT_OF_RANGE),
    (_record(labels=(-1,)), validation.LABEL_OUT_OF_RANGE),
], ids=["garbage", "no-id", "rgb-bytes", "frame-count-mismatch", "zero-frames", "label-too-large",
        "label-negative"])  # readable ids (the serialized records' bytes vary between processes: pytest-xdist)
def test_bad_records_are_rejected_with_reason_file_and_video(record, reason):
    with pytest.raises(validation.InvalidRecord) as err:
        validation.parse_frame_level(record, num_classes=10, source="shard-7.tfrecord")
    assert err.value.reason == reason
    assert "shard-7.tfrecord" in str(err.value)


def test_good_record_round_trips_frames_and_means():
    rng = np.random.default_rng(0)
    vid, labels, rgb, audio = random_video(rng, "abc", 7, 10)
    video = validation.parse_frame_level(writers.frame_level_example(vid, labels, rgb, audio).SerializeToString(), 10)
    assert video.video_id == "abc" and list(video.labels) == labels and video.num_frames == 7
    np.testing.assert_array_equal(video.rgb, rgb)
    mean_rgb, mean_audio = validation.video_level_means(video)
    np.testing.assert_allclose(mean_rgb, (rgb * (4 / 255) + 4 / 512 - 2).mean(0), atol=1e-5)
    np.testing.assert_allclose(mean_audio, (audio * (4 / 255) + 4 / 512 - 2).mean(0), atol=1e-5)


# ----------------------------------------------------------------------------- TFRecord framing

import io  # noqa: E402

from yt8m import schema  # noqa: E402


def _framed(records, tmp_path):
    path = str(tmp_path / "f.tfrecord")
    writers.write_tfrecords(path, records)
    with open(path, "rb") as f:
        return f.read()


def _scan(blob):
    return list(validation.scan_tfrecord(io.BytesIO(blob), len(blob)))


def test_scan_reads_every_record_of_a_good_file_like_tensorflow(tmp_path):
    records = [b"a" * n for n in (0, 1, 100, 5000)]
    items = _scan(_framed(records, tmp_path))
    assert [i.data for i in items] == records and all(i.crc_ok for i in items)
    assert [i.offset for i in items] == [0, 16, 33, 149]


def test_scan_damage_kinds(tmp_path):
    records = [b"x" * 50, b"y" * 60, b"z" * 70]
    blob = _framed(records, tmp_path)
    assert [(type(i).__name__, i.reason, i.num_bytes) for i in _scan(b"")] == [("Unreadable", "empty_file", 0)]
    (bad,) = _scan(b"hello, I am a CSV file\n" * 3)
    assert (bad.offset, bad.reason, bad.num_bytes) == (0, validation.NOT_A_TFRECORD, 69)
    # truncated inside record 3's data: 2 records, then the rest unreadable
    items = _scan(blob[:-20])
    assert [i.data for i in items[:2]] == records[:2]
    assert (items[2].reason, items[2].offset, items[2].num_bytes) == (validation.TRUNCATED, 142, len(blob) - 20 - 142)
    # truncated inside a header
    items = _scan(blob[:142 + 5])
    assert items[-1].reason == validation.TRUNCATED and items[-1].num_bytes == 5
    # data CRC: the record is returned with crc_ok False and the scan goes on
    damaged = bytearray(blob)
    damaged[66 + 12 + 3] ^= 1
    items = _scan(bytes(damaged))
    assert [i.crc_ok for i in items] == [True, False, True] and items[1].data != records[1]
    # length CRC after a good record: the rest of the file is unreadable (corrupt framing)
    damaged = bytearray(blob)
    damaged[66 + 9] ^= 1
    items = _scan(bytes(damaged))
    assert items[0].data == records[0] and len(items) == 2
    assert (items[1].reason, items[1].offset, items[1].num_bytes) == (validation.CORRUPT_FRAMING, 66, len(blob) - 66)
    for item in items:  # messages never carry record bytes
        assert "x" * 10 not in getattr(item, "detail", "")


def test_more_than_300_frames_is_valid_and_features_use_the_first_300():
    rng = np.random.default_rng(1)
    vid, labels, rgb, audio = random_video(rng, "long", schema.MAX_FRAMES + 20, 10)
    video = validation.parse_frame_level(writers.frame_level_example(vid, labels, rgb, audio).SerializeToString(), 10)
    assert video.num_frames == schema.MAX_FRAMES + 20
    assert validation.feature_frames(video.rgb).shape == (schema.MAX_FRAMES, 1024)
    mean_rgb, _ = validation.video_level_means(video)
    np.testing.assert_allclose(mean_rgb, (rgb[:300] * (4 / 255) + 4 / 512 - 2).mean(0), atol=1e-5)


# ----------------------------------------------------------------------------- ids without the frames, frame sums


def test_video_id_of_agrees_with_the_full_parse():
    rng = np.random.default_rng(2)
    vid, labels, rgb, audio = random_video(rng, "abc-é", 4, 10)
    ex = writers.frame_level_example(vid, labels, rgb, audio)
    raw = ex.SerializeToString()
    assert validation.video_id_of(raw) == validation.parse_frame_level(raw, 10).video_id == "abc-é"
    # feature_lists first, then the context (a valid, unusual field order)
    lists_first = (tf.train.SequenceExample(feature_lists=ex.feature_lists).SerializeToString()
                   + tf.train.SequenceExample(context=ex.context).SerializeToString())
    assert validation.parse_frame_level(lists_first, 10).video_id == validation.video_id_of(lists_first) == "abc-é"
    # the context given twice: protobuf merges (map entries: the last wins), and so does video_id_of
    other = tf.train.SequenceExample()
    other.context.feature["id"].bytes_list.value.append(b"second")
    merged = raw + other.SerializeToString()
    assert validation.parse_frame_level(merged, 10).video_id == validation.video_id_of(merged) == "second"
    assert validation.video_id_of(_record(video_id=None)) is None
    assert validation.video_id_of(b"\xff\xff\xff garbage") is None
    assert validation.video_id_of(b"") is None


def test_frame_sums_are_exact_integers_of_the_first_300_frames():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (schema.MAX_FRAMES + 11, 1024), dtype=np.uint8)
    rgb[:, 0] = 255  # the largest possible sum of squares: 300 * 255**2 (fits in int32)
    audio = rng.integers(0, 256, (schema.MAX_FRAMES + 11, 128), dtype=np.uint8)
    video = validation.Video("x", (1,), rgb, audio)
    sums = validation.frame_sums(video)
    assert sums.num_frames == schema.MAX_FRAMES + 11
    first = rgb[:schema.MAX_FRAMES].astype(np.int64)
    np.testing.assert_array_equal(sums.rgb_sum, first.sum(0))
    np.testing.assert_array_equal(sums.rgb_sum_sq, (first ** 2).sum(0))
    assert sums.rgb_sum_sq[0] == schema.MAX_FRAMES * 255 ** 2
    first_audio = audio[:schema.MAX_FRAMES].astype(np.int64)
    np.testing.assert_array_equal(sums.audio_sum, first_audio.sum(0))
    np.testing.assert_array_equal(sums.audio_sum_sq, (first_audio ** 2).sum(0))
    assert sums.rgb_sum.dtype == np.int32 and sums.audio_sum_sq.shape == (128,)
    # the video-level mean follows exactly from the sum (dequantization is affine)
    mean_rgb, _ = validation.video_level_means(video)
    np.testing.assert_allclose(sums.rgb_sum / schema.MAX_FRAMES * schema.QUANTIZE_SCALE + schema.DEQUANTIZE_BIAS,
                               mean_rgb, atol=1e-6, rtol=0)


def test_scan_without_data_crc_still_checks_the_framing(tmp_path):
    blob = bytearray(_framed([b"x" * 50, b"y" * 60], tmp_path))
    blob[12 + 3] ^= 1  # record 0's data
    items = list(validation.scan_tfrecord(io.BytesIO(bytes(blob)), len(blob), check_data_crc=False))
    assert [i.crc_ok for i in items] == [True, True]
    (bad,) = list(validation.scan_tfrecord(io.BytesIO(b"not a tfrecord at all"), 21, check_data_crc=False))
    assert bad.reason == validation.NOT_A_TFRECORD


def test_fast_frame_path_equals_the_protobuf_path():
    from tests.helpers import independent_sequence_example

    rng = np.random.default_rng(6)
    for t in (1, 5, schema.MAX_FRAMES + 3):
        vid, labels, rgb, audio = random_video(rng, f"v{t}", t, 10)
        for raw in (writers.frame_level_example(vid, labels, rgb, audio).SerializeToString(),
                    independent_sequence_example(vid.encode(), labels, rgb, audio)):
            fast = validation._frames_fast(raw)
            assert fast is not None  # the canonical layout every writer produces
            slow = validation._frames_from_proto(tf.train.SequenceExample.FromString(raw), vid, "")
            for name in ("rgb", "audio"):
                np.testing.assert_array_equal(fast[1][name], slow[name])
            video = validation.parse_frame_level(raw, 10)
            assert (video.video_id, list(video.labels)) == (vid, labels)
            np.testing.assert_array_equal(video.rgb, rgb)
            np.testing.assert_array_equal(video.audio, audio)
    # not canonical -> the protobuf path (same answer or same reason)
    ex = tf.train.SequenceExample()
    ex.context.feature["id"].bytes_list.value.append(b"x")
    ex.feature_lists.feature_list["rgb"].feature.add().bytes_list.value.extend([b"\x01" * 1024, b"\x02" * 1024])
    ex.feature_lists.feature_list["audio"].feature.add().bytes_list.value.append(b"\x02" * 128)
    raw = ex.SerializeToString()
    assert validation._frames_fast(raw) is None
    with pytest.raises(validation.InvalidRecord) as err:
        validation.parse_frame_level(raw, 10)
    assert err.value.reason == validation.WRONG_RGB_BYTES
    ok = _record(frames=3)
    twice = ok + tf.train.SequenceExample(context=tf.train.SequenceExample.FromString(ok).context).SerializeToString()
    assert validation._frames_fast(twice) is None  # a second context: protobuf merges, so the proto path decides
    assert validation.parse_frame_level(twice, 10).num_frames == 3
    assert validation._frames_fast(b"\xff\xff\xff garbage") is None


@pytest.mark.parametrize("frames", [258, 259, schema.MAX_FRAMES])
def test_frame_sums_exact_at_the_float32_limit(frames):
    worst = validation.Video("w", (), np.full((frames, 1024), 255, np.uint8), np.full((frames, 128), 254, np.uint8))
    sums = validation.frame_sums(worst)
    assert (sums.rgb_sum == frames * 255).all() and (sums.rgb_sum_sq == frames * 255 ** 2).all()
    assert (sums.audio_sum_sq == frames * 254 ** 2).all()
    odd = worst.rgb.copy()
    odd[::2] = 253  # sums that are not multiples of a large power of two
    expected = (odd.astype(np.int64) ** 2).sum(0)
    np.testing.assert_array_equal(validation.frame_sums(validation.Video("o", (), odd, worst.audio)).rgb_sum_sq,
                                  expected)
