"""Validate TFRecord files and frame-level records, and say what is wrong with a reason code.

Pure protobuf + numpy (fast: no TensorFlow ops), so the Beam job, the CLI and the tests
share exactly one definition of "a good record" and of "a readable file":

* ``scan_tfrecord`` walks the TFRecord framing of one file (u64 length, u32 masked crc32c
  of the length, data, u32 masked crc32c of the data) and never raises on damage: it yields
  every readable record, the records whose data CRC fails (framing intact: reason
  ``crc_mismatch``, the scan goes on) and, at most once and last, the unreadable rest of the
  file (``UNREADABLE_REASONS``: empty, not a TFRecord, truncated, corrupt framing).
* ``parse_frame_level`` validates one record (``REASONS``); canonically laid out records (every
  YT8M writer's) have their frames sliced out of the bytes with numpy, others go through protobuf.
* ``frame_sums``: a video's exact integer sums (and sums of squares) over its first 300 frames,
  the per-video input of the TFT graph (``yt8m.transform``); ``video_id_of``: the id alone,
  without the frames (the Beam job's duplicate detection).
* Frames beyond ``schema.MAX_FRAMES`` (300) are NOT an error: they are kept in the frame
  shards, and every feature computed from frames uses the first 300 only
  (``feature_frames`` here; ``yt8m.transform.first_frames`` is the same rule in-graph, and
  the readers and the serving graph truncate to the first 300 too).

No message built here contains record bytes.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from yt8m import schema, wire

# Reason codes (stable strings: they land in quarantine records and counts.json).
UNPARSABLE = "unparsable"
MISSING_ID = "missing_id"
WRONG_RGB_BYTES = "wrong_rgb_bytes"
WRONG_AUDIO_BYTES = "wrong_audio_bytes"
FRAME_COUNT_MISMATCH = "frame_count_mismatch"
ZERO_FRAMES = "zero_frames"
LABEL_OUT_OF_RANGE = "label_out_of_range"
CRC_MISMATCH = "crc_mismatch"  # the record's data CRC fails; the framing around it is intact
DUPLICATE_VIDEO_ID = "duplicate_video_id"  # a later copy of an id seen elsewhere in the input (Beam job)
REASONS = (UNPARSABLE, MISSING_ID, WRONG_RGB_BYTES, WRONG_AUDIO_BYTES, FRAME_COUNT_MISMATCH, ZERO_FRAMES,
           LABEL_OUT_OF_RANGE, CRC_MISMATCH, DUPLICATE_VIDEO_ID)

# Why (part of) a file could not be read as records: a byte range, not a record.
EMPTY_FILE = "empty_file"  # 0 bytes (reported, 0 bytes unreadable)
NOT_A_TFRECORD = "not_a_tfrecord"  # the first record header is not TFRecord framing
TRUNCATED = "truncated"  # a header or a record runs past the end of the file
CORRUPT_FRAMING = "corrupt_framing"  # a length CRC fails after good records: the rest cannot be framed
UNREADABLE_REASONS = (EMPTY_FILE, NOT_A_TFRECORD, TRUNCATED, CORRUPT_FRAMING)


class InvalidRecord(ValueError):
    """A record that breaks the data contract; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str, video_id: str = "", source: str = ""):
        self.reason, self.detail, self.video_id, self.source = reason, detail, video_id, source
        where = ", ".join(x for x in (f"file {source}" if source else "", f"video {video_id!r}" if video_id else "") if x)
        super().__init__(f"{reason}: {detail}" + (f" ({where})" if where else ""))


@dataclasses.dataclass(frozen=True)
class Video:
    """A parsed, valid frame-level video: uint8 frames, as stored."""

    video_id: str
    labels: tuple[int, ...]
    rgb: np.ndarray  # uint8 [T, 1024]
    audio: np.ndarray  # uint8 [T, 128]

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])


def _id_of(context) -> str | None:
    """The video id of a parsed context (``tf.train.Features``): its one non-empty ``id`` bytes value, decoded."""
    feature = context.feature
    ids = feature["id"].bytes_list.value if "id" in feature else []
    if len(ids) != 1 or not ids[0]:
        return None
    return ids[0].decode("utf-8", errors="replace")


