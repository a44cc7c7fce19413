"""tf.data readers for YT8M frame-level and video-level TFRecords (local paths or gs://): THE input
pipeline, for evaluation, for training (``training_batches``) and for the reader benchmark.

Frame-level batches: ``{"rgb": [B, F, 1024], "audio": [B, F, 128], "num_frames": [B]}``
with frames dequantized exactly as the starter code; ``F = max_frames`` (truncate /
zero-pad) at evaluation, or ``F = num_samples`` frames sampled with replacement (in
temporal order) for training. Video-level batches: ``{"mean_rgb", "mean_audio"}`` (from the
shards' ``mean_*`` features, or their z-scored ``mean_*_z`` with ``video_features="standardized"``).
Labels are multi-hot float32 ``[B, num_classes]``. Bad records stop the reader with an
error that names the reason, the file and the video id.

Frame-level records are parsed one by one in parallel (a batched ``parse_sequence_example`` was
measured ~3x slower here), and a training example's frames (half video, samples, reversed order:
``augment.frame_indices``) are chosen as uint8 rows before dequantization, so only those frames
become floats. Training
batches are a function of ``(seed, epoch)``: files and records shuffled with that seed, repeated so
every batch is full; resuming skips the consumed records before they are parsed
(``benchmarks/bench_reader.py`` measures this path against a plain tf.data parse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import tensorflow as tf

from yt8m import augment, schema, storage

if TYPE_CHECKING:
    from yt8m import config as config_lib
    from yt8m import distill

CONTEXT_FEATURES = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "labels": tf.io.VarLenFeature(tf.int64),
}
SEQUENCE_FEATURES = {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in schema.FRAME_FEATURES}
# The model inputs of a video-level member, and the shard features they are read from.
VIDEO_FEATURE_KEYS = {
    "mean": {"mean_rgb": "mean_rgb", "mean_audio": "mean_audio"},
    "standardized": {"mean_rgb": "mean_rgb_z", "mean_audio": "mean_audio_z"},  # yt8m preprocess --standardized
}
VIDEO_FEATURE_SIZES = {"mean_rgb": schema.RGB_SIZE, "mean_audio": schema.AUDIO_SIZE}
# Training shuffle buffers, in records. Frame-level records are ~190 KB: a big buffer costs CPU (the records
# fall out of the cache before they are parsed; per thread here 1024 records: 0.63x, 128: 0.83x, 64: 0.94x
# the unshuffled speed; thirteenth session, the sampled training path against a plain tf.data parse: 256: 0.83x,
# 64: 0.88x, 16: 0.92x, none: 0.95x), and the mixing comes mostly from elsewhere: the preprocessing job writes its
# shards in an order unrelated to content (grouped by video id), the files are shuffled every epoch and 8 are
# read in turn, so a batch of 64 already spans 8 files. Video-level records are ~5 KB.
FRAME_SHUFFLE_BUFFER = 16
VIDEO_SHUFFLE_BUFFER = 4096


def video_feature_spec(video_features: str = "mean") -> dict:
    """``parse_example`` spec of a video-level shard: id, labels and the two features ``video_features`` names."""
    keys = VIDEO_FEATURE_KEYS[video_features]
    return {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64),
            **{keys[name]: tf.io.FixedLenFeature([size], tf.float32) for name, size in VIDEO_FEATURE_SIZES.items()}}


VIDEO_FEATURES = video_feature_spec("mean")


def _files(data: str | Sequence[str]) -> list[str]:
    return storage.expand_pattern(data) if isinstance(data, str) else list(data)


def in_validation_slice(serialized, every: int):
    """Whether a record is in the trainer's validation slice of 1 in ``every`` (``training.validation_every``):
    a hash of its bytes, so the same records whatever the file order, shuffling, epoch or rerun."""
    return tf.equal(tf.strings.to_hash_bucket_fast(serialized, every), 0)


def _records_with_source(files: list[str], shuffle_files: bool, seed: int | None,
                         deterministic: bool = True, validation_every: int = 0,
                         validation: bool = False) -> tf.data.Dataset:
    """(source file, serialized record) pairs, interleaved over (up to 8) files. With ``validation_every``
    only the records out of the validation slice (``in_validation_slice``), or in it with ``validation``.

    Remote files (gs://) are read by parallel interleave, which hides the storage latency; local ones
    by the plain interleave: there the parallel one only costs CPU (~8% per thread, measured here).
    """
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

    def read(path):
        records = tf.data.TFRecordDataset(path)
        if validation_every:
            records = records.filter(lambda r: tf.equal(in_validation_slice(r, validation_every), validation))
        return records.map(lambda record: (path, record))

    cycle = min(len(files), 8)
    if any("://" in path for path in files):
        return files_ds.interleave(read, cycle_length=cycle, num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=deterministic)
    return files_ds.interleave(read, cycle_length=cycle)


def _record_stream(files: list[str], training: bool, shuffle_buffer: int, repeat: bool,
                   seed: int | None, validation_every: int = 0) -> tf.data.Dataset:
    """(source, record) pairs: file order for evaluation; shuffled files and records for training; with
    ``validation_every`` only the validation slice's records."""
    ds = _records_with_source(files, shuffle_files=training, seed=seed, deterministic=not training,
                              validation_every=validation_every, validation=True)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds.repeat() if repeat else ds


def _check(condition, reason: str, ids, sources):
    """Fail with ``reason`` naming the offending videos and files (``condition`` is a [B] bool)."""
    bad = tf.logical_not(condition)
    return tf.debugging.Assert(
        tf.reduce_all(condition),
        [f"bad YT8M record: {reason}; file(s):", tf.boolean_mask(sources, bad), "video id(s):",
         tf.boolean_mask(ids, bad)],
        summarize=5,
    )


def multi_hot(labels: tf.SparseTensor, num_classes: int) -> tf.Tensor:
    """SparseTensor of label ids [B, ?] -> float32 multi-hot [B, num_classes]."""
    batch = tf.cast(labels.dense_shape[0], tf.int64)
    indices = tf.stack([labels.indices[:, 0], labels.values], axis=1)
    dense = tf.scatter_nd(indices, tf.ones_like(labels.values, tf.float32), tf.stack([batch, num_classes]))
    return tf.minimum(dense, 1.0)


def decode_frame_batch(serialized, max_frames: int = schema.MAX_FRAMES, num_classes: int | None = None,
                       sources=None, validate: bool = True):
    """Batched parse of frame-level SequenceExamples -> (ids, rgb, audio, num_frames, label ids).

    ``rgb``/``audio`` are float32 ``[B, max_frames, D]``, dequantized, zero beyond ``num_frames``.
    Used by the readers and, inside the exported graph, by the serving signature.
    """
    context, lists, lengths = tf.io.parse_sequence_example(serialized, CONTEXT_FEATURES, SEQUENCE_FEATURES)
    ids = context["id"]
    sources = tf.fill(tf.shape(ids), "<serving input>") if sources is None else sources
    checks = []
    if validate:
        checks.append(_check(tf.equal(lengths["rgb"], lengths["audio"]), "rgb/audio frame count mismatch", ids,
                             sources))
        checks.append(_check(lengths["rgb"] > 0, "zero frames", ids, sources))
        for name in schema.FRAME_FEATURES:
            size = schema.FEATURE_SIZES[name]
            frame_mask = tf.sequence_mask(lengths[name], tf.shape(lists[name])[1])
            ok = tf.reduce_all(tf.logical_or(tf.equal(tf.strings.length(lists[name]), size),
                                             tf.logical_not(frame_mask)), axis=1)
            checks.append(_check(ok, f"{name} frames must have {size} bytes", ids, sources))
        if num_classes is not None:
            in_range = tf.logical_and(context["labels"].values >= 0, context["labels"].values < num_classes)
            row_ok = tf.math.unsorted_segment_min(tf.cast(in_range, tf.int32), context["labels"].indices[:, 0],
                                                  tf.shape(ids, out_type=tf.int64)[0]) > 0
            checks.append(_check(row_ok, f"label outside [0, {num_classes})", ids, sources))
    with tf.control_dependencies(checks):
        num_frames = tf.minimum(tf.cast(tf.minimum(lengths["rgb"], lengths["audio"]), tf.int32), max_frames)
        features = {}
        for name in schema.FRAME_FEATURES:
            raw = lists[name][:, :max_frames]
            x = dequantize_frames(tf.io.decode_raw(raw, tf.uint8, fixed_length=schema.FEATURE_SIZES[name]))
            mask = tf.sequence_mask(num_frames, tf.shape(x)[1], dtype=tf.float32)[:, :, None]
            pad = max_frames - tf.shape(x)[1]
            features[name] = tf.pad(x * mask, [[0, 0], [0, pad], [0, 0]])
            features[name].set_shape([None, max_frames, schema.FEATURE_SIZES[name]])
        labels = context["labels"]
        labels = tf.SparseTensor(labels.indices, tf.identity(labels.values), labels.dense_shape)
    return ids, features["rgb"], features["audio"], num_frames, labels


def video_means(quantized_sums: dict, count) -> dict:
    """``{"mean_rgb", "mean_audio"}`` float32 from the exact integer sums of the quantized frame values
    (``quantized_sums``: ``{"rgb": [..., 1024], "audio": [..., 128]}``) over ``count`` frames (``[...]`` or a
    scalar, broadcast over the last axis): ``schema.dequantized_mean``, rounded once to float32."""
    n = tf.cast(count, tf.float64)
    n = n[..., None] if n.shape.rank else n
    return {f"mean_{name}": tf.cast(schema.dequantized_mean(tf.cast(quantized_sums[name], tf.float64), n),
                                    tf.float32) for name in schema.FRAME_FEATURES}


def dequantize_frames(quantized):
    """uint8 frame values (any shape) -> float32: ``schema.tf_dequantize``'s values bit for bit (a test checks
    every byte), by TensorFlow's Dequantize kernel (``MIN_COMBINED`` over ``[b, b + 4]``: ``b + q * 4/255``),
    ~9x faster per value here than the cast, multiply and add it replaces."""
    low = schema.DEQUANTIZE_BIAS
    return tf.quantization.dequantize(tf.bitcast(quantized, tf.quint8), low,
                                      low + (schema.MAX_QUANTIZED_VALUE - schema.MIN_QUANTIZED_VALUE),
                                      mode="MIN_COMBINED")


def dequantize_batch(features: dict, labels):
    """A batch of ``parse_frame_record(..., dequantize=False)`` examples with its uint8 frames dequantized
    (one Dequantize kernel per batch: cheaper than per record, and the batch copies uint8, not floats)."""
    return {**features, **{name: dequantize_frames(features[name]) for name in schema.FRAME_FEATURES}}, labels


def frame_means(rgb, audio, num_frames, quantized: bool = True) -> dict:
    """Video-level features of decoded frames ``[B, F, D]``: means of the first ``MAX_FRAMES`` valid frames.

    ``quantized`` (frames decoded from YT8M records, the serving signature on records and the tests): each
    dequantized value is mapped back to its uint8 level (exact: ``round((x - b) / a)`` recovers every level)
    and the means are ``video_means`` of the integer sums, the arithmetic of the video-level shards
    (``yt8m.transform``) and of the trainer's reader (``parse_frame_means``): the same bits. Otherwise
    (``predict_features``, float frames that need not lie on the quantization grid): the float32 values summed
    in float64, divided by the count in float64, rounded once to float32. Frames beyond ``num_frames`` are
    masked out.
    """
    rgb, audio = rgb[:, :schema.MAX_FRAMES], audio[:, :schema.MAX_FRAMES]
    n = tf.minimum(tf.cast(num_frames, tf.int32), schema.MAX_FRAMES)
    valid = tf.sequence_mask(n, tf.shape(rgb)[1])[:, :, None]
    if quantized:
        def level_sum(x):
            levels = tf.cast(tf.round((x - schema.DEQUANTIZE_BIAS) / schema.QUANTIZE_SCALE), tf.int32)
            return tf.reduce_sum(tf.where(valid, levels, 0), axis=1)

        return video_means({"rgb": level_sum(rgb), "audio": level_sum(audio)}, tf.maximum(n, 1))
    mask = tf.cast(valid, tf.float64)
    denom = tf.maximum(tf.cast(n, tf.float64), 1.0)[:, None]

    def mean(x):
        return tf.cast(tf.reduce_sum(tf.cast(x, tf.float64) * mask, axis=1) / denom, tf.float32)

    return {"mean_rgb": mean(rgb), "mean_audio": mean(audio)}


def _check_one(condition, reason: str, video_id, source):
    return tf.debugging.Assert(condition, [f"bad YT8M record: {reason}; file:", source, "video id:", video_id])


def _multi_hot_row(labels, num_classes: int):
    """Label ids of one video -> float32 multi-hot ``[num_classes]`` (repeats count once)."""
    ones = tf.ones_like(labels, tf.float32)
    return tf.minimum(tf.scatter_nd(labels[:, None], ones, [num_classes]), 1.0)


def _parse_and_check(source, serialized, num_classes: int):
    """Parse ONE frame-level record -> (video id, label ids, rgb and audio frame bytes, the record checks)."""
    context, lists = tf.io.parse_single_sequence_example(serialized, CONTEXT_FEATURES, SEQUENCE_FEATURES)
    video_id, labels = context["id"], context["labels"].values
    rgb, audio = lists["rgb"], lists["audio"]
    total = tf.shape(rgb)[0]
    checks = [
        _check_one(tf.equal(total, tf.shape(audio)[0]), "rgb/audio frame count mismatch", video_id, source),
        _check_one(total > 0, "zero frames", video_id, source),
        _check_one(tf.reduce_all(tf.equal(tf.strings.length(rgb), schema.RGB_SIZE)),
                   f"rgb frames must have {schema.RGB_SIZE} bytes", video_id, source),
        _check_one(tf.reduce_all(tf.equal(tf.strings.length(audio), schema.AUDIO_SIZE)),
                   f"audio frames must have {schema.AUDIO_SIZE} bytes", video_id, source),
        _check_one(tf.reduce_all((labels >= 0) & (labels < num_classes)), f"label outside [0, {num_classes})",
                   video_id, source),
    ]
    return video_id, labels, rgb, audio, checks


def parse_frame_record(source, serialized, num_classes: int, max_frames: int = schema.MAX_FRAMES,
                       num_samples: int = 0, seed: int | None = None, half_prob: float = 0.0,
                       reverse_prob: float = 0.0, dequantize: bool = True):
    """Parse, validate and decode ONE frame-level record -> (features with ``video_id``, multi-hot labels).

    The video's first ``max_frames`` frames are kept (zero-padded to ``max_frames``), or, for training,
    the frames ``augment.frame_indices`` picks (a half, ``num_samples`` samples with replacement, the
    reversed order) as uint8 rows BEFORE dequantization, so only the frames used become floats.
    ``dequantize=False`` (with ``num_samples``: every example has exactly that many frames, no padding)
    leaves the frames uint8, for ``dequantize_batch`` after batching.
    """
    if not dequantize and not num_samples:
        raise ValueError("dequantize=False needs num_samples (padding frames must dequantize to zeros)")
    video_id, labels, rgb, audio, checks = _parse_and_check(source, serialized, num_classes)
    with tf.control_dependencies(checks):
        num_frames = tf.minimum(tf.shape(rgb)[0], max_frames)
        idx = None
        if num_samples or half_prob or reverse_prob:
            idx = augment.frame_indices(num_frames, half_prob, reverse_prob, num_samples, seed)
            num_frames = tf.size(idx, out_type=tf.int32)
        length = num_samples or max_frames
        features = {"num_frames": num_frames}
        for name, frames in (("rgb", rgb), ("audio", audio)):
            q = tf.io.decode_raw(frames[:max_frames], tf.uint8)  # the stored bytes, as uint8 [frames, D]
            if idx is not None:  # pick uint8 rows: gathering the bytes strings instead measured ~15% slower
                q = tf.gather(q, idx)
            x = dequantize_frames(q) if dequantize else q
            x = tf.pad(x, [[0, length - tf.shape(x)[0]], [0, 0]])
            x.set_shape([length, schema.FEATURE_SIZES[name]])
            features[name] = x
        features["video_id"] = video_id
        return features, _multi_hot_row(tf.identity(labels), num_classes)


def parse_frame_means(source, serialized, num_classes: int):
    """Parse and validate ONE frame-level record -> (its video-level features with ``video_id``, multi-hot
    labels): the means of its first ``MAX_FRAMES`` frames from the exact integer sums of their uint8 values
    (``video_means``: the video-level shards' arithmetic, bit for bit; no frame is dequantized)."""
    video_id, labels, rgb, audio, checks = _parse_and_check(source, serialized, num_classes)
    with tf.control_dependencies(checks):
        count = tf.minimum(tf.shape(rgb)[0], schema.MAX_FRAMES)
        sums = {name: tf.reduce_sum(tf.cast(tf.io.decode_raw(frames[:schema.MAX_FRAMES], tf.uint8), tf.int32), axis=0)
                for name, frames in (("rgb", rgb), ("audio", audio))}
        features = video_means(sums, count)
        for name in VIDEO_FEATURE_SIZES:
            features[name].set_shape([VIDEO_FEATURE_SIZES[name]])
        features["video_id"] = video_id
        return features, _multi_hot_row(tf.identity(labels), num_classes)


def frame_level_dataset(data: str | Sequence[str], num_classes: int, batch_size: int, *, training: bool = False,
                        max_frames: int = schema.MAX_FRAMES, num_samples: int | None = None,
                        include_ids: bool = False, shuffle_buffer: int = FRAME_SHUFFLE_BUFFER, repeat: bool = False,
                        seed: int | None = None, mean_pool: bool = False,
                        validation_every: int = 0) -> tf.data.Dataset:
    """Batches of frame-level features and multi-hot labels (with ``validation_every``: of the records in
    that validation slice only, ``in_validation_slice``).

    ``training``: shuffle files and records; if ``num_samples`` is set, sample that many
    frames with replacement per video. Evaluation (default) keeps file order and every
    frame up to ``max_frames``. ``mean_pool``: the video-level features of those frames
    (a video-level family on frame-level data, as the serving graph computes them).
    """
    ds = _record_stream(_files(data), training, shuffle_buffer, repeat, seed, validation_every)

    def parse(source, serialized):
        if mean_pool:
            features, labels = parse_frame_means(source, serialized, num_classes)
        else:
            features, labels = parse_frame_record(source, serialized, num_classes, max_frames, num_samples or 0, seed)
        if not include_ids:
            features.pop("video_id")
        return features, labels

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def decode_video_batch(sources, serialized, num_classes: int, video_features: str = "mean"):
    """Batched parse of video-level Examples -> (ids, ``{"mean_rgb", "mean_audio"}``, multi-hot labels).

    ``video_features="standardized"`` reads the z-scored ``mean_rgb_z`` / ``mean_audio_z`` as the
    member's ``mean_rgb`` / ``mean_audio`` inputs.
    """
    parsed = tf.io.parse_example(serialized, video_feature_spec(video_features))
    labels = parsed["labels"]
    in_range = tf.logical_and(labels.values >= 0, labels.values < num_classes)
    check = tf.debugging.Assert(
        tf.reduce_all(in_range),
        [f"bad YT8M record: label outside [0, {num_classes}); file(s):",
         tf.gather(sources, labels.indices[:, 0]), "video id(s):",
         tf.boolean_mask(tf.gather(parsed["id"], labels.indices[:, 0]), tf.logical_not(in_range))],
        summarize=5)
    keys = VIDEO_FEATURE_KEYS[video_features]
    with tf.control_dependencies([check]):
        features = {name: tf.identity(parsed[key]) for name, key in keys.items()}
    return parsed["id"], features, multi_hot(labels, num_classes)


def video_level_dataset(data: str | Sequence[str], num_classes: int, batch_size: int, *, training: bool = False,
                        include_ids: bool = False, shuffle_buffer: int = VIDEO_SHUFFLE_BUFFER, repeat: bool = False,
                        seed: int | None = None, video_features: str = "mean",
                        validation_every: int = 0) -> tf.data.Dataset:
    """Batches of video-level features ``{"mean_rgb", "mean_audio"}`` and multi-hot labels (with
    ``validation_every``: of that validation slice's records only)."""
    ds = _record_stream(_files(data), training, shuffle_buffer, repeat, seed, validation_every).batch(batch_size)

    def decode(sources, serialized):
        ids, features, labels = decode_video_batch(sources, serialized, num_classes, video_features)
        if include_ids:
            features["video_id"] = ids
        return features, labels

    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------- training


def training_batches(files: list[str], data_format: str, input_level: str, num_classes: int,
                     t: "config_lib.TrainingConfig", epoch: int = 0, skip_batches: int = 0,
                     batches: int | None = None, teacher: "distill.TeacherTable | None" = None,
                     records: int | None = None, include_ids: bool = False) -> tf.data.Dataset:
    """Epoch ``epoch``'s training batches ``(features, {"labels"[, "teacher"]})``: ``batches - skip_batches``
    full batches of ``t.batch_size``.

    ``data_format`` is what the files hold (``"frame"`` SequenceExamples or ``"video"`` Examples),
    ``input_level`` what the family eats (a video-level family on frame data gets the frames' means).
    Per record: parse, check, pick the frames (half video, samples, reversed: ``t``) and dequantize only
    those (a video-level family on frame data: the frames' means, ``parse_frame_means``). Per batch: the teacher's scores joined by video id (``teacher``), mixup (video-level).
    The record stream is a function of ``(t.seed, epoch)``; ``skip_batches`` batches' records (a
    resumed run's consumed ones) are skipped before they are parsed.
    """
    seed = t.seed * 1_000_003 + epoch
    buffer = FRAME_SHUFFLE_BUFFER if data_format == "frame" else VIDEO_SHUFFLE_BUFFER
    buffer = min(buffer, records) if records else buffer  # a bigger buffer only holds repeats
    stream = _records_with_source(list(files), shuffle_files=True, seed=seed,
                                  validation_every=t.validation_every)  # training: the records out of the slice
    stream = stream.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    if skip_batches:
        stream = stream.skip(skip_batches * t.batch_size)
    if data_format == "frame":
        frame_level = input_level == "frame"
        max_frames = min(t.max_frames, schema.MAX_FRAMES)
        # Sampled frames (a fixed count per example): uint8 through the batch, dequantized per batch (0.77x ->
        # 0.92x a plain tf.data parse per thread, measured side by side); every frame: per record (padding
        # must be zeros; a padded uint8 batch dequantized and masked measured slower, 0.82x -> 0.75x).
        per_batch = frame_level and t.num_samples > 0
        recipe = (t.num_samples, seed, t.half_video_prob, t.reverse_prob, not per_batch)

        def parse(source, serialized):
            if frame_level:
                return parse_frame_record(source, serialized, num_classes, max_frames, *recipe)
            return parse_frame_means(source, serialized, num_classes)

        ds = stream.map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(t.batch_size, drop_remainder=True)
        if per_batch:
            ds = ds.map(dequantize_batch, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        def decode(sources, serialized):
            ids, features, labels = decode_video_batch(sources, serialized, num_classes, t.video_features)
            return {**features, "video_id": ids}, labels

        ds = stream.batch(t.batch_size, drop_remainder=True).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if batches is not None:
        ds = ds.take(max(batches - skip_batches, 0))
    mixup = input_level == "video" and t.mixup_prob > 0

    def targets_of(features, labels):
        targets = {"labels": labels}
        ids = features["video_id"] if include_ids else features.pop("video_id")
        if teacher is not None:
            targets["teacher"] = teacher.targets(ids, labels)
        if mixup:
            features, targets, _, _ = augment.mixup(features, targets, t.mixup_alpha, t.mixup_prob, seed=seed)
        return features, targets

    return ds.map(targets_of, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def evaluation_batches(files: list[str], data_format: str, input_level: str, num_classes: int,
                       t: "config_lib.TrainingConfig", validation: bool = False) -> tf.data.Dataset:
    """Evaluation batches in file order with ``video_id`` among the features; frames are mean-pooled
    for video-level families on frame-level data. ``validation``: the trainer's validation slice of
    ``files`` only (``t.validation_every``)."""
    every = t.validation_every if validation else 0
    if data_format == "video":
        return video_level_dataset(files, num_classes, t.eval_batch_size, include_ids=True,
                                   video_features=t.video_features, validation_every=every)
    max_frames = min(t.max_frames, schema.MAX_FRAMES) if input_level == "frame" else schema.MAX_FRAMES
    return frame_level_dataset(files, num_classes, t.eval_batch_size, max_frames=max_frames, include_ids=True,
                               mean_pool=input_level == "video", validation_every=every)


def detect_format(files: list[str]) -> str:
    """``"frame"`` (SequenceExamples with ``rgb`` frames) or ``"video"`` (Examples with ``mean_rgb``)."""
    for path in files:
        for raw in tf.data.TFRecordDataset(path).take(1).as_numpy_iterator():
            if "rgb" in tf.train.SequenceExample.FromString(raw).feature_lists.feature_list:
                return "frame"
            if "mean_rgb" in tf.train.Example.FromString(raw).features.feature:
                return "video"
            raise ValueError(f"{path}: neither a frame-level SequenceExample (rgb, audio) nor a video-level "
                             "Example (mean_rgb, mean_audio)")
    raise ValueError(f"no records in {len(files)} file(s) (first: {files[0] if files else '-'})")


def count_records(files: list[str]) -> int:
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(files), 8))
    return int(ds.reduce(np.int64(0), lambda count, _: count + 1).numpy())


def read_id_labels(data: str | Sequence[str]) -> dict[str, list[int]]:
    """``{video id: label ids}`` of frame-level OR video-level records.

    A SequenceExample's ``context`` and an Example's ``features`` are both field 1 of type
    Features, so parsing either as an Example yields ``id`` and ``labels``.
    """
    out: dict[str, list[int]] = {}
    where: dict[str, tuple[str, int]] = {}
    for path in _files(data):
        for index, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            feature = tf.train.Example.FromString(raw).features.feature
            ids = feature["id"].bytes_list.value if "id" in feature else []
            if len(ids) != 1:
                from yt8m import record_check, validation

                problem = record_check.Problem(validation.MISSING_ID, "the record has no video id", path, index)
                raise ValueError(problem.line())
            video_id = ids[0].decode()
            if video_id in out:  # scoring it once would silently drop the other copy's labels
                first_path, first_index = where[video_id]
                raise ValueError(f"duplicate video id {video_id!r}: record {index} of {path} and record "
                                 f"{first_index} of {first_path}")
            out[video_id] = list(feature["labels"].int64_list.value) if "labels" in feature else []
            where[video_id] = (path, index)
    return out
