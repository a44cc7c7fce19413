"""The tensorflow-transform graph of the dataset: video-level features and dataset statistics.

ONE ``preprocessing_fn`` (pure TensorFlow + tft, no Beam) that the Beam job analyzes over
every kept frame-level record (``tft_beam.AnalyzeDataset``) and saves beside the data as
``OUT/transform_fn/`` (``tft_beam.WriteTransformFn``). A trainer or a serving graph loads it
with ``tft.TFTransformOutput(path)`` (``yt8m.dataset.Dataset.transform_output()``) and
applies exactly the transform that produced the video-level shards.

Input: serialized frame-level SequenceExamples decoded by tfx_bsl's
``TFSequenceExampleRecord`` with ``raw_schema()``: context ``id`` (dense bytes), ``labels``
(SparseTensor int64) and the sequence features ``##SEQUENCE##.rgb`` / ``.audio``
(RaggedTensor [videos, frames, 1] of 1024- / 128-byte strings, the record bytes as stored).

Frames beyond ``schema.MAX_FRAMES`` (300): ``first_frames`` keeps the first 300, the same
rule as ``yt8m.validation.feature_frames``, the readers and the serving graph.
Dequantization is ``schema.tf_dequantize`` (the starter code's ``q * 4/255 + 4/512 - 2``,
on float32), means accumulate in float64.

Outputs per video (what the job writes into the video-level shards):
``id``, ``labels``, ``num_frames`` (frames stored, all of them), ``mean_rgb`` [1024],
``mean_audio`` [128] (means of the first 300 dequantized frames), and the z-scored
``mean_rgb_z`` / ``mean_audio_z`` (per dimension, over videos; written only on request).

Statistics (analyzers; constants of the saved graph, read back by ``statistics()``):
per-dimension mean and variance of the dequantized rgb and audio FRAMES (first 300 of each
video), the number of videos per class (label frequencies), frame-count quantiles, min,
max, the number of videos and of frames. They are ``STAT_OUTPUTS`` of the graph: each is
the constant broadcast over the batch; the job excludes them when it transforms the data
(so they cost nothing per record), and ``statistics()`` reads them by transforming one
probe record. (Schema annotations, TFT's other channel for such values, are not available
in the OSS build of tensorflow-transform 1.21: ``common.IS_ANNOTATIONS_PB_AVAILABLE`` is
False, so they are silently dropped.)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from yt8m import schema

SEQUENCE = "##SEQUENCE##"
RGB_KEY = f"{SEQUENCE}.rgb"
AUDIO_KEY = f"{SEQUENCE}.audio"

ID, LABELS, NUM_FRAMES = "id", "labels", "num_frames"
MEAN_RGB, MEAN_AUDIO = "mean_rgb", "mean_audio"
MEAN_RGB_Z, MEAN_AUDIO_Z = "mean_rgb_z", "mean_audio_z"
STANDARDIZED_OUTPUTS = (MEAN_RGB_Z, MEAN_AUDIO_Z)

STAT_PREFIX = "stat_"
STAT_OUTPUTS = tuple(STAT_PREFIX + name for name in (
    "rgb_frame_mean", "rgb_frame_var", "audio_frame_mean", "audio_frame_var", "label_counts",
    "num_frames_quantiles", "num_frames_min", "num_frames_max", "num_videos", "num_frames_total"))
DEFAULT_QUANTILE_BUCKETS = 10
QUANTILE_EPSILON = 0.001

_RAW_SCHEMA = """
feature { name: "id" type: BYTES value_count { min: 1 max: 1 } }
feature { name: "labels" type: INT }
feature {
  name: "##SEQUENCE##" type: STRUCT
  struct_domain {
    feature { name: "rgb" type: BYTES }
    feature { name: "audio" type: BYTES }
  }
}
tensor_representation_group {
  key: ""
  value { tensor_representation { key: "id" value { dense_tensor { column_name: "id" shape {} } } } }
}
"""


def raw_schema() -> schema_pb2.Schema:
    """The tf.metadata schema of a frame-level record, for ``tfxio.TFSequenceExampleRecord``."""
    return text_format.Parse(_RAW_SCHEMA, schema_pb2.Schema())


def first_frames(frames: tf.RaggedTensor, max_frames: int = schema.MAX_FRAMES) -> tf.RaggedTensor:
    """THE frames-beyond-300 rule in-graph: ``[videos, frames, ...]`` -> its first ``max_frames`` frames."""
    return frames[:, :max_frames]


def decode_frames(frames: tf.RaggedTensor, size: int) -> tf.RaggedTensor:
    """``[videos, frames, 1]`` ragged byte strings -> ``[videos, frames, size]`` dequantized float32."""
    flat = tf.io.decode_raw(frames.flat_values, tf.uint8, fixed_length=size)
    values = schema.tf_dequantize(tf.cast(tf.reshape(flat, [-1, size]), tf.float32))
    return tf.RaggedTensor.from_row_lengths(values, frames.row_lengths())


def _video_mean(frames: tf.RaggedTensor) -> tf.Tensor:
    return tf.cast(tf.reduce_mean(tf.cast(frames, tf.float64), axis=1), tf.float32)


def _broadcast(value, batch) -> tf.Tensor:
    value = tf.convert_to_tensor(value)
    value = tf.reshape(value, [1, -1]) if value.shape.rank != 0 else tf.reshape(value, [1])
    shape = tf.concat([[batch], tf.shape(value)[1:]], axis=0)
    return tf.broadcast_to(value, shape)


def make_preprocessing_fn(num_classes: int, quantile_buckets: int = DEFAULT_QUANTILE_BUCKETS):
    """The dataset's ``preprocessing_fn`` for ``num_classes`` labels."""
    num_classes = int(num_classes)

    def preprocessing_fn(inputs):
        ids = inputs[ID]
        batch = tf.shape(ids)[0]
        stored = inputs[RGB_KEY]
        num_frames = stored.row_lengths()
        rgb = decode_frames(first_frames(stored), schema.RGB_SIZE)
        audio = decode_frames(first_frames(inputs[AUDIO_KEY]), schema.AUDIO_SIZE)
        mean_rgb, mean_audio = _video_mean(rgb), _video_mean(audio)
        labels = inputs[LABELS]
        multi_hot = tf.math.bincount(tf.cast(tf.RaggedTensor.from_sparse(labels), tf.int32), minlength=num_classes,
                                     maxlength=num_classes, binary_output=True, axis=-1, dtype=tf.int64)
        frames_f = tf.cast(num_frames, tf.float32)
        stats = {
            "rgb_frame_mean": tft.mean(rgb.flat_values, reduce_instance_dims=False),
            "rgb_frame_var": tft.var(rgb.flat_values, reduce_instance_dims=False),
            "audio_frame_mean": tft.mean(audio.flat_values, reduce_instance_dims=False),
            "audio_frame_var": tft.var(audio.flat_values, reduce_instance_dims=False),
            "label_counts": tft.sum(multi_hot, reduce_instance_dims=False),
            "num_frames_quantiles": tf.reshape(
                tft.quantiles(frames_f, num_buckets=quantile_buckets, epsilon=QUANTILE_EPSILON), [-1]),
            "num_frames_min": tft.min(num_frames),
            "num_frames_max": tft.max(num_frames),
            "num_videos": tft.size(ids),
            "num_frames_total": tft.sum(num_frames),
        }
        outputs = {
            ID: ids, LABELS: labels, NUM_FRAMES: num_frames, MEAN_RGB: mean_rgb, MEAN_AUDIO: mean_audio,
            MEAN_RGB_Z: tft.scale_to_z_score(mean_rgb, elementwise=True),
            MEAN_AUDIO_Z: tft.scale_to_z_score(mean_audio, elementwise=True),
        }
        outputs.update({STAT_PREFIX + k: _broadcast(v, batch) for k, v in stats.items()})
        return outputs

    return preprocessing_fn


def probe_features() -> dict:
    """One minimal valid raw input batch (1 video, 1 zero frame, no labels) for ``statistics``."""
    def frames(size):
        return tf.RaggedTensor.from_row_lengths(
            tf.RaggedTensor.from_row_lengths(tf.constant([b"\0" * size]), tf.constant([1], tf.int64)),
            tf.constant([1], tf.int64))

    return {ID: tf.constant([b"probe"]),
            LABELS: tf.sparse.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [1, 0]),
            RGB_KEY: frames(schema.RGB_SIZE), AUDIO_KEY: frames(schema.AUDIO_SIZE)}


def statistics(tft_output: tft.TFTransformOutput | str) -> dict[str, np.ndarray]:
    """The analyzers' values saved in a transform_fn: ``{name without "stat_": numpy array}``."""
    if isinstance(tft_output, str):
        tft_output = tft.TFTransformOutput(tft_output)
    out = tft_output.transform_raw_features(probe_features(), drop_unused_features=False)
    result = {}
    for key in STAT_OUTPUTS:
        value = out[key]
        value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        result[key[len(STAT_PREFIX):]] = value[0]
    return result
