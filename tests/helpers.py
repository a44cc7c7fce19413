"""Test data builders shared by the tests."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from yt8m import writers


def random_video(rng: np.random.Generator, video_id: str, num_frames: int, num_classes: int, labels=None):
    rgb = rng.integers(0, 256, (num_frames, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (num_frames, 128), dtype=np.uint8)
    if labels is None:
        labels = sorted(rng.choice(num_classes, size=rng.integers(1, 4), replace=False).tolist())
    return video_id, labels, rgb, audio


def write_videos(path: str, videos) -> list[bytes]:
    records = [writers.frame_level_example(*v).SerializeToString() for v in videos]
    writers.write_tfrecords(path, records)
    return records


def independent_sequence_example(video_id: bytes, labels, rgb: np.ndarray, audio: np.ndarray) -> bytes:
    """A frame-level record built field by field from the proto API (not with yt8m.writers)."""
    ex = tf.train.SequenceExample()
    ex.context.feature["id"].bytes_list.value.append(video_id)
    ex.context.feature["labels"].int64_list.value.extend(labels)
    for frame in rgb:
        ex.feature_lists.feature_list["rgb"].feature.add().bytes_list.value.append(bytes(frame))
    for frame in audio:
        ex.feature_lists.feature_list["audio"].feature.add().bytes_list.value.append(bytes(frame))
    return ex.SerializeToString()
