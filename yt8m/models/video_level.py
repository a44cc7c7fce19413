"""Video-level families: inputs ``mean_rgb`` [1024] and ``mean_audio`` [128]."""

from __future__ import annotations

import keras

from yt8m.models.inputs import video_inputs
from yt8m.models.layers import MixtureOfExperts
from yt8m.models.registry import register


def _normalized_video_vector(inputs):
    x = keras.layers.Concatenate()([inputs["mean_rgb"], inputs["mean_audio"]])
    return keras.layers.UnitNormalization()(x)


@register("logistic", "video", {"small": {"l2": 1e-8}, "published": {"l2": 1e-8}},
          "sigmoid FC on the L2-normalised mean features (the class-prior-beating baseline)")
def logistic(num_classes: int, l2: float):
    inputs = video_inputs()
    reg = keras.regularizers.L2(l2) if l2 else None
    out = keras.layers.Dense(num_classes, activation="sigmoid", kernel_regularizer=reg)(
        _normalized_video_vector(inputs))
    return keras.Model(inputs, out, name="logistic")


@register("moe", "video", {"small": {"num_mixtures": 2, "l2": 1e-6}, "published": {"num_mixtures": 2, "l2": 1e-6}},
          "Mixture-of-Experts: softmax gates over sigmoid experts + dummy expert (starter-code baseline)")
def moe(num_classes: int, num_mixtures: int, l2: float):
    inputs = video_inputs()
    out = MixtureOfExperts(num_classes, num_mixtures, l2)(_normalized_video_vector(inputs))
    return keras.Model(inputs, out, name="moe")
