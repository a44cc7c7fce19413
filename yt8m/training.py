"""Train model configs: the K-fold member of the pipeline (``train_member``) and one config on
given TFRecords (``train_single``, the ``yt8m train`` verb).

``train_member`` / ``train_fold`` / ``train_final`` read the preprocessing job's output through its
ONE owner, ``yt8m.dataset.Dataset.open(DIR)`` (``dataset.json``: the files of each split and level,
the folds, the classes, the counts; never a glob of the folders or a hand-built split name), and
write into ``output_dir``:

- ``oof_predictions.npz`` (top-k sparse, keyed by video id) and ``holdout_predictions.npz``
- ``model.weights.h5`` + ``model_config.yaml`` (the member, rebuilt by the ensembler)
- ``saved_model/`` (this member alone, serving serialized SequenceExamples)
- ``metrics.json`` (OOF and holdout GAP@20, Hit@1, PERR, mAP; examples/s; parameters)
- ``tensorboard/<fold-k|final>/`` (checkpoints live in ``checkpoints/`` while it runs)

Features are the ones the serving graph computes from raw records (``yt8m.export``): a video-level
family trains on the job's video-level shards (the means of the FIRST 300 dequantized frames, from the
dataset's tensorflow-transform graph, ``yt8m.transform``), which the serving graph recomputes with the
same rule (``export.video_features``); a frame-level family sees the reader's frames, at most the first
300 (``yt8m.validation.feature_frames``; ``export.member_max_frames``).

The training loop (``Trainer``) is a small custom loop under a ``tf.distribute`` strategy
(``MirroredStrategy`` with more than one GPU, the default strategy otherwise):

- BCE on sigmoid outputs on the references' scale (summed over classes, averaged over the batch:
  ``distill.bce``) + the family's own L2 terms (slim's ``l2 * sum(w^2) / 2``), Adam (TF1 epsilon
  1e-8) with WILLOW's schedule (the learning rate times ``lr_decay`` every ``lr_decay_examples``
  examples), per-tensor gradient clipping; ``mixed_float16`` with a loss-scale optimizer when a GPU is visible (outputs cast
  to float32 before the loss), float32 on CPU.
- Recipes (``TrainingConfig``): frame sampling with replacement, random half-video and
  reversed order (frame-level), mixup (video-level), EMA of the weights after a start step
  (the evaluated and exported weights are then the EMA weights), distillation from a teacher's
  top-k predictions looked up by video id.
- A deterministic number of steps: ``epochs * steps_per_epoch`` with ``steps_per_epoch``
  from the config or ``ceil(records / batch_size)`` (every batch is full: each epoch's stream
  repeats). Checkpoints every ``checkpoint_every_steps`` and at the end (``yt8m.checkpoints``);
  a killed run restarted with the same output resumes from the last checkpoint (step,
  weights, optimizer, EMA, and the data position: the epoch's shuffled record stream is
  rebuilt with the same seed and the consumed records are skipped before decoding).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import time
import zlib

import keras
import numpy as np
import tensorflow as tf

from yt8m import augment, checkpoints, distill, export, metrics, predictions, readers, storage
from yt8m import config as config_lib
from yt8m import dataset as dataset_lib
from yt8m.models import registry

log = logging.getLogger(__name__)

FRAME_SHUFFLE_BUFFER = 1024
VIDEO_SHUFFLE_BUFFER = 4096


# ----------------------------------------------------------------------------------------- data


def open_dataset(dataset_dir: str, num_classes: int | None = None, folds: int | None = None) -> dataset_lib.Dataset:
    """The preprocessed dataset in ``dataset_dir`` (``Dataset.open``); ``num_classes`` / ``folds``, when
    given (e.g. from a pipeline artifact's metadata), must be what its ``dataset.json`` says."""
    ds = dataset_lib.Dataset.open(dataset_dir)
    for what, given, actual in (("num_classes", num_classes, ds.num_classes), ("folds", folds, ds.folds)):
        if given is not None and int(given) != actual:
            raise dataset_lib.DatasetError(f"{ds.path}/{dataset_lib.DATASET_FILE}: {what} is {actual}, "
                                           f"but {int(given)} was given")
    return ds


def dataset_files(ds: dataset_lib.Dataset, level: str, splits: list[str]) -> list[str]:
    """``ds.files(level, splits)``, refusing an empty list with a one-line reason (a split with no videos)."""
    files = ds.files(level, splits)
    if not files:
        raise dataset_lib.DatasetError(f"{ds.path}: no {level}-level files in split(s) {', '.join(splits)} "
                                       f"({ds.num_videos(splits)} videos)")
    return files


def split_files(dataset_dir: str, level: str, splits: list[str]) -> list[str]:
    """Shards of the given splits at ``level`` ("frame" or "video"), as listed in ``dataset.json``.

    Kept for callers outside the library; prefer ``Dataset.open(dir).files(level, splits)``. A split
    name may be a shell pattern over the dataset's split names (``"fold-*"``: every fold).
    """
    import fnmatch

    ds = dataset_lib.Dataset.open(dataset_dir)
    names = []
    for s in splits:
        matched = [n for n in ds.split_names if fnmatch.fnmatchcase(n, s)]
        if not matched:
            raise dataset_lib.DatasetError(f"{ds.path}: no split matches {s!r}; splits are {ds.split_names}")
        names += [n for n in matched if n not in names]
    return dataset_files(ds, level, names)


def feature_frames(input_level: str, t: config_lib.TrainingConfig) -> int:
    """How many leading frames the family's features see: ``export.member_max_frames`` (the serving rule)."""
    return export.member_max_frames(input_level, t.max_frames)


def make_dataset(files, input_level: str, num_classes: int, t: config_lib.TrainingConfig, training: bool,
                 include_ids: bool = False) -> tf.data.Dataset:
    batch = t.batch_size if training else t.eval_batch_size
    if input_level == "video":
        return readers.video_level_dataset(files, num_classes, batch, training=training, include_ids=include_ids,
                                           seed=t.seed)
    return readers.frame_level_dataset(files, num_classes, batch, training=training,
                                       max_frames=feature_frames(input_level, t),
                                       num_samples=t.num_samples if training else None, include_ids=include_ids,
                                       seed=t.seed)


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


def check_format(family: str, input_level: str, data_format: str, where: str = "data") -> None:
    if input_level == "frame" and data_format == "video":
        raise ValueError(f"{where}: family {family!r} needs frame-level data, got video-level Examples")


def count_records(files: list[str]) -> int:
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(files), 8))
    return int(ds.reduce(np.int64(0), lambda count, _: count + 1).numpy())