def parse_frame_level(serialized: bytes, num_classes: int, source: str = "") -> Video:
    """Parse and validate a frame-level SequenceExample; raise ``InvalidRecord`` if it is bad.

    Fast path (``_frames_fast``): when the record has the canonical layout every YT8M writer
    produces (one context, one feature_lists, each frame one bytes value of the right size),
    the frames are sliced out of the record bytes with numpy, without a protobuf object per
    frame; anything else takes the full protobuf parse, which decides exactly as before
    (same reasons, same messages). Both give the same Video for any record the fast path takes.
    """
    fast = _frames_fast(serialized)
    if fast is not None:
        context, frames = fast
    else:
        try:
            example = tf.train.SequenceExample.FromString(serialized)
        except Exception as exc:  # protobuf DecodeError and friends
            raise InvalidRecord(UNPARSABLE, f"not a SequenceExample ({type(exc).__name__})", source=source) from None
        context, frames = example.context, None
    ctx = context.feature
    video_id = _id_of(context)
    if video_id is None:
        raise InvalidRecord(MISSING_ID, "context feature 'id' must hold one non-empty bytes value", source=source)
    labels = tuple(ctx["labels"].int64_list.value) if "labels" in ctx else ()
    bad = [l for l in labels if not 0 <= l < num_classes]
    if bad:
        raise InvalidRecord(LABEL_OUT_OF_RANGE, f"labels {bad[:5]} outside [0, {num_classes})", video_id, source)
    if frames is None:
        frames = _frames_from_proto(example, video_id, source)
    if frames["rgb"].shape[0] != frames["audio"].shape[0]:
        raise InvalidRecord(FRAME_COUNT_MISMATCH,
                            f"{frames['rgb'].shape[0]} rgb frames but {frames['audio'].shape[0]} audio frames",
                            video_id, source)
    if frames["rgb"].shape[0] == 0:
        raise InvalidRecord(ZERO_FRAMES, "video has no frames", video_id, source)
    return Video(video_id, labels, frames["rgb"], frames["audio"])


def _frames_from_proto(example, video_id: str, source: str) -> dict:
    lists = example.feature_lists.feature_list
    frames = {}
    for name, code in (("rgb", WRONG_RGB_BYTES), ("audio", WRONG_AUDIO_BYTES)):
        size = schema.FEATURE_SIZES[name]
        if name in lists:
            containers = [f.bytes_list.value for f in lists[name].feature]
            values = [v[0] for v in containers if len(v) == 1]
            if len(values) != len(containers) or any(len(v) != size for v in values):
                values = [v[0] if len(v) == 1 else b"" for v in containers]
                wrong = next(i for i, v in enumerate(values) if len(v) != size)
                raise InvalidRecord(code, f"frame {wrong} of '{name}' has {len(values[wrong])} bytes, expected "
                                    f"{size}", video_id, source)
        else:
            values = []
        frames[name] = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), size)
    return frames


_FRAME_LAYOUTS = {name: wire.frame_layout(size) for name, size in schema.FEATURE_SIZES.items()}


def _fields(buf: bytes, start: int, end: int):
    """Length-delimited fields (field number, payload start, payload end) of buf[start:end]; ValueError otherwise."""
    pos = start
    while pos < end:
        tag, pos = wire.decode_varint(buf, pos)
        if tag & 7 != 2:
            raise ValueError("not a length-delimited field")
        length, pos = wire.decode_varint(buf, pos)
        if pos + length > end:
            raise ValueError("field runs past its message")
        yield tag >> 3, pos, pos + length
        pos += length


def _frames_fast(serialized: bytes):
    """(context Features, {"rgb", "audio": uint8 [T, size]}) of a canonically laid out record, else None.

    Canonical: top level = at most one context (1) and one feature_lists (2); FeatureLists =
    map entries (key, value) with distinct keys; the "rgb" / "audio" FeatureLists = T frames,
    each exactly ``Feature{bytes_list{value: <size bytes>}}`` (checked for every frame with one
    vectorized comparison of the 9 framing bytes). Other keys are ignored, as the proto path
    ignores them. None (-> the protobuf path) for anything else, damaged records included.
    """
    try:
        end = len(serialized)
        top = list(_fields(serialized, 0, end))
        numbers = [f for f, _, _ in top]
        if sorted(numbers) not in ([1, 2], [2], [1]):
            return None
        context = b""
        lists = {}
        for field, a, b in top:
            if field == 1:
                context = serialized[a:b]
                continue
            for entry_field, ea, eb in _fields(serialized, a, b):
                if entry_field != 1:
                    return None
                parts = list(_fields(serialized, ea, eb))
                if [f for f, _, _ in parts] != [1, 2]:
                    return None
                key = serialized[parts[0][1]:parts[0][2]]
                if key in lists:
                    return None
                lists[key] = (parts[1][1], parts[1][2])
        frames = {}
        for name, size in (("rgb", schema.RGB_SIZE), ("audio", schema.AUDIO_SIZE)):
            stride, header = _FRAME_LAYOUTS[name]
            a, b = lists.get(name.encode(), (0, 0))
            if (b - a) % stride:
                return None
            rows = np.frombuffer(serialized, np.uint8, count=b - a, offset=a).reshape(-1, stride)
            if rows.shape[0] and not (rows[:, :len(header)] == header).all():
                return None
            frames[name] = rows[:, len(header):]
        return tf.train.Features.FromString(context), frames
    except Exception:  # noqa: BLE001 - anything unusual: the protobuf path decides
        return None


