"""Validate one serialized frame-level record and say what is wrong with a reason code.

Pure protobuf + numpy (fast: no TensorFlow ops), so the Beam job, the CLI and the tests
share exactly one definition of "a good record".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from yt8m import schema

# Reason codes (stable strings: they land in quarantine records and counts.json).
UNPARSABLE = "unparsable"
MISSING_ID = "missing_id"
WRONG_RGB_BYTES = "wrong_rgb_bytes"
WRONG_AUDIO_BYTES = "wrong_audio_bytes"
FRAME_COUNT_MISMATCH = "frame_count_mismatch"
ZERO_FRAMES = "zero_frames"
LABEL_OUT_OF_RANGE = "label_out_of_range"
REASONS = (UNPARSABLE, MISSING_ID, WRONG_RGB_BYTES, WRONG_AUDIO_BYTES, FRAME_COUNT_MISMATCH, ZERO_FRAMES,
           LABEL_OUT_OF_RANGE)


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


def parse_frame_level(serialized: bytes, num_classes: int, source: str = "") -> Video:
    """Parse and validate a frame-level SequenceExample; raise ``InvalidRecord`` if it is bad."""
    try:
        example = tf.train.SequenceExample.FromString(serialized)
    except Exception as exc:  # protobuf DecodeError and friends
        raise InvalidRecord(UNPARSABLE, f"not a SequenceExample ({type(exc).__name__})", source=source) from None
    ctx = example.context.feature
    ids = ctx["id"].bytes_list.value if "id" in ctx else []
    if len(ids) != 1 or not ids[0]:
        raise InvalidRecord(MISSING_ID, "context feature 'id' must hold one non-empty bytes value", source=source)
    video_id = ids[0].decode("utf-8", errors="replace")
    labels = tuple(ctx["labels"].int64_list.value) if "labels" in ctx else ()
    bad = [l for l in labels if not 0 <= l < num_classes]
    if bad:
        raise InvalidRecord(LABEL_OUT_OF_RANGE, f"labels {bad[:5]} outside [0, {num_classes})", video_id, source)
    lists = example.feature_lists.feature_list
    frames = {}
    for name, code in (("rgb", WRONG_RGB_BYTES), ("audio", WRONG_AUDIO_BYTES)):
        size = schema.FEATURE_SIZES[name]
        values = [f.bytes_list.value[0] if len(f.bytes_list.value) == 1 else b"" for f in lists[name].feature] \
            if name in lists else []
        wrong = next((i for i, v in enumerate(values) if len(v) != size), None)
        if wrong is not None:
            raise InvalidRecord(code, f"frame {wrong} of '{name}' has {len(values[wrong])} bytes, expected {size}",
                                video_id, source)
        frames[name] = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), size)
    if frames["rgb"].shape[0] != frames["audio"].shape[0]:
        raise InvalidRecord(FRAME_COUNT_MISMATCH,
                            f"{frames['rgb'].shape[0]} rgb frames but {frames['audio'].shape[0]} audio frames",
                            video_id, source)
    if frames["rgb"].shape[0] == 0:
        raise InvalidRecord(ZERO_FRAMES, "video has no frames", video_id, source)
    return Video(video_id, labels, frames["rgb"], frames["audio"])


def video_level_means(video: Video) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the dequantized rgb and audio frames (the video-level features)."""
    return (schema.dequantize(video.rgb).mean(axis=0, dtype=np.float64).astype(np.float32),
            schema.dequantize(video.audio).mean(axis=0, dtype=np.float64).astype(np.float32))