def _mean_pool(features: dict) -> dict:
    """Video-level features from decoded frames, exactly as the serving graph computes them."""
    return export.video_features(features["rgb"], features["audio"], features["num_frames"])


def _decode_video_batch(serialized, num_classes: int, sources):
    parsed = tf.io.parse_example(serialized, readers.VIDEO_FEATURES)
    labels = parsed["labels"]
    in_range = tf.logical_and(labels.values >= 0, labels.values < num_classes)
    check = tf.debugging.Assert(
        tf.reduce_all(in_range),
        [f"bad YT8M record: label outside [0, {num_classes}); file(s):", tf.gather(sources, labels.indices[:, 0]),
         "video id(s):", tf.boolean_mask(tf.gather(parsed["id"], labels.indices[:, 0]), tf.logical_not(in_range))],
        summarize=5)
    with tf.control_dependencies([check]):
        features = {"mean_rgb": tf.identity(parsed["mean_rgb"]), "mean_audio": parsed["mean_audio"]}
    return parsed["id"], features, readers.multi_hot(labels, num_classes)


def train_input(files: list[str], data_format: str, input_level: str, num_classes: int,
                t: config_lib.TrainingConfig, epoch: int = 0, skip_steps: int = 0, steps: int | None = None,
                teacher: distill.TeacherTable | None = None, records: int | None = None,
                include_ids: bool = False) -> tf.data.Dataset:
    """One epoch of training batches ``(features, {"labels"[, "teacher"]})``: ``steps - skip_steps`` full batches.

    The record stream of epoch ``e`` is a function of ``(seed, e)`` (files and records shuffled
    with that seed, then repeated so every batch is full); resuming skips ``skip_steps``
    batches' records before they are decoded.
    """
    seed = t.seed * 1_000_003 + epoch
    batch = t.batch_size
    files_ds = tf.data.Dataset.from_tensor_slices(list(files)).shuffle(len(files), seed=seed)
    stream = files_ds.interleave(lambda f: tf.data.TFRecordDataset(f).map(lambda r: (f, r)),
                                  cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
                                  deterministic=True)
    buffer = FRAME_SHUFFLE_BUFFER if data_format == "frame" else VIDEO_SHUFFLE_BUFFER
    buffer = min(buffer, records) if records else buffer  # a bigger buffer only holds repeats
    stream = stream.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    if skip_steps:
        stream = stream.skip(skip_steps * batch)
    ds = stream.batch(batch, drop_remainder=True)
    if steps is not None:
        ds = ds.take(max(steps - skip_steps, 0))
    mixup = input_level == "video" and t.mixup_prob > 0

    def decode(sources, serialized):
        if data_format == "video":
            ids, features, labels = _decode_video_batch(serialized, num_classes, sources)
        else:
            ids, rgb, audio, num_frames, label_ids = readers.decode_frame_batch(
                serialized, feature_frames(input_level, t), num_classes, sources)
            labels = readers.multi_hot(label_ids, num_classes)
            if input_level == "frame":
                rgb, audio, num_frames = augment.frame_augment(rgb, audio, num_frames, t.half_video_prob,
                                                               t.reverse_prob, seed=seed)
                if t.num_samples:
                    rgb, audio = readers.sample_frames(rgb, audio, num_frames, t.num_samples, seed)
                    num_frames = tf.fill(tf.shape(num_frames), t.num_samples)
                features = {"rgb": rgb, "audio": audio, "num_frames": num_frames}
            else:
                features = _mean_pool({"rgb": rgb, "audio": audio, "num_frames": num_frames})
        targets = {"labels": labels}
        if teacher is not None:
            targets["teacher"] = teacher.targets(ids, labels)
        if mixup:
            features, targets, _, _ = augment.mixup(features, targets, t.mixup_alpha, t.mixup_prob, seed=seed)
        if include_ids:
            features["video_id"] = ids
        return features, targets

    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_input(files: list[str], data_format: str, input_level: str, num_classes: int,
               t: config_lib.TrainingConfig) -> tf.data.Dataset:
    """Evaluation batches in file order with ``video_id`` among the features; frames are mean-pooled
    for video-level families on frame-level data."""
    if data_format == "video":
        return readers.video_level_dataset(files, num_classes, t.eval_batch_size, include_ids=True)
    ds = readers.frame_level_dataset(files, num_classes, t.eval_batch_size,
                                     max_frames=feature_frames(input_level, t), include_ids=True)
    if input_level == "video":
        ds = ds.map(lambda f, y: ({**_mean_pool(f), "video_id": f["video_id"]}, y))
    return ds


# ----------------------------------------------------------------------------------------- model


