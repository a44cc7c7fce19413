"""Build and write YT8M-format records (frame-level SequenceExample, video-level Example).

Used by the synthetic generator, the Beam job and the tests. Sharded writing goes
through ``tf.io.TFRecordWriter`` so local paths and gs:// both work.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from yt8m import schema


def _bytes(values: Iterable[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel().tolist()))


def frame_level_example(
    video_id: str | bytes, labels: Sequence[int], rgb_uint8: np.ndarray, audio_uint8: np.ndarray
) -> tf.train.SequenceExample:
    """A frame-level SequenceExample from uint8 frames ``rgb [T, 1024]`` and ``audio [T, 128]``."""
    vid = video_id.encode() if isinstance(video_id, str) else video_id
    rgb = np.ascontiguousarray(rgb_uint8, dtype=np.uint8)
    audio = np.ascontiguousarray(audio_uint8, dtype=np.uint8)
    example = tf.train.SequenceExample()
    example.context.feature["id"].CopyFrom(_bytes([vid]))
    example.context.feature["labels"].CopyFrom(_int64(labels))
    rgb_list = example.feature_lists.feature_list["rgb"]
    audio_list = example.feature_lists.feature_list["audio"]
    for frame in rgb:
        rgb_list.feature.add().bytes_list.value.append(frame.tobytes())
    for frame in audio:
        audio_list.feature.add().bytes_list.value.append(frame.tobytes())
    return example


def video_level_example(
    video_id: str | bytes, labels: Sequence[int], mean_rgb: np.ndarray, mean_audio: np.ndarray, **extra_floats
) -> tf.train.Example:
    """A video-level Example (``mean_rgb`` [1024], ``mean_audio`` [128], optional extra float features)."""
    vid = video_id.encode() if isinstance(video_id, str) else video_id
    feature = {
        "id": _bytes([vid]),
        "labels": _int64(labels),
        "mean_rgb": _floats(mean_rgb),
        "mean_audio": _floats(mean_audio),
    }
    for name, values in extra_floats.items():
        feature[name] = _floats(values)
    return tf.train.Example(features=tf.train.Features(feature=feature))


class ShardedTFRecordWriter:
    """Round-robins records over ``num_shards`` files named ``{prefix}-{i:05d}-of-{n:05d}.tfrecord``."""

    def __init__(self, prefix: str, num_shards: int):
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        tf.io.gfile.makedirs(_dirname(prefix))
        self.paths = [f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
        self._writers = [tf.io.TFRecordWriter(p) for p in self.paths]
        self.count = 0

    def write(self, serialized: bytes) -> None:
        self._writers[self.count % len(self._writers)].write(serialized)
        self.count += 1

    def close(self) -> None:
        for w in self._writers:
            w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_tfrecords(path: str, serialized_records: Iterable[bytes]) -> int:
    """Write serialized records to one TFRecord file; returns the count."""
    tf.io.gfile.makedirs(_dirname(path))
    n = 0
    with tf.io.TFRecordWriter(path) as writer:
        for record in serialized_records:
            writer.write(record)
            n += 1
    return n


def _dirname(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "."
