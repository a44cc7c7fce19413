"""How a member is set up for training: distribution strategy, dtype policy, optimizer.

- ``distribution_strategy``: ``MirroredStrategy`` over all GPUs when there are several, else the default.
- ``use_mixed_precision``: ``mixed_float16`` when ``training.mixed_precision`` is "auto" and a GPU is
  visible (the trainer then wraps the optimizer in a loss-scale optimizer), float32 on CPU.
- ``adam``: Adam as the references use it (TF1 epsilon 1e-8), WILLOW's schedule (the learning rate
  times ``lr_decay`` every ``lr_decay_examples`` examples) or a cosine decay to 0 over the run, and
  per-tensor gradient clipping.
"""

from __future__ import annotations

import contextlib
import math

import keras
import tensorflow as tf

from yt8m import config as config_lib


def learning_rate_schedule(t: config_lib.TrainingConfig, total_steps: tf.Variable | None = None):
    """``lr_schedule`` "staircase" (WILLOW: multiply the learning rate by ``lr_decay`` every
    ``lr_decay_examples`` examples) or "cosine" (``CosineToEnd`` over ``total_steps``)."""
    if t.lr_schedule == "cosine":
        if total_steps is None:
            raise ValueError("lr_schedule cosine needs the run's total steps")
        return CosineToEnd(t.learning_rate, total_steps)
    return keras.optimizers.schedules.ExponentialDecay(
        t.learning_rate, decay_steps=max(1, t.lr_decay_examples // t.batch_size), decay_rate=t.lr_decay,
        staircase=True)


class CosineToEnd(keras.optimizers.schedules.LearningRateSchedule):
    """``learning_rate * (1 + cos(pi * step / total_steps)) / 2``, 0 from ``total_steps`` on. ``total_steps`` is a
    variable the trainer sets once it has planned the run (the plan depends on the data: ``plan_steps``)."""

    def __init__(self, learning_rate: float, total_steps: tf.Variable):
        self.learning_rate, self.total_steps = learning_rate, total_steps

    def __call__(self, step):
        total = tf.maximum(tf.cast(self.total_steps, tf.float32), 1.0)
        progress = tf.minimum(tf.cast(step, tf.float32) / total, 1.0)
        return self.learning_rate * 0.5 * (1.0 + tf.cos(math.pi * progress))

    def get_config(self):
        return {"learning_rate": self.learning_rate}


class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``base(step) * scale``: ``scale`` is a variable the trainer lowers on a validation plateau
    (``yt8m.plateau``; 1.0 without one)."""

    def __init__(self, base, scale: tf.Variable):
        self.base, self.scale = base, scale

    def __call__(self, step):
        return self.base(step) * tf.cast(self.scale, tf.float32)

    def get_config(self):
        return {"base": keras.optimizers.schedules.serialize(self.base)}


def adam(t: config_lib.TrainingConfig, lr_scale: tf.Variable | None = None,
         total_steps: tf.Variable | None = None) -> keras.optimizers.Adam:
    """Adam as the references use it: ``tf.train.AdamOptimizer`` (TF1 epsilon 1e-8; Keras' default is
    1e-7), WILLOW's schedule, and per-tensor clipping at ``clip_gradient_norm`` (WILLOW train.py
    ``slim.learning.create_train_op(..., clip_gradient_norm=1.0)`` clips each gradient by its norm, on
    the loss summed over classes); ``clip_gradient_norm: 0`` turns clipping off. ``lr_scale``: a
    variable multiplying the schedule (``ScaledSchedule``); ``total_steps``: the run's planned steps (a variable the
    cosine schedule reads)."""
    schedule = learning_rate_schedule(t, total_steps)
    if lr_scale is not None:
        schedule = ScaledSchedule(schedule, lr_scale)
    return keras.optimizers.Adam(schedule, epsilon=1e-8, clipnorm=t.clip_gradient_norm or None)



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