def learning_rate_schedule(t: config_lib.TrainingConfig):
    """WILLOW: multiply the learning rate by ``lr_decay`` every ``lr_decay_examples`` examples."""
    return keras.optimizers.schedules.ExponentialDecay(
        t.learning_rate, decay_steps=max(1, t.lr_decay_examples // t.batch_size), decay_rate=t.lr_decay,
        staircase=True)


def adam(t: config_lib.TrainingConfig) -> keras.optimizers.Adam:
    """Adam as the references use it: ``tf.train.AdamOptimizer`` (TF1 epsilon 1e-8; Keras' default is
    1e-7), WILLOW's schedule, and per-tensor clipping at ``clip_gradient_norm`` (WILLOW train.py
    ``slim.learning.create_train_op(..., clip_gradient_norm=1.0)`` clips each gradient by its norm, on
    the loss summed over classes)."""
    return keras.optimizers.Adam(learning_rate_schedule(t), epsilon=1e-8, clipnorm=t.clip_gradient_norm)


def build_compiled_model(model_config: config_lib.ModelConfig, num_classes: int) -> keras.Model:
    """The family's model compiled with BCE and Adam (WILLOW schedule, clipping), for Keras ``fit`` users."""
    t = model_config.training
    keras.utils.set_random_seed(t.seed)
    model = registry.build_model(model_config.family, num_classes, model_config.preset, model_config.overrides)
    model.compile(optimizer=adam(t), loss=distill.bce)  # Keras averages bce (summed over classes) over the batch
    return model


def distribution_strategy() -> tf.distribute.Strategy:
    """``MirroredStrategy`` over all GPUs when there are several, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def use_mixed_precision(t: config_lib.TrainingConfig) -> bool:
    return t.mixed_precision == "auto" and bool(tf.config.list_logical_devices("GPU"))


@contextlib.contextmanager
def dtype_policy(name: str):
    """Build layers under the global Keras dtype policy ``name``; the previous policy is restored after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _numpy(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable))


class _ScalarSummaries(keras.callbacks.Callback):
    """Epoch scalars as TensorBoard events (``epoch_<name>`` in ``log_dir/train``) without the ``tensorboard``
    package: ``tf.summary.write`` with the scalars plugin's metadata, the same events Keras' callback writes."""

    def __init__(self, log_dir: str):
        super().__init__()
        from tensorflow.core.framework import summary_pb2

        self.log_dir = log_dir
        self.metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()
        self.writer = None

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(storage.join(self.log_dir, "train"))

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            for name, value in (logs or {}).items():
                tf.summary.write(f"epoch_{name}", tf.constant(float(value), tf.float32), step=epoch,
                                 metadata=self.metadata)
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


def tensorboard_callback(log_dir: str) -> keras.callbacks.Callback:
    """``keras.callbacks.TensorBoard`` (epoch-level) when the ``tensorboard`` package is installed, else a
    writer of the same scalar events through TensorFlow alone."""
    try:
        import tensorboard  # noqa: F401  (tf.summary.scalar needs it)
    except ImportError:
        return _ScalarSummaries(log_dir)
    return keras.callbacks.TensorBoard(log_dir, write_graph=False, update_freq="epoch")


def _files_signature(files: list[str], batch_size: int) -> str:
    return f"{zlib.crc32(chr(10).join(files).encode()):08x}-{len(files)}-{batch_size}"


class ResumeMismatchError(ValueError):
    """Checkpoints in the output directory belong to another run (other data, classes or model)."""


# Fields a user may change and still resume: more epochs continue the run, the checkpoint cadence is bookkeeping.
_RESUMABLE_CHANGES = ("epochs", "checkpoint_every_steps")


def run_signature(files: list[str], num_classes: int, model_config: config_lib.ModelConfig) -> dict:
    """What a checkpoint was trained on: the data files (names; sizes too for local files, a stat per
    file being too slow on gs://), the number of classes and the model config (all but epochs and the
    checkpoint cadence). Resuming on anything else would continue another run's model."""
    listing = []
    for path in files:
        size = "" if path.startswith("gs://") else str(storage.gfile.stat(path).length)
        listing.append(f"{path}\t{size}")
    model = config_lib.to_dict(model_config)
    model["training"] = {k: v for k, v in model["training"].items() if k not in _RESUMABLE_CHANGES}
    return {"data": f"{zlib.crc32(chr(10).join(listing).encode()):08x}-{len(files)}",
            "num_classes": int(num_classes),
            "model": f"{zlib.crc32(json.dumps(model, sort_keys=True).encode()):08x}"}


def check_resumable(state: dict, signature: dict, checkpoint_dir: str) -> None:
    """Refuse to resume checkpoints whose run signature differs from this run's."""
    saved = state.get("run_signature")
    if not saved or saved == signature:
        return
    names = {"data": "data files", "num_classes": "num_classes", "model": "model config"}
    changed = [names.get(k, k) for k in sorted(set(saved) | set(signature)) if saved.get(k) != signature.get(k)]
    detail = (f" ({saved.get('num_classes')} -> {signature['num_classes']})"
              if saved.get("num_classes") != signature["num_classes"] else "")
    raise ResumeMismatchError(
        f"{checkpoint_dir} holds checkpoints of another run (different {', '.join(changed)}{detail}); "
        "pass --restart to discard them, or choose another output directory")


