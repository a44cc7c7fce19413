"""Frame-level families: inputs ``rgb`` [F, 1024], ``audio`` [F, 128], ``num_frames``."""

from __future__ import annotations

import keras

from yt8m.models.inputs import frame_inputs
from yt8m.models.layers import ContextGating, FrameL2Normalize, MixtureOfExperts, NetVLAD
from yt8m.models.registry import register

NETVLAD_PRESETS = {
    "small": {"clusters": 16, "audio_clusters": 8, "hidden": 256, "num_mixtures": 2, "l2": 1e-6, "dropout": 0.0},
    # WILLOW's best single model: K=256, H=1024 (321.5M parameters with gating, YT8M_FACTS.md).
    "published": {"clusters": 256, "audio_clusters": 128, "hidden": 1024, "num_mixtures": 2, "l2": 1e-6,
                  "dropout": 0.0},
}


@register("netvlad", "frame", NETVLAD_PRESETS,
          "gated NetVLAD (WILLOW 2017): rgb and audio VLAD branches, hidden FC, context gating, MoE")
def netvlad(num_classes: int, clusters: int, audio_clusters: int, hidden: int, num_mixtures: int, l2: float,
            dropout: float):
    inputs = frame_inputs()
    rgb = FrameL2Normalize()(inputs["rgb"])
    audio = FrameL2Normalize()(inputs["audio"])
    vlad = keras.layers.Concatenate()([
        NetVLAD(clusters, name="rgb_vlad")(rgb, inputs["num_frames"]),
        NetVLAD(audio_clusters, name="audio_vlad")(audio, inputs["num_frames"]),
    ])
    if dropout:
        vlad = keras.layers.Dropout(dropout)(vlad)
    x = keras.layers.Dense(hidden, use_bias=False)(vlad)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu6")(x)
    x = ContextGating()(x)
    out = MixtureOfExperts(num_classes, num_mixtures, l2)(x)
    return keras.Model(inputs, out, name="netvlad")