def video_id_of(serialized: bytes) -> str | None:
    """The video id ``parse_frame_level`` would find in a record, WITHOUT parsing its frames; None if none.

    Walks the top-level protobuf wire format of the SequenceExample and parses only the
    context (field 1; several occurrences are concatenated, which is protobuf's merge rule),
    skipping the frame lists by their length. Anything unusual (another wire type for field
    1, a group, a malformed varint) falls back to the full protobuf parse, so the answer is
    the same as the full parse's whenever the record is valid. Used by the Beam job's
    duplicate detection, which must not pay for decoding every frame twice.
    """
    try:
        contexts, pos, end = [], 0, len(serialized)
        while pos < end:
            tag, pos = wire.decode_varint(serialized, pos)
            field, wire_type = tag >> 3, tag & 7
            if wire_type == 2:
                length, pos = wire.decode_varint(serialized, pos)
                if field == 1:
                    contexts.append(serialized[pos:pos + length])
                pos += length
            elif wire_type == 0 and field != 1:
                _, pos = wire.decode_varint(serialized, pos)
            elif wire_type == 1 and field != 1:
                pos += 8
            elif wire_type == 5 and field != 1:
                pos += 4
            else:
                raise ValueError("unusual wire format")
        if pos != end:
            raise ValueError("overrun")
        return _id_of(tf.train.Features.FromString(b"".join(contexts)))
    except Exception:  # noqa: BLE001 - fall back to the full parse (exact protobuf semantics)
        try:
            return _id_of(tf.train.SequenceExample.FromString(serialized).context)
        except Exception:  # noqa: BLE001 - unparsable: no id (the record is quarantined by the validation)
            return None


def feature_frames(frames: np.ndarray) -> np.ndarray:
    """THE rule for frames beyond ``schema.MAX_FRAMES``: features see the first 300 frames only.

    The frame shards keep every frame; the readers, the serving graph and the TFT transform
    (``yt8m.transform.first_frames``, the same rule on a RaggedTensor) all truncate to the
    first ``MAX_FRAMES``, so training and serving agree on long videos.
    """
    return frames[:schema.MAX_FRAMES]


def video_level_means(video: Video) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the dequantized first 300 rgb and audio frames (the video-level features).

    The Beam job computes the same thing in the TFT graph (``yt8m.transform``); this numpy
    version is the reference the tests compare it with.
    """
    return (schema.dequantize(feature_frames(video.rgb)).mean(axis=0, dtype=np.float64).astype(np.float32),
            schema.dequantize(feature_frames(video.audio)).mean(axis=0, dtype=np.float64).astype(np.float32))


class FrameSums(NamedTuple):
    """Per-video sufficient statistics of the frames the features see (the first 300).

    Exact integers: ``rgb_sum[d]`` = sum over those frames of the quantized value of dimension
    ``d``, ``rgb_sum_sq[d]`` = sum of its squares (int32: at most 300 * 255**2 < 2**31), and
    ``num_frames`` = ALL frames stored (``min(num_frames, 300)`` frames were summed). The TFT
    graph (``yt8m.transform``) turns them into the video-level means and, summed over videos,
    into the exact frame-level mean and variance.
    """

    num_frames: int
    rgb_sum: np.ndarray
    rgb_sum_sq: np.ndarray
    audio_sum: np.ndarray
    audio_sum_sq: np.ndarray


# float32 holds every integer below 2**24 exactly, and a sum of non-negative integers below it
# is exact in any order: frame sums (<= 300 * 255) always are, sums of squares while T * 255**2 < 2**24.
_EXACT_FLOAT32_SQUARES = (1 << 24) // (255 * 255)  # 258 frames


def _sum_and_sum_sq(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = frames.astype(np.float32)
    sum_sq = np.zeros(f.shape[1:], np.int32)
    # squares summed in float32 over chunks short enough to stay exact, the chunks added as integers
    # (a video of 300 frames costs two float32 passes, not a float64 copy of its frames)
    for start in range(0, len(f), _EXACT_FLOAT32_SQUARES):
        chunk = f[start:start + _EXACT_FLOAT32_SQUARES]
        sum_sq += np.einsum("ij,ij->j", chunk, chunk).astype(np.int32)
    return f.sum(axis=0).astype(np.int32), sum_sq


def frame_sums(video: Video) -> FrameSums:
    """The video's ``FrameSums`` over ``feature_frames`` (the first 300 frames), vectorized."""
    rgb_sum, rgb_sum_sq = _sum_and_sum_sq(feature_frames(video.rgb))
    audio_sum, audio_sum_sq = _sum_and_sum_sq(feature_frames(video.audio))
    return FrameSums(video.num_frames, rgb_sum, rgb_sum_sq, audio_sum, audio_sum_sq)


