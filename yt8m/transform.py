"""The tensorflow-transform graph of the dataset: video-level features and dataset statistics.

ONE ``preprocessing_fn`` (pure TensorFlow + tft, no Beam) that the Beam job analyzes over
every kept video (``tft_beam.AnalyzeDataset``) and saves beside the data as
``OUT/transform_fn/`` (``tft_beam.WriteTransformFn``). A trainer or a serving graph loads it
with ``tft.TFTransformOutput(path)`` (``yt8m.dataset.Dataset.transform_output()``) and
applies exactly the transform that produced the video-level shards.

Input: per-video SUFFICIENT STATISTICS of the frames, not the frames. For each video the
job computes (``yt8m.validation.frame_sums``, numpy, vectorized over the video's first 300
frames: the ONE frames rule, ``validation.feature_frames``) the exact integer sums of the
quantized values and of their squares per dimension, and the frame count:

    id [] bytes, labels (varlen int64), num_frames [] int64 (frames stored, all of them),
    rgb_sum / rgb_sum_sq [1024] int32, audio_sum / audio_sum_sq [128] int32

(``INPUT_FEATURES``; fed as Arrow RecordBatches, ``tensor_adapter_config()`` /
``record_batch()``). That is ~2x1152 small integers per video instead of ~300x1152 floats:
the analyzers and the transform cost almost nothing per video. Because dequantization is
affine (``x = a*q + b``), everything the old frame-level graph computed follows exactly:

* video-level means (the transform): ``mean = a * rgb_sum / n + b`` with ``n = min(num_frames,
  300)`` (``feature_frame_count``: the same rule in-graph), in float64, then float32;
* frame-level mean and variance per dimension (analyzers): ``tft.sum`` of the int64 sums, of
  the sums of squares and of ``n`` over all videos are EXACT integers, so
  ``mean_q = S/N``, ``var_q = SS/N - mean_q**2`` (float64: no catastrophic cancellation, the
  integers are exact and q is in [0, 255]) and ``mean = a*mean_q + b``, ``var = a**2 var_q``.

A serving graph that holds raw frame-level records computes the same inputs in-graph with
``raw_to_inputs`` (decoded SequenceExample tensors -> these inputs, first 300 frames), then
applies the transform_fn: the numpy and the in-graph sums are tested equal.

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

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from yt8m import schema

# ---- the raw frame-level record, as decoded by tfx_bsl (for raw_to_inputs and readers)
SEQUENCE = "##SEQUENCE##"
RGB_KEY = f"{SEQUENCE}.rgb"
AUDIO_KEY = f"{SEQUENCE}.audio"

# ---- the transform_fn's inputs (per-video sufficient statistics) and outputs
ID, LABELS, NUM_FRAMES = "id", "labels", "num_frames"
RGB_SUM, RGB_SUM_SQ, AUDIO_SUM, AUDIO_SUM_SQ = "rgb_sum", "rgb_sum_sq", "audio_sum", "audio_sum_sq"
SUM_FEATURES = ((RGB_SUM, schema.RGB_SIZE), (RGB_SUM_SQ, schema.RGB_SIZE), (AUDIO_SUM, schema.AUDIO_SIZE),
                (AUDIO_SUM_SQ, schema.AUDIO_SIZE))
INPUT_FEATURES = (ID, LABELS, NUM_FRAMES) + tuple(name for name, _ in SUM_FEATURES)
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


# ----------------------------------------------------------------------------- the inputs

def tensor_adapter_config():
    """Arrow schema + tensor representations of ``INPUT_FEATURES`` (what ``record_batch`` builds)."""
    import pyarrow as pa
    from tfx_bsl.tfxio import tensor_adapter

    fields = [pa.field(ID, pa.list_(pa.binary())), pa.field(LABELS, pa.list_(pa.int64())),
              pa.field(NUM_FRAMES, pa.list_(pa.int64()))]
    fields += [pa.field(name, pa.list_(pa.int32())) for name, _ in SUM_FEATURES]
    reps = {}
    for name, shape in [(ID, []), (NUM_FRAMES, [])] + [(n, [size]) for n, size in SUM_FEATURES]:
        rep = schema_pb2.TensorRepresentation()
        rep.dense_tensor.column_name = name
        for dim in shape:
            rep.dense_tensor.shape.dim.add().size = dim
        reps[name] = rep
    labels = schema_pb2.TensorRepresentation()
    labels.varlen_sparse_tensor.column_name = LABELS
    reps[LABELS] = labels
    return tensor_adapter.TensorAdapterConfig(pa.schema(fields), reps)


def record_batch(rows: Sequence[tuple]):
    """Per-video ``(video_id, labels, num_frames, rgb_sum, rgb_sum_sq, audio_sum, audio_sum_sq)`` -> RecordBatch.

    ``video_id`` str or bytes; the sums are the int32 vectors of ``validation.frame_sums``.
    Vectorized: one concatenation per column, no per-value Python work.
    """
    import pyarrow as pa

    n = len(rows)
    ids = [r[0].encode("utf-8") if isinstance(r[0], str) else bytes(r[0]) for r in rows]
    one = pa.array(np.arange(n + 1, dtype=np.int32))
    label_lists = [r[1] for r in rows]
    label_offsets = np.zeros(n + 1, np.int32)
    np.cumsum([len(x) for x in label_lists], out=label_offsets[1:])
    label_values = np.fromiter((v for x in label_lists for v in x), np.int64, count=int(label_offsets[-1]))
    columns = [pa.ListArray.from_arrays(one, pa.array(ids, pa.binary())),
               pa.ListArray.from_arrays(pa.array(label_offsets), pa.array(label_values)),
               pa.ListArray.from_arrays(one, pa.array(np.fromiter((r[2] for r in rows), np.int64, count=n)))]
    for i, (_, size) in enumerate(SUM_FEATURES):
        values = np.concatenate([np.asarray(r[3 + i], np.int32) for r in rows]) if n else np.zeros(0, np.int32)
        if values.size != n * size:
            raise ValueError(f"{SUM_FEATURES[i][0]}: expected {size} values per video")
        columns.append(pa.ListArray.from_arrays(pa.array(np.arange(0, n * size + 1, size, dtype=np.int32)),
                                                pa.array(values)))
    return pa.RecordBatch.from_arrays(columns, names=list(INPUT_FEATURES))


def first_frames(frames: tf.RaggedTensor, max_frames: int = schema.MAX_FRAMES) -> tf.RaggedTensor:
    """THE frames-beyond-300 rule in-graph: ``[videos, frames, ...]`` -> its first ``max_frames`` frames."""
    return frames[:, :max_frames]


def feature_frame_count(num_frames: tf.Tensor, max_frames: int = schema.MAX_FRAMES) -> tf.Tensor:
    """The same rule on a frame COUNT: how many frames the features see (``min(num_frames, 300)``)."""
    return tf.minimum(num_frames, tf.cast(max_frames, num_frames.dtype))


def decode_frames(frames: tf.RaggedTensor, size: int) -> tf.RaggedTensor:
    """``[videos, frames, 1]`` ragged byte strings -> ``[videos, frames, size]`` dequantized float32."""
    flat = tf.io.decode_raw(frames.flat_values, tf.uint8, fixed_length=size)
    values = schema.tf_dequantize(tf.cast(tf.reshape(flat, [-1, size]), tf.float32))
    return tf.RaggedTensor.from_row_lengths(values, frames.row_lengths())


def _quantized_sums(frames: tf.RaggedTensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    flat = tf.cast(tf.reshape(tf.io.decode_raw(frames.flat_values, tf.uint8, fixed_length=size), [-1, size]),
                   tf.int32)
    q = tf.RaggedTensor.from_row_lengths(flat, frames.row_lengths())
    return tf.reduce_sum(q, axis=1), tf.reduce_sum(q * q, axis=1)


def raw_to_inputs(raw: dict) -> dict:
    """Decoded raw frame-level features (``raw_schema()``: id, labels, ``RGB_KEY``, ``AUDIO_KEY``) -> the
    transform_fn's inputs, in-graph, with the same first-300-frames rule as ``validation.frame_sums``.

    For a serving graph given raw records: ``tft_output.transform_raw_features(raw_to_inputs(raw))``.
    """
    rgb, audio = first_frames(raw[RGB_KEY]), first_frames(raw[AUDIO_KEY])
    rgb_sum, rgb_sum_sq = _quantized_sums(rgb, schema.RGB_SIZE)
    audio_sum, audio_sum_sq = _quantized_sums(audio, schema.AUDIO_SIZE)
    return {ID: raw[ID], LABELS: raw[LABELS], NUM_FRAMES: tf.cast(raw[RGB_KEY].row_lengths(), tf.int64),
            RGB_SUM: rgb_sum, RGB_SUM_SQ: rgb_sum_sq, AUDIO_SUM: audio_sum, AUDIO_SUM_SQ: audio_sum_sq}


# ----------------------------------------------------------------------------- the graph

def _dequantized_mean(sums: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """Mean of the dequantized values from the integer sum of the quantized ones (float64 inside)."""
    return schema.dequantized_mean(tf.cast(sums, tf.float64), tf.cast(count, tf.float64))


def _frame_mean_var(total: tf.Tensor, total_sq: tf.Tensor, frames: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Frame-level mean and variance per dimension from EXACT int64 totals over every video."""
    count = tf.cast(tf.maximum(frames, 1), tf.float64)
    mean_q = tf.cast(total, tf.float64) / count
    var_q = tf.maximum(tf.cast(total_sq, tf.float64) / count - mean_q * mean_q, 0.0)
    mean = mean_q * schema.QUANTIZE_SCALE + schema.DEQUANTIZE_BIAS
    var = var_q * (schema.QUANTIZE_SCALE * schema.QUANTIZE_SCALE)
    return tf.cast(mean, tf.float32), tf.cast(var, tf.float32)


