"""The training loop: ``Trainer``, a small custom loop over one model config under a ``tf.distribute``
strategy (``yt8m.model_setup``), fed by the readers' training batches (``readers.training_batches``).

- Loss: BCE on sigmoid outputs on the references' scale (summed over classes, averaged over the batch:
  ``distill.bce``; the teacher's scores mixed in when distilling) + the family's own L2 terms (slim's
  ``l2 * sum(w^2) / 2``); Adam with WILLOW's schedule and per-tensor clipping; under mixed precision
  a loss-scale optimizer, outputs cast to float32 before the loss.
- EMA of the weights after ``ema_start_step`` (the evaluated and exported weights are then the EMA
  weights: ``inference_model``).
- A deterministic number of steps, fixed up front (``plan_steps``): ``epochs * steps_per_epoch``, or
  ``ceil(examples / batch_size)`` when an examples target is set (``TrainingConfig.examples_target``:
  ``examples_to_see``, or ``examples_per_class`` x the number of classes when larger), whatever the dataset size
  (a small dataset then gets enough steps: its record stream repeats, the last epoch is partial).
  ``steps_per_epoch`` comes from the config or ``ceil(records / batch_size)`` (every batch is full).
- Checkpoints every ``checkpoint_every_steps`` steps and at the end (``yt8m.checkpoints``): a killed
  run restarted with the same output resumes from the last checkpoint (step, weights, optimizer, EMA,
  and the data position: the epoch's shuffled record stream is rebuilt with the same seed and the
  consumed records are skipped before they are parsed), and ends at the same step.
- A validation slice (``training.validation_every``: 1 in N training records, by a hash of the record,
  held out of training): its GAP@20 after every epoch (without TTA) drives the 2018 2nd place's schedule
  (``yt8m.plateau``: the learning rate times ``lr_plateau_factor`` on a plateau, an early stop after
  ``early_stopping_patience`` epochs without a better GAP), and the weights of the best evaluation are
  the result (kept in memory and in ``best_weights.npz`` beside the checkpoints, with the schedule's
  state in the resumable state, so a resumed run goes on with the same schedule and best weights).
"""

from __future__ import annotations

import io
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from yt8m import checkpoints, distill, metrics, model_setup, plateau, readers, storage, summaries
from yt8m import config as config_lib
from yt8m.models import registry

log = logging.getLogger(__name__)

BEST_WEIGHTS = "best_weights.npz"  # the best validation evaluation's weights, beside the checkpoints


def plan_steps(t: config_lib.TrainingConfig, steps_per_epoch: int, num_classes: int = 0) -> tuple[int, int]:
    """``(total steps, epochs)`` of a run: ``ceil(examples / batch_size)`` steps when an examples target is set
    (``examples_to_see``, or ``examples_per_class`` x ``num_classes`` when larger; epochs of
    ``steps_per_epoch``, the last one partial), else ``epochs * steps_per_epoch``."""
    examples = t.examples_target(num_classes)
    if examples:
        total = math.ceil(examples / t.batch_size)
        return total, math.ceil(total / steps_per_epoch)
    return t.epochs * steps_per_epoch, t.epochs


def _numpy(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable))


