"""frame_mil: multiple-instance learning over frames. Every window of frames gets its own class logits (a
linear layer, optionally after one hidden layer), and the logits are pooled over the real windows by a
log-mean-exp (``MaskedLogMeanExpPool``): late pooling, where the challenge families pool frame features
first and classify the pool.

Not a challenge entry: no team published this family, so its "published" preset is a full-scale
configuration (every frame, the linear per-frame classifier: 4.45M parameters at 3,862 classes), not a
reproduction. Why it is here: the mean-pooled logistic sees evidence that occupies a few frames diluted
by the rest of the video, and the feature-pooling families must learn shared detectors before any class
score; a per-window linear classifier sees each window undiluted, with the logistic's parameter count.
Screened against the default local run's frame_conv_max on the generator settings
(benchmarks/results/family_gap_screen.md; README "A late-pooling frame-level member").
"""

from __future__ import annotations

import keras
from keras import ops

from yt8m.models.inputs import frame_inputs
from yt8m.models.layers import (KERAS_BN_MOMENTUM, FrameBatchNorm, MaskedMeanPool, batch_norm, frame_mask, slim_l2,
                                window_means)
from yt8m.models.registry import register


@keras.saving.register_keras_serializable("yt8m")
class MaskedLogMeanExpPool(keras.layers.Layer):
    """``(1 / r) * log(mean_t exp(r * x_t))`` over the first ``num_frames`` frames of ``[B, F, C]`` -> ``[B, C]``
    (``r`` = ``sharpness``): the mean for ``r -> 0``, the max for ``r -> inf``; 0 for an empty video. Padding
    never enters (it is masked before the exponent)."""

    def __init__(self, sharpness: float, **kwargs):
        super().__init__(**kwargs)
        if not sharpness > 0:
            raise ValueError(f"sharpness must be > 0, got {sharpness}")
        self.sharpness = float(sharpness)

    def call(self, x, num_frames):
        mask = ops.expand_dims(frame_mask(num_frames, ops.shape(x)[1], "bool"), -1)
        scaled = ops.where(mask, x * self.sharpness, ops.full_like(x, -1e9))
        count = ops.expand_dims(ops.maximum(ops.cast(num_frames, x.dtype), 1.0), -1)
        pooled = (ops.logsumexp(scaled, axis=1) - ops.log(count)) / self.sharpness
        return ops.where(ops.expand_dims(num_frames > 0, -1), pooled, ops.zeros_like(pooled))

    def compute_output_spec(self, x, num_frames):
        return keras.KerasTensor((x.shape[0], x.shape[-1]), dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "sharpness": self.sharpness}


# mean_skip adds the video-level logistic's logits (a linear layer on the batch-normalized frame means) to the pooled
# ones. Screened in the sixteenth session (benchmarks/results/family_gap_screen.md, README "A mean-pooled skip"); off
# in every preset.
_BASE = {"frame_pool": 4, "sharpness": 4.0, "dropout": 0.0, "l2": 1e-6, "bn_momentum": KERAS_BN_MOMENTUM,
         "mean_skip": False}
FRAME_MIL_PRESETS = {
    # CPU tests: a 16-unit hidden layer, so the tests see every layer the family can build.
    "small": {**_BASE, "hidden": 16},
    # Full scale (no team published this family): the linear per-frame classifier on every frame.
    "published": {**_BASE, "hidden": 0, "frame_pool": 1},
    # The default local run's frame-level member: see FRAME_MIL_LOCAL_TRAINING.
    "local": {**_BASE, "hidden": 0},
}
# The local recipe: the same numbers as frame_conv_max local's, with which both were screened (a number of
# examples seen, 600 per class when more; every frame; Adam 1e-3 at batch 32). Adam 3e-3 (four settings, twelfth
# session) and 180,000 examples (six settings, thirteenth: +0.010-0.025 at 100 classes, +0.000-0.003 at 200,
# -0.005 at 25) were screened for frame_mil and did not win across them (benchmarks/results/family_gap_screen.md).
FRAME_MIL_LOCAL_TRAINING = {"examples_to_see": 90_000, "examples_per_class": 600, "batch_size": 32,
                            "learning_rate": 1e-3, "num_samples": 0, "eval_batch_size": 64}


@register("frame_mil", "frame", FRAME_MIL_PRESETS,
          "multiple-instance learning: class logits per window of frame_pool frames (linear, or after one "
          "hidden layer), pooled over the real windows by a log-mean-exp between mean and max (sharpness); "
          "mean_skip adds a linear layer's logits on the frame means",
          recipes={"local": FRAME_MIL_LOCAL_TRAINING},
          recipe_sources={"local": "benchmarks/bench_family_gap.py --screen"})
def frame_mil(num_classes: int, hidden: int, frame_pool: int, sharpness: float, dropout: float, l2: float,
              bn_momentum: float, mean_skip: bool):
    if hidden < 0:
        raise ValueError(f"hidden must be >= 0, got {hidden}")
    inputs = frame_inputs()
    rgb, audio, num_frames = window_means(inputs["rgb"], inputs["audio"], inputs["num_frames"], frame_pool)
    x = keras.layers.Concatenate(name="frames")([rgb, audio])
    if hidden:
        x = keras.layers.Dense(hidden, use_bias=False, name="frame_hidden")(x)
        x = keras.layers.ReLU()(FrameBatchNorm(bn_momentum, name="frame_hidden_bn")(x, num_frames))
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    logits = keras.layers.Dense(num_classes, kernel_regularizer=slim_l2(l2), name="frame_logits")(x)
    pooled = MaskedLogMeanExpPool(sharpness, name="time_pool")(logits, num_frames)
    if mean_skip:
        means = keras.layers.Concatenate(name="frame_means")([
            MaskedMeanPool(name="rgb_mean")(inputs["rgb"], inputs["num_frames"]),
            MaskedMeanPool(name="audio_mean")(inputs["audio"], inputs["num_frames"])])
        mean_logits = keras.layers.Dense(num_classes, kernel_regularizer=slim_l2(l2), name="mean_logits")(
            batch_norm(bn_momentum, name="means_norm")(means))
        pooled = keras.layers.Add(name="pooled_and_mean_logits")([pooled, mean_logits])
    return keras.Model(inputs, keras.layers.Activation("sigmoid", name="probs")(pooled), name="frame_mil")