def _z_score(x: tf.Tensor, total: tf.Tensor, total_sq: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """``tft.scale_to_z_score(x, elementwise=True)`` from float64 totals of x and x**2 over the videos."""
    n = tf.cast(tf.maximum(count, 1), tf.float64)
    mean = total / n
    std = tf.sqrt(tf.maximum(total_sq / n - mean * mean, 0.0))
    centered = tf.cast(x, tf.float64) - mean
    return tf.cast(tf.where(tf.not_equal(std, 0.0), centered / std, centered), tf.float32)


def _split(packed: tf.Tensor, sizes: Sequence[int]) -> list[tf.Tensor]:
    out, start = [], 0
    for size in sizes:
        out.append(tf.reshape(packed[start:start + size], [size]))  # static shapes for the outputs
        start += size
    return out


def _broadcast(value, batch) -> tf.Tensor:
    value = tf.convert_to_tensor(value)
    value = tf.reshape(value, [1, -1]) if value.shape.rank != 0 else tf.reshape(value, [1])
    shape = tf.concat([[batch], tf.shape(value)[1:]], axis=0)
    return tf.broadcast_to(value, shape)


def make_preprocessing_fn(num_classes: int, quantile_buckets: int = DEFAULT_QUANTILE_BUCKETS):
    """The dataset's ``preprocessing_fn`` for ``num_classes`` labels (inputs: ``INPUT_FEATURES``)."""
    num_classes = int(num_classes)

    def preprocessing_fn(inputs):
        ids = inputs[ID]
        batch = tf.shape(ids)[0]
        num_frames = tf.cast(inputs[NUM_FRAMES], tf.int64)
        used = feature_frame_count(num_frames)  # frames the features see: the first 300
        mean_rgb64 = _dequantized_mean(inputs[RGB_SUM], used[:, None])
        mean_audio64 = _dequantized_mean(inputs[AUDIO_SUM], used[:, None])
        mean_rgb, mean_audio = tf.cast(mean_rgb64, tf.float32), tf.cast(mean_audio64, tf.float32)
        labels = inputs[LABELS]
        multi_hot = tf.math.bincount(tf.cast(tf.RaggedTensor.from_sparse(labels), tf.int32), minlength=num_classes,
                                     maxlength=num_classes, binary_output=True, axis=-1, dtype=tf.int64)
        # Few analyzers, each on a packed vector (every analyzer costs Beam stages and graph
        # tracing; the per-batch work is the same): ONE exact int64 sum of every integer
        # statistic, ONE float64 sum for the z-scores, ONE min (of n and -n), the quantiles.
        column = (lambda t: t[:, None])  # noqa: E731
        int_parts = [(tf.cast(inputs[name], tf.int64), size) for name, size in SUM_FEATURES]
        int_parts += [(column(used), 1), (column(num_frames), 1), (column(tf.ones_like(num_frames)), 1),
                      (multi_hot, num_classes)]
        totals = _split(tft.sum(tf.concat([t for t, _ in int_parts], axis=1), reduce_instance_dims=False),
                        [size for _, size in int_parts])
        rgb_total, rgb_total_sq, audio_total, audio_total_sq, frames_used, frames_total, videos, label_counts = totals
        rgb_mean, rgb_var = _frame_mean_var(rgb_total, rgb_total_sq, frames_used[0])
        audio_mean, audio_var = _frame_mean_var(audio_total, audio_total_sq, frames_used[0])
        float_parts = [mean_rgb64, mean_rgb64 * mean_rgb64, mean_audio64, mean_audio64 * mean_audio64]
        f_rgb, f_rgb_sq, f_audio, f_audio_sq = _split(
            tft.sum(tf.concat(float_parts, axis=1), reduce_instance_dims=False),
            [schema.RGB_SIZE, schema.RGB_SIZE, schema.AUDIO_SIZE, schema.AUDIO_SIZE])
        extremes = tft.min(tf.concat([column(num_frames), column(-num_frames)], axis=1), reduce_instance_dims=False)
        stats = {
            "rgb_frame_mean": rgb_mean, "rgb_frame_var": rgb_var,
            "audio_frame_mean": audio_mean, "audio_frame_var": audio_var,
            "label_counts": label_counts,
            "num_frames_quantiles": tf.reshape(
                tft.quantiles(tf.cast(num_frames, tf.float32), num_buckets=quantile_buckets,
                              epsilon=QUANTILE_EPSILON), [-1]),
            "num_frames_min": extremes[0],
            "num_frames_max": -extremes[1],
            "num_videos": videos[0],
            "num_frames_total": frames_total[0],
        }
        outputs = {
            ID: ids, LABELS: labels, NUM_FRAMES: num_frames, MEAN_RGB: mean_rgb, MEAN_AUDIO: mean_audio,
            MEAN_RGB_Z: _z_score(mean_rgb64, f_rgb, f_rgb_sq, videos[0]),
            MEAN_AUDIO_Z: _z_score(mean_audio64, f_audio, f_audio_sq, videos[0]),
        }
        outputs.update({STAT_PREFIX + k: _broadcast(v, batch) for k, v in stats.items()})
        return outputs

    return preprocessing_fn


def probe_features() -> dict:
    """One minimal valid input batch (1 video, 1 zero frame, no labels) for ``statistics``."""
    inputs = {ID: tf.constant([b"probe"]),
              LABELS: tf.sparse.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [1, 0]),
              NUM_FRAMES: tf.constant([1], tf.int64)}
    inputs.update({name: tf.zeros([1, size], tf.int32) for name, size in SUM_FEATURES})
    return inputs


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