class Trainer:
    """One model config's model, optimizer, EMA weights and checkpoints; ``fit`` runs the loop."""

    def __init__(self, model_config: config_lib.ModelConfig, num_classes: int, checkpoint_dir: str | None = None,
                 tensorboard_dir: str | None = None, label: str | None = None,
                 strategy: tf.distribute.Strategy | None = None):
        self.config, self.t = model_config, model_config.training
        self.num_classes = num_classes
        self.family = registry.get_family(model_config.family)
        self.label = label or model_config.name
        self.strategy = strategy or distribution_strategy()
        self.mixed_precision = use_mixed_precision(self.t)
        self.tensorboard_dir = tensorboard_dir
        t = self.t
        with self.strategy.scope():
            keras.utils.set_random_seed(t.seed)
            with dtype_policy("mixed_float16" if self.mixed_precision else "float32"):
                self.model = registry.build_model(model_config.family, num_classes, model_config.preset,
                                                  model_config.overrides)
            optimizer = adam(t)
            if self.mixed_precision:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(self.model.trainable_variables)
            # compile only attaches the optimizer and loss (Keras callbacks such as TensorBoard read them).
            self.model.compile(optimizer=self.optimizer, loss=distill.bce)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.ema = ([tf.Variable(tf.identity(v.value), trainable=False, name=f"ema_{i}")
                         for i, v in enumerate(self.model.trainable_variables)] if t.ema_halflife else [])
        self.keeper = None
        if checkpoint_dir:
            self.keeper = checkpoints.CheckpointKeeper(
                checkpoint_dir, step=self.step, model_variables=[v.value for v in self.model.variables],
                optimizer=self.optimizer, ema=self.ema)
        self._train_step = None
        self.summary: dict = {}

    # -- the step ------------------------------------------------------------------------------

    def per_example_loss(self, targets: dict, probs):
        if "teacher" in targets:
            return distill.distillation_loss(targets["labels"], targets["teacher"], probs, self.t.distill_weight)
        return distill.bce(targets["labels"], probs)

    def _make_train_step(self):
        model, optimizer, strategy, t = self.model, self.optimizer, self.strategy, self.t
        global_batch = t.batch_size
        mixed = self.mixed_precision
        ema_decay = 1.0 - 1.0 / t.ema_halflife if t.ema_halflife else 0.0

        def replica_step(features, targets):
            with tf.GradientTape() as tape:
                probs = tf.cast(model(features, training=True), tf.float32)
                loss = tf.nn.compute_average_loss(self.per_example_loss(targets, probs),
                                                  global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n([tf.cast(l, tf.float32) for l in model.losses]))
                scaled = optimizer.scale_loss(loss) if mixed else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        @tf.function
        def train_step(features, targets):
            per_replica = strategy.run(replica_step, args=(features, targets))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            self.step.assign_add(1)
            if self.ema:
                # EMA = the weights themselves until ema_start_step, then decay * EMA + (1 - decay) * weights.
                decay = tf.where(self.step > t.ema_start_step, ema_decay, 0.0)
                for average, variable in zip(self.ema, model.trainable_variables):
                    average.assign(decay * average + (1.0 - decay) * tf.convert_to_tensor(variable.value))
            return loss

        return train_step

    def train_on_batch(self, features, targets) -> float:
        """One optimisation step (the same function ``fit`` runs)."""
        if self._train_step is None:
            self._train_step = self._make_train_step()
        return float(self._train_step(features, targets))

    # -- the loop ------------------------------------------------------------------------------

    def _steps_per_epoch(self, files: list[str], records: int | None) -> tuple[int, int | None]:
        t = self.t
        if t.steps_per_epoch:
            return t.steps_per_epoch, records
        state = self.keeper.read_state() if self.keeper else {}
        signature = _files_signature(files, t.batch_size)
        if records is None and state.get("data_signature") == signature and state.get("records"):
            records = int(state["records"])
        if records is None:
            started = time.time()
            records = count_records(files)
            log.info("%s: %d training records in %d file(s) (counted in %.1f s)", self.label, records, len(files),
                     time.time() - started)
        if records < 1:
            raise ValueError(f"{self.label}: no training records in {len(files)} file(s)")
        return math.ceil(records / t.batch_size), records

    def _learning_rate(self) -> float:
        try:
            return float(_numpy(self.optimizer.learning_rate))
        except Exception:  # noqa: BLE001 - logging only
            return float("nan")

    def _save(self, step: int, state: dict) -> None:
        if self.keeper is None:
            return
        path = self.keeper.save(step)
        state.update(step=step, checkpoint=os.path.basename(path), updated=time.time())
        self.keeper.write_state(state)

    def fit(self, files: list[str], data_format: str | None = None, teacher: distill.TeacherTable | None = None,
            records: int | None = None) -> dict:
        """Train to ``epochs * steps_per_epoch`` steps, resuming from the latest checkpoint if there is one."""
        t = self.t
        data_format = data_format or self.family.input_level
        signature = run_signature(files, self.num_classes, self.config)
        if self.keeper is not None and self.keeper.latest:
            check_resumable(self.keeper.read_state(), signature, self.keeper.directory)
        steps_per_epoch, records = self._steps_per_epoch(files, records)
        total = t.epochs * steps_per_epoch
        restored = self.keeper.restore() if self.keeper else None
        start = int(self.step.numpy())
        state = self.keeper.read_state() if self.keeper else {}
        resumed_from = list(state.get("resumed_from", []))
        if restored:
            resumed_from.append(start)
            log.info("%s: resumed from checkpoint %s at step %d/%d", self.label, restored, start, total)
        state.update(total_steps=total, steps_per_epoch=steps_per_epoch, epochs=t.epochs, batch_size=t.batch_size,
                     records=records, data_signature=_files_signature(files, t.batch_size),
                     run_signature=signature, resumed_from=resumed_from, finished=False)
        if start > total:
            log.warning("%s: the checkpoint is at step %d, beyond this config's %d steps; not training further",
                        self.label, start, total)
        if self._train_step is None:
            self._train_step = self._make_train_step()
        callbacks = None
        if self.tensorboard_dir:
            callbacks = keras.callbacks.CallbackList(
                [tensorboard_callback(self.tensorboard_dir)],
                model=self.model, epochs=t.epochs, steps=steps_per_epoch, verbose=0)
            callbacks.on_train_begin()
        every = t.checkpoint_every_steps
        step = start
        trained_steps, started = 0, time.time()
        loss = float("nan")
        for epoch in range(min(start, total) // steps_per_epoch, t.epochs):
            skip = step - epoch * steps_per_epoch
            ds = train_input(files, data_format, self.family.input_level, self.num_classes, t, epoch=epoch,
                             skip_steps=skip, steps=steps_per_epoch, teacher=teacher, records=records)
            if callbacks:
                callbacks.on_epoch_begin(epoch)
            epoch_started, epoch_steps, loss_sum = time.time(), 0, 0.0
            for features, targets in self.strategy.experimental_distribute_dataset(ds):
                loss_sum = loss_sum + self._train_step(features, targets)
                step += 1
                epoch_steps += 1
                if step % every == 0 and step < total:
                    self._save(step, state)
                    log.info("%s: checkpoint at step %d/%d", self.label, step, total)
            secs = max(time.time() - epoch_started, 1e-9)
            trained_steps += epoch_steps
            loss = float(loss_sum) / max(epoch_steps, 1)
            rate = epoch_steps * t.batch_size / secs
            log.info("%s epoch %d/%d (step %d/%d): loss %.5f, %d steps, ~%.0f examples/s", self.label, epoch + 1,
                     t.epochs, step, total, loss, epoch_steps, rate)
            if callbacks:
                callbacks.on_epoch_end(epoch, {"loss": loss, "learning_rate": self._learning_rate(),
                                               "examples_per_second": rate})
        if callbacks:
            callbacks.on_train_end()
        final_step = int(self.step.numpy())
        if final_step != step:
            raise RuntimeError(f"{self.label}: step counter {final_step} != steps run {step}")
        state["finished"] = True
        if self.keeper is not None and (trained_steps or not restored):
            self._save(step, state)
        elif self.keeper is not None:
            self.keeper.write_state({**state, "step": step, "updated": time.time()})
        seconds = time.time() - started
        self.summary = {
            "steps": step, "total_steps": total, "steps_per_epoch": steps_per_epoch, "epochs": t.epochs,
            "batch_size": t.batch_size, "records": records, "resumed_from_step": start if restored else 0,
            "trained_steps": trained_steps, "final_loss": loss, "train_seconds": round(seconds, 1),
            "examples_per_second": round(trained_steps * t.batch_size / max(seconds, 1e-9), 1),
            "ema": bool(self.ema), "mixed_precision": self.mixed_precision,
            "replicas": self.strategy.num_replicas_in_sync,
        }
        return self.summary

    # -- the result ----------------------------------------------------------------------------

    def raw_weights(self) -> list[np.ndarray]:
        """The trained (not averaged) trainable weights."""
        return [_numpy(v) for v in self.model.trainable_variables]

    def ema_weights(self) -> list[np.ndarray]:
        return [_numpy(v) for v in self.ema]

    def inference_model(self) -> keras.Model:
        """The model to evaluate and export: float32, with the EMA weights when EMA is on.

        Without EMA and mixed precision that is the trained model itself; otherwise a fresh
        float32 copy of the family's model receives the (EMA) trainable weights and the trained
        non-trainable ones (batch-norm statistics).
        """
        if not self.ema and not self.mixed_precision:
            return self.model
        with dtype_policy("float32"):
            model = registry.build_model(self.config.family, self.num_classes, self.config.preset,
                                         self.config.overrides)
        sources = self.ema or self.model.trainable_variables
        if len(model.trainable_variables) != len(sources) or \
                len(model.non_trainable_variables) != len(self.model.non_trainable_variables):
            raise RuntimeError(f"{self.label}: the rebuilt model's variables do not match the trained model's")
        for target, source in zip(model.trainable_variables, sources):
            target.assign(_numpy(source))
        for target, source in zip(model.non_trainable_variables, self.model.non_trainable_variables):
            target.assign(_numpy(source))
        return model


def fit(model_config: config_lib.ModelConfig, train_files: list[str], num_classes: int, label: str,
        checkpoint_dir: str | None = None, tensorboard_dir: str | None = None, data_format: str | None = None,
        teacher: distill.TeacherTable | None = None, records: int | None = None) -> keras.Model:
    """Train one model (see ``Trainer``); return the model to evaluate and export."""
    trainer = Trainer(model_config, num_classes, checkpoint_dir, tensorboard_dir, label)
    trainer.fit(train_files, data_format, teacher, records)
    return trainer.inference_model()


# ----------------------------------------------------------------------------------------- evaluation


def predict(model: keras.Model, input_level: str, files: list[str], num_classes: int,
            t: config_lib.TrainingConfig, data_format: str | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(video ids, scores [N, C], multi-hot labels [N, C]) over ``files`` in file order."""
    predict_step = tf.function(lambda features: model(features, training=False), reduce_retracing=True)
    ids, scores, labels = [], [], []
    for features, y in eval_input(files, data_format or input_level, input_level, num_classes, t):
        video_ids = features.pop("video_id")
        scores.append(np.asarray(predict_step(features), np.float32))
        labels.append(y.numpy())
        ids.extend(v.decode() for v in video_ids.numpy())
    if not ids:
        return [], np.zeros((0, num_classes), np.float32), np.zeros((0, num_classes), np.float32)
    return ids, np.concatenate(scores), np.concatenate(labels)


def evaluate(scores: np.ndarray, labels: np.ndarray, k: int = 20) -> dict:
    acc = metrics.EvaluationAccumulator(labels.shape[1], k=k)
    acc.add(scores, labels)
    return acc.result()


def _load_teacher(t: config_lib.TrainingConfig, data_dir: str | None, num_classes: int):
    if not t.teacher_predictions:
        return None
    return distill.TeacherTable(distill.resolve_teacher_path(t.teacher_predictions, data_dir), num_classes)


def _write_member(model_config, model, level: str, output_dir: str, max_frames: int,
                  transform_dir: str | None = None, compression: str = "none") -> int:
    """The member's files; its serving graph computes video-level features with the dataset's transform_fn
    (``transform_dir``) when there is one, so it serves exactly what it trained on."""
    storage.gfile.makedirs(output_dir)
    model.save_weights(storage.join(output_dir, "model.weights.h5"))
    storage.write_text(storage.join(output_dir, "model_config.yaml"), config_lib.dump_yaml(model_config))
    member = export.Member(model_config.name, model, level, config_lib.to_dict(model_config))
    return export.export_serving_model([member], storage.join(output_dir, "saved_model"), max_frames=max_frames,
                                       transform_dir=transform_dir, compression=compression)


# ----------------------------------------------------------------------------------------- entry points


# The pipeline trains each (config, fold) and each final member as a task of its own:
#   train_fold   (one per config and fold)  -> FOLD_DIR/{oof_predictions.npz, fold_metrics.json}
#   collect_folds (one)                     -> ROOT/<config name>/fold-<k>/ (the same two files)
#   train_final  (one per config)           -> the member (see the module doc), its OOF gathered from ROOT
# train_member runs the same three steps in one process (the composition, used by tests and tools).

OOF_FILE = "oof_predictions.npz"
FOLD_METRICS_FILE = "fold_metrics.json"


def train_fold(model_config: config_lib.ModelConfig, dataset_dir: str, output_dir: str, num_classes: int | None,
               folds: int | None, fold: int, top_k: int = 20, checkpoint_dir: str | None = None,
               tensorboard_dir: str | None = None) -> dict:
    """Train on every fold but ``fold`` and predict ``fold``: its out-of-fold predictions.

    The dataset is read through ``Dataset.open(dataset_dir)``; ``num_classes`` and ``folds`` (None:
    from its ``dataset.json``) are checked against it.

    Writes ``output_dir/oof_predictions.npz`` (top-k, keyed by video id) and ``fold_metrics.json``
    (config name, fold, GAP@20 / Hit@1 / PERR / mAP of the held-out fold, training summary).
    Checkpoints go to ``checkpoint_dir`` (default ``output_dir/checkpoints``, removed when done):
    a killed or retried task with the same output resumes from them.
    """
    ds = open_dataset(dataset_dir, num_classes, folds)
    num_classes, folds = ds.num_classes, ds.folds
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in [0, {folds}), got {fold}")
    level, t = registry.get_family(model_config.family).input_level, model_config.training
    held, splits = ds.fold_name(fold), ds.train_splits(held_out_fold=fold)
    started = time.time()
    own_checkpoints = checkpoint_dir is None
    checkpoint_dir = checkpoint_dir or storage.join(output_dir, "checkpoints")
    train = dataset_files(ds, level, splits)
    log.info("%s: fold %d/%d: training on %d shards, predicting %s", model_config.name, fold + 1, folds, len(train),
             held)
    trainer = Trainer(model_config, num_classes, checkpoint_dir,
                      tensorboard_dir or storage.join(output_dir, "tensorboard"), f"{model_config.name} fold {fold}")
    summary = trainer.fit(train, teacher=_load_teacher(t, ds.path, num_classes), records=ds.num_videos(splits))
    ids, scores, labels = predict(trainer.inference_model(), level, dataset_files(ds, level, [held]), num_classes, t)
    fold_metrics = evaluate(scores, labels)
    log.info("%s: fold %d GAP@20 %.4f on its %d held-out videos", model_config.name, fold, fold_metrics["gap"],
             len(ids))
    storage.gfile.makedirs(output_dir)
    predictions.save_topk(storage.join(output_dir, OOF_FILE), ids, scores, top_k)
    result = {"name": model_config.name, "family": model_config.family, "fold": fold, "folds": folds,
              "held_out": held, "num_classes": num_classes, "metrics": fold_metrics,
              "train_seconds": round(time.time() - started, 1), "training": summary}
    storage.write_json(storage.join(output_dir, FOLD_METRICS_FILE), result)
    if own_checkpoints and storage.gfile.exists(checkpoint_dir):
        storage.gfile.rmtree(checkpoint_dir)
    return result


def collected_fold_dir(collected_dir: str, name: str, fold: int) -> str:
    """Where ``collect_folds`` puts config ``name``'s fold ``fold``."""
    return storage.join(collected_dir, name, f"fold-{fold}")


def member_fold_dirs(collected_dir: str, name: str) -> list[str]:
    """Config ``name``'s fold directories in a ``collect_folds`` output (``train_final`` checks they are all there)."""
    return sorted(storage.gfile.glob(storage.join(collected_dir, name, "fold-*")))


def collect_folds(fold_dirs: list[str], collected_dir: str) -> dict[str, list[int]]:
    """Gather the ``train_fold`` outputs of every config into ONE directory (the pipeline's
    hand-over from the fold tasks to the final-member tasks); return ``{config name: folds}``."""
    found: dict[str, list[int]] = {}
    for fold_dir in fold_dirs:
        info = storage.read_json(storage.join(fold_dir, FOLD_METRICS_FILE))
        name, fold = info["name"], int(info["fold"])
        if fold in found.setdefault(name, []):
            raise ValueError(f"two out-of-fold results for {name} fold {fold} (second: {fold_dir})")
        found[name].append(fold)
        target = collected_fold_dir(collected_dir, name, fold)
        storage.gfile.makedirs(target)
        for file_name in (OOF_FILE, FOLD_METRICS_FILE):
            storage.gfile.copy(storage.join(fold_dir, file_name), storage.join(target, file_name), overwrite=True)
    log.info("collected out-of-fold predictions: %s",
             ", ".join(f"{name} folds {sorted(ks)}" for name, ks in sorted(found.items())))
    return {name: sorted(ks) for name, ks in found.items()}


def _save_topk_arrays(path: str, video_ids: list[str], classes: np.ndarray, scores: np.ndarray,
                      num_classes: int) -> None:
    """Already-sparse top-k rows in ``predictions.save_topk``'s format (``predictions.load_topk`` reads it)."""
    buffer = io.BytesIO()  # zip needs a seekable file: build it in memory, write it in one call (local or gs://)
    np.savez_compressed(buffer, video_ids=np.array(video_ids, dtype=str), classes=classes.astype(np.int32),
                        scores=scores.astype(np.float32), num_classes=np.int64(num_classes))
    with storage.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _merge_fold_predictions(model_config: config_lib.ModelConfig, fold_dirs: list[str], folds: int,
                            num_classes: int) -> tuple[dict, list[dict]]:
    """The K fold outputs of one config, checked (its name, every fold once) and concatenated in fold order."""
    infos = [(storage.read_json(storage.join(d, FOLD_METRICS_FILE)), d) for d in fold_dirs]
    others = sorted({i["name"] for i, _ in infos} - {model_config.name})
    if others:
        raise ValueError(f"{model_config.name}: out-of-fold results of other configs given: {', '.join(others)}")
    got = sorted(int(i["fold"]) for i, _ in infos)
    if got != list(range(folds)):
        missing = sorted(set(range(folds)) - set(got))
        raise ValueError(f"{model_config.name}: expected out-of-fold results for folds 0..{folds - 1} once each, "
                         f"got {got}" + (f" (missing {missing})" if missing else ""))
    infos.sort(key=lambda pair: int(pair[0]["fold"]))
    parts = [predictions.load_topk(storage.join(d, OOF_FILE)) for _, d in infos]
    bad = [p["num_classes"] for p in parts if p["num_classes"] != num_classes]
    if bad:
        raise ValueError(f"{model_config.name}: out-of-fold predictions have {bad[0]} classes, expected {num_classes}")
    merged = {"video_ids": [v for p in parts for v in p["video_ids"]],
              "classes": np.concatenate([p["classes"] for p in parts]),
              "scores": np.concatenate([p["scores"] for p in parts]), "num_classes": num_classes}
    return merged, [dict(i["metrics"], fold=int(i["fold"])) for i, _ in infos]


def _topk_metrics(topk: dict, labels: dict[str, list[int]], num_classes: int, chunk: int = 8192) -> dict:
    """GAP@20 & co. of top-k predictions, densified chunk by chunk (exact for GAP@20 when k >= 20)."""
    acc = metrics.EvaluationAccumulator(num_classes)
    ids = topk["video_ids"]
    for start in range(0, len(ids), chunk):
        stop = start + chunk
        dense = predictions.densify_topk(topk["classes"][start:stop], topk["scores"][start:stop], num_classes)
        acc.add(dense, metrics.dense_labels([labels.get(v, []) for v in ids[start:stop]], num_classes))
    return acc.result()


def train_final(model_config: config_lib.ModelConfig, dataset_dir: str, output_dir: str, num_classes: int | None,
                folds: int | None, fold_dirs: list[str], top_k: int = 20, checkpoint_dir: str | None = None,
                tensorboard_dir: str | None = None) -> dict:
    """The member: gather its K folds' out-of-fold predictions (``fold_dirs``: ``train_fold`` outputs),
    train the final model on all folds, predict the holdout, export; see the module doc for the files.

    The folds are checked before any training (every fold of this config, once). ``metrics.json``'s
    ``oof`` is measured on the gathered top-k predictions (what the ensembler reads; GAP@20 exact for
    top_k >= 20), ``oof_folds`` holds each fold's metrics on its full scores.
    """
    ds = open_dataset(dataset_dir, num_classes, folds)
    num_classes, folds = ds.num_classes, ds.folds
    if ds.holdout is None:
        raise dataset_lib.DatasetError(f"{ds.path}: the dataset has no holdout split (holdout_fraction 0); the "
                                       "final member is evaluated on it")
    level, t = registry.get_family(model_config.family).input_level, model_config.training
    names = ds.fold_names
    started = time.time()
    oof, fold_metrics = _merge_fold_predictions(model_config, fold_dirs, folds, num_classes)
    oof_metrics = _topk_metrics(oof, readers.read_id_labels(dataset_files(ds, "video", names)), num_classes)
    log.info("%s: out-of-fold GAP@20 %.4f over %d videos", model_config.name, oof_metrics["gap"],
             len(oof["video_ids"]))

    log.info("%s: training the final member on all %d folds", model_config.name, folds)
    own_checkpoints = checkpoint_dir is None
    checkpoint_dir = checkpoint_dir or storage.join(output_dir, "checkpoints")
    trainer = Trainer(model_config, num_classes, checkpoint_dir,
                      tensorboard_dir or storage.join(output_dir, "tensorboard", "final"), f"{model_config.name} final")
    summary = trainer.fit(dataset_files(ds, level, names), teacher=_load_teacher(t, ds.path, num_classes),
                          records=ds.num_videos(names))
    model = trainer.inference_model()
    hold_ids, hold_scores, hold_labels = predict(model, level, dataset_files(ds, level, [ds.holdout]),
                                                 num_classes, t)
    holdout_metrics = evaluate(hold_scores, hold_labels)
    log.info("%s: holdout GAP@20 %.4f", model_config.name, holdout_metrics["gap"])

    storage.gfile.makedirs(output_dir)
    _save_topk_arrays(storage.join(output_dir, OOF_FILE), oof["video_ids"], oof["classes"][:, :top_k],
                      oof["scores"][:, :top_k], num_classes)
    predictions.save_topk(storage.join(output_dir, "holdout_predictions.npz"), hold_ids, hold_scores, top_k)
    size = _write_member(model_config, model, level, output_dir, t.max_frames, ds.transform_path)
    result = {
        "name": model_config.name, "family": model_config.family, "preset": model_config.preset,
        "input_level": level, "parameters": int(model.count_params()), "saved_model_bytes": size,
        "oof": oof_metrics, "oof_folds": fold_metrics, "holdout": holdout_metrics,
        "train_seconds": round(time.time() - started, 1), "folds": folds, "num_classes": num_classes,
        "training": summary,
    }
    storage.write_json(storage.join(output_dir, "metrics.json"), result)
    # The member is complete: its checkpoints (weights + optimizer state, ~3x the model) are not part of it.
    if own_checkpoints and storage.gfile.exists(checkpoint_dir):
        storage.gfile.rmtree(checkpoint_dir)
    return result


def train_member(model_config: config_lib.ModelConfig, dataset_dir: str, output_dir: str,
                 num_classes: int | None = None, folds: int | None = None, top_k: int = 20) -> dict:
    """K-fold training with out-of-fold predictions, then the final member on all folds; see module doc.

    The composition of ``train_fold`` (each fold) and ``train_final`` in one process: the pipeline
    runs the same steps as separate tasks.
    """
    ds = open_dataset(dataset_dir, num_classes, folds)
    num_classes, folds = ds.num_classes, ds.folds
    ckpt_root, tb_root = storage.join(output_dir, "checkpoints"), storage.join(output_dir, "tensorboard")
    folds_root = storage.join(output_dir, "folds")
    fold_dirs = []
    for k, held in enumerate(ds.fold_names):
        fold_dirs.append(storage.join(folds_root, held))
        train_fold(model_config, dataset_dir, fold_dirs[-1], num_classes, folds, k, top_k,
                   checkpoint_dir=storage.join(ckpt_root, held), tensorboard_dir=storage.join(tb_root, held))
    result = train_final(model_config, dataset_dir, output_dir, num_classes, folds, fold_dirs, top_k,
                         checkpoint_dir=storage.join(ckpt_root, "final"),
                         tensorboard_dir=storage.join(tb_root, "final"))
    # Gathered into the member's oof_predictions.npz; the checkpoints are not part of the member either.
    for done in (folds_root, ckpt_root):
        if storage.gfile.exists(done):
            storage.gfile.rmtree(done)
    return result


def train_single(model_config: config_lib.ModelConfig, train_data, output_dir: str, num_classes: int,
                 eval_data=None, restart: bool = False, compression: str = "uint8") -> dict:
    """Train one config on ``train_data`` (a pattern or file list; frame-level SequenceExamples, or
    video-level Examples for video-level families) and export it into ``output_dir``, its tensors above
    17,000 elements stored with ``compression`` (``yt8m.compression``; uint8 by default, so a published-size
    NetVLAD exported alone stays under 1 GB).

    Writes ``saved_model/``, ``model.weights.h5``, ``model_config.yaml``, ``metrics.json``,
    ``tensorboard/`` and ``checkpoints/`` (kept: running the same call again resumes from them,
    and a finished run is only re-exported; checkpoints of another run, i.e. other data files, classes
    or model config, are refused with ``ResumeMismatchError`` unless ``restart`` discards them).
    Video-level families on frame-level data see the
    frames mean-pooled in the input pipeline, exactly as the serving graph does.
    """
    family = registry.get_family(model_config.family)
    level, t = family.input_level, model_config.training
    files = storage.expand_pattern(train_data, "training data") if isinstance(train_data, str) else list(train_data)
    data_format = detect_format(files)
    check_format(model_config.family, level, data_format, "training data")
    eval_files = eval_format = None
    if eval_data:
        eval_files = (storage.expand_pattern(eval_data, "evaluation data") if isinstance(eval_data, str)
                      else list(eval_data))
        eval_format = detect_format(eval_files)
        check_format(model_config.family, level, eval_format, "evaluation data")
    teacher = _load_teacher(t, os.path.dirname(files[0]), num_classes)
    checkpoint_dir = storage.join(output_dir, "checkpoints")
    if restart and storage.gfile.exists(checkpoint_dir):
        log.info("%s: --restart: discarding the checkpoints in %s", model_config.name, checkpoint_dir)
        storage.gfile.rmtree(checkpoint_dir)
    log.info("%s: %s family %s (%s preset) on %d %s-level file(s), %d classes", model_config.name, level,
             model_config.family, model_config.preset, len(files), data_format, num_classes)
    trainer = Trainer(model_config, num_classes, checkpoint_dir, storage.join(output_dir, "tensorboard"))
    summary = trainer.fit(files, data_format, teacher)
    model = trainer.inference_model()
    result = {
        "name": model_config.name, "family": model_config.family, "preset": model_config.preset,
        "input_level": level, "data_format": data_format, "num_classes": num_classes,
        "parameters": int(model.count_params()), **summary,
    }
    if eval_files:
        _ids, scores, labels = predict(model, level, eval_files, num_classes, t, eval_format)
        result["eval"] = evaluate(scores, labels)
        log.info("%s: evaluation GAP@20 %.4f over %d videos", model_config.name, result["eval"]["gap"],
                 len(_ids))
    result["saved_model_bytes"] = _write_member(model_config, model, level, output_dir, t.max_frames,
                                                compression=compression)
    storage.write_json(storage.join(output_dir, "metrics.json"), result)
    return result