# ----------------------------------------------------------------------------- TFRecord framing

_HEADER = 12  # u64 length + u32 masked crc of the length
_FOOTER = 4  # u32 masked crc of the data
_MASK_DELTA = 0xA282EAD8


def _crc32c(data: bytes) -> int:
    global _crc32c_impl
    if _crc32c_impl is None:
        try:
            import google_crc32c  # C extension, comes with apache-beam[gcp]

            _crc32c_impl = google_crc32c.value
        except ImportError:  # pragma: no cover - crcmod (an apache-beam dependency) is slower
            import crcmod.predefined  # type: ignore

            _crc32c_impl = crcmod.predefined.mkPredefinedCrcFun("crc-32c")
    return _crc32c_impl(data)


_crc32c_impl = None


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: crc32c rotated right by 15 bits plus 0xa282ead8 (mod 2**32)."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class ScannedRecord:
    """One framed record: ``offset`` of its header in the file, its data, ``crc_ok`` of the data."""

    offset: int
    data: bytes
    crc_ok: bool

    @property
    def framed_bytes(self) -> int:
        return _HEADER + len(self.data) + _FOOTER


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """The unreadable rest of a file: ``num_bytes`` from ``offset`` (to the end), and why."""

    offset: int
    num_bytes: int
    reason: str
    detail: str


def scan_tfrecord(f, size: int, check_data_crc: bool = True) -> Iterator[ScannedRecord | Unreadable]:
    """Walk the TFRecord framing of an open binary file of ``size`` bytes; never raises on damage.

    Yields ``ScannedRecord`` for every framed record (``crc_ok`` False when only the data CRC
    fails: the length was checked, so the scan goes on) and at most one ``Unreadable``, last,
    covering the bytes from the first framing failure to the end of the file (after a
    length-CRC failure nothing later can be located reliably). An empty file yields one
    ``Unreadable`` of 0 bytes (reason ``empty_file``). Reads sequentially: one pass, no seeks.
    ``check_data_crc=False`` skips the data checksums (``crc_ok`` is then always True; the
    framing and the length checksums are still checked): for a pass that only needs the
    positions of the records.
    """
    if size == 0:
        yield Unreadable(0, 0, EMPTY_FILE, "the file is empty")
        return
    pos = 0
    while pos < size:
        header = f.read(_HEADER)
        if len(header) < _HEADER:
            yield Unreadable(pos, size - pos, NOT_A_TFRECORD if pos == 0 else TRUNCATED,
                             f"{size - pos} bytes at offset {pos} are too few for a record header ({_HEADER})")
            return
        length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
        if masked_crc32c(length_bytes) != length_crc:
            yield Unreadable(pos, size - pos, NOT_A_TFRECORD if pos == 0 else CORRUPT_FRAMING,
                             f"the record header at offset {pos} fails its length checksum; the remaining "
                             f"{size - pos} bytes cannot be framed")
            return
        (length,) = struct.unpack("<Q", length_bytes)
        end = pos + _HEADER + length + _FOOTER
        if end > size:
            yield Unreadable(pos, size - pos, TRUNCATED,
                             f"the record at offset {pos} declares {length} data bytes but the file ends "
                             f"{end - size} bytes short")
            return
        body = f.read(length + _FOOTER)
        if len(body) < length + _FOOTER:  # the file shrank while we read it
            yield Unreadable(pos, size - pos, TRUNCATED, f"short read at offset {pos}")
            return
        data = body[:length]
        (data_crc,) = struct.unpack("<I", body[length:])
        yield ScannedRecord(pos, data, not check_data_crc or masked_crc32c(data) == data_crc)
        pos = end