class Trainer:
    """One model config's model, optimizer, EMA weights and checkpoints; ``fit`` runs the loop."""

    def __init__(self, model_config: config_lib.ModelConfig, num_classes: int, checkpoint_dir: str | None = None,
                 tensorboard_dir: str | None = None, label: str | None = None,
                 strategy: tf.distribute.Strategy | None = None):
        self.config, self.t = model_config, model_config.training
        self.num_classes = num_classes
        self.family = registry.get_family(model_config.family)
        self.label = label or model_config.name
        self.strategy = strategy or model_setup.distribution_strategy()
        self.mixed_precision = model_setup.use_mixed_precision(self.t)
        self.tensorboard_dir = tensorboard_dir
        t = self.t
        with self.strategy.scope():
            keras.utils.set_random_seed(t.seed)
            with model_setup.dtype_policy("mixed_float16" if self.mixed_precision else "float32"):
                self.model = registry.build_model(model_config.family, num_classes, model_config.preset,
                                                  model_config.overrides)
            self.lr_scale = tf.Variable(1.0, trainable=False, name="lr_scale") if t.validation_every else None
            # the cosine schedule's horizon, set by fit() once the run is planned
            self.total_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="total_steps")
            optimizer = model_setup.adam(t, self.lr_scale, self.total_steps)
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
        self.plateau = plateau.PlateauState()
        self.best_weights: list[np.ndarray] | None = None  # every model variable, then the EMA ones

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
        signature = checkpoints.files_signature(files, t.batch_size)
        if records is None and state.get("data_signature") == signature and state.get("records"):
            records = int(state["records"])
        if records is None:
            started = time.time()
            records = readers.count_records(files)
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

    # -- the validation slice ----------------------------------------------------------------------

    def _best_weights_path(self) -> str | None:
        return storage.join(self.keeper.directory, BEST_WEIGHTS) if self.keeper else None

    def _snapshot(self) -> list[np.ndarray]:
        return [_numpy(v) for v in self.model.variables] + [_numpy(v) for v in self.ema]

    def _restore_best(self) -> None:
        targets = list(self.model.variables) + list(self.ema)
        for target, value in zip(targets, self.best_weights):
            target.assign(value)

    def _load_best(self) -> None:
        path = self._best_weights_path()
        if path and storage.gfile.exists(path):
            with storage.gfile.GFile(path, "rb") as f:
                saved = np.load(io.BytesIO(f.read()))
                self.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]

    def _save_best(self) -> None:
        path = self._best_weights_path()
        if path:
            buffer = io.BytesIO()
            np.savez(buffer, **{f"w{i}": w for i, w in enumerate(self.best_weights)})
            with storage.gfile.GFile(path, "wb") as f:
                f.write(buffer.getvalue())

    def validation_gap(self, files: list[str], data_format: str) -> float:
        """GAP@20 of the current (EMA) weights on the validation slice of ``files`` (no TTA)."""
        model = self.inference_model()
        if getattr(self, "_validation_model", None) is not model:  # one traced function per model (EMA: a copy)
            self._validation_model = model
            self._validation_step = tf.function(lambda features: model(features, training=False),
                                                reduce_retracing=True)
        step = self._validation_step
        scores, labels = [], []
        for features, y in readers.evaluation_batches(files, data_format, self.family.input_level, self.num_classes,
                                                      self.t, validation=True):
            features.pop("video_id")
            scores.append(np.asarray(step(features), np.float32))
            labels.append(y.numpy())
        if not scores:
            raise ValueError(f"{self.label}: the validation slice (1 in {self.t.validation_every} training records) "
                             f"of {len(files)} file(s) is empty; lower training.validation_every")
        return metrics.gap_at_k(np.concatenate(scores), np.concatenate(labels))

    def _after_epoch(self, files: list[str], data_format: str, epoch: int, state: dict) -> bool:
        """Score the validation slice, step the schedule, keep the best weights; True to stop early."""
        t = self.t
        gap = self.validation_gap(files, data_format)
        events = self.plateau.update(gap, epoch, t.lr_plateau_factor, t.lr_plateau_patience,
                                     t.early_stopping_patience)
        if events["improved"]:
            self.best_weights = self._snapshot()
            self._save_best()
        if events["reduced"]:
            self.lr_scale.assign(self.plateau.lr_scale)
        state["plateau"] = self.plateau.to_dict()
        log.info("%s epoch %d: validation GAP@20 %.4f (best %.4f at epoch %d)%s%s", self.label, epoch + 1, gap,
                 1.0 - self.plateau.best_loss, self.plateau.best_epoch + 1,
                 f"; learning rate x{self.plateau.lr_scale:g}" if events["reduced"] else "",
                 "; stopping early" if events["stop"] else "")
        return events["stop"]

    def _save(self, step: int, state: dict) -> None:
        if self.keeper is None:
            return
        path = self.keeper.save(step)
        state.update(step=step, checkpoint=os.path.basename(path), updated=time.time())
        self.keeper.write_state(state)

    def fit(self, files: list[str], data_format: str | None = None, teacher: distill.TeacherTable | None = None,
            records: int | None = None) -> dict:
        """Train to the planned number of steps (``plan_steps``), resuming from the latest checkpoint if there
        is one."""
        t = self.t
        data_format = data_format or self.family.input_level
        signature = checkpoints.run_signature(files, self.num_classes, self.config)
        if self.keeper is not None and self.keeper.latest:
            checkpoints.check_resumable(self.keeper.read_state(), signature, self.keeper.directory)
        steps_per_epoch, records = self._steps_per_epoch(files, records)
        total, epochs = plan_steps(t, steps_per_epoch, self.num_classes)
        self.total_steps.assign(total)
        restored = self.keeper.restore() if self.keeper else None
        start = int(self.step.numpy())
        state = self.keeper.read_state() if self.keeper else {}
        resumed_from = list(state.get("resumed_from", []))
        if restored:
            resumed_from.append(start)
            log.info("%s: resumed from checkpoint %s at step %d/%d", self.label, restored, start, total)
            if t.validation_every:
                self.plateau = plateau.PlateauState.from_dict(state.get("plateau"))
                self.lr_scale.assign(self.plateau.lr_scale)
                self._load_best()
        stopped_early = bool(restored and state.get("stopped_early"))
        state.update(total_steps=total, steps_per_epoch=steps_per_epoch, epochs=epochs,
                     examples_to_see=t.examples_target(self.num_classes), batch_size=t.batch_size, records=records,
                     data_signature=checkpoints.files_signature(files, t.batch_size), run_signature=signature,
                     resumed_from=resumed_from, finished=False)
        if start > total:
            log.warning("%s: the checkpoint is at step %d, beyond this config's %d steps; not training further",
                        self.label, start, total)
        if self._train_step is None:
            self._train_step = self._make_train_step()
        callbacks = None
        if self.tensorboard_dir:
            callbacks = keras.callbacks.CallbackList(
                [summaries.tensorboard_callback(self.tensorboard_dir)],
                model=self.model, epochs=epochs, steps=steps_per_epoch, verbose=0)
            callbacks.on_train_begin()
        every = t.checkpoint_every_steps
        step = start
        trained_steps, started = 0, time.time()
        loss = float("nan")
        for epoch in range(min(start, total) // steps_per_epoch, 0 if stopped_early else epochs):
            skip = step - epoch * steps_per_epoch
            ds = readers.training_batches(files, data_format, self.family.input_level, self.num_classes, t,
                                          epoch=epoch, skip_batches=skip,
                                          batches=min(steps_per_epoch, total - epoch * steps_per_epoch),
                                          teacher=teacher, records=records)
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
                     epochs, step, total, loss, epoch_steps, rate)
            if callbacks:
                callbacks.on_epoch_end(epoch, {"loss": loss, "learning_rate": self._learning_rate(),
                                               "examples_per_second": rate})
            if t.validation_every and epoch_steps and self._after_epoch(files, data_format, epoch, state):
                stopped_early = True
                state["stopped_early"] = True
                break
        if callbacks:
            callbacks.on_train_end()
        final_step = int(self.step.numpy())
        if final_step != step:
            raise RuntimeError(f"{self.label}: step counter {final_step} != steps run {step}")
        if self.best_weights is not None:  # the result is the best evaluation's weights
            self._restore_best()
        state["finished"] = True
        if self.keeper is not None and (trained_steps or not restored):
            self._save(step, state)
        elif self.keeper is not None:
            self.keeper.write_state({**state, "step": step, "updated": time.time()})
        seconds = time.time() - started
        self.summary = {
            "steps": step, "total_steps": total, "steps_per_epoch": steps_per_epoch, "epochs": epochs,
            "examples_to_see": t.examples_target(self.num_classes),
            "batch_size": t.batch_size, "records": records, "resumed_from_step": start if restored else 0,
            "trained_steps": trained_steps, "final_loss": loss, "train_seconds": round(seconds, 1),
            "examples_per_second": round(trained_steps * t.batch_size / max(seconds, 1e-9), 1),
            "ema": bool(self.ema), "mixed_precision": self.mixed_precision,
            "replicas": self.strategy.num_replicas_in_sync,
        }
        if t.validation_every and self.plateau.evaluations:
            self.summary.update(validation_best_gap=round(1.0 - self.plateau.best_loss, 6),
                                validation_best_epoch=self.plateau.best_epoch + 1,
                                validation_evaluations=self.plateau.evaluations, lr_scale=self.plateau.lr_scale,
                                stopped_early=stopped_early)
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
        with model_setup.dtype_policy("float32"):
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

