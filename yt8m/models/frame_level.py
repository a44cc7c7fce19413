"""Frame-level families: inputs ``rgb`` [F, 1024], ``audio`` [F, 128], ``num_frames``.

Every family pools only the first ``num_frames`` frames (the rest is zero padding), so a
prediction does not depend on how much padding follows. Frame sampling (WILLOW: 300 frames
with replacement; starter DBoF: 30) is the reader's job (``training.num_samples``); inside
the model every given real frame is used, at training and at inference alike.

Published presets follow the winners' code (WILLOW 2017: ``*ModelLF`` with rgb K clusters and
audio K/2, hidden 1024 without ReLU, context gating, MoE with 2 mixtures and gating on the
output probabilities; starter code: DBoF, LSTM) and reproduce YT8M_FACTS.md's sizes.

``netvlad``, ``gru`` and ``lstm`` also have a "cpu" preset (with ``CPU_TRAINING``): tuned so that
they beat the mean-pooled logistic baseline on synthetic data with segment-local evidence within
a few minutes on 2 CPU cores (benchmarks/bench_family_gap.py). They average windows of 4 frames
(``frame_pool``) so that every frame can be used at training time too.
"""

from __future__ import annotations

import keras

from yt8m.models.heads import check_head, classifier_head
from yt8m.models.inputs import frame_inputs
from yt8m.models.layers import (DBoF, ContextGating, FrameL2Normalize, FrameMask, GatedSoftDBoF, MaskedMaxPool,
                                MaskedMeanPool, NetFV, NetRVLAD, NetVLAD, SinusoidalPositions, SoftDBoF,
                                TemporalMeanPool, TransformerEncoderBlock)
from yt8m.models.registry import register

# Head parameters shared by the families (see heads.classifier_head).
HEAD_SMALL = {"head": "moe", "num_mixtures": 2, "l2": 1e-6, "label_dim": 16, "output_gating": False}
HEAD_PUBLISHED = {"head": "moe", "num_mixtures": 2, "l2": 1e-6, "label_dim": 256, "output_gating": False}


def _late_fusion(inputs):
    """rgb and audio frames, each L2-normalised on its own (WILLOW's "LF" models)."""
    return FrameL2Normalize()(inputs["rgb"]), FrameL2Normalize()(inputs["audio"])


def _early_fusion(inputs):
    """The 1152-d concatenated frames, L2-normalised (the reference normalisation)."""
    return FrameL2Normalize()(keras.layers.Concatenate()([inputs["rgb"], inputs["audio"]]))


def _hidden(x, hidden: int, relu: bool, context_gating: bool, dropout: float):
    """Pooled features -> hidden FC (+BN) [-> relu6] [-> context gating]."""
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(hidden, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    if relu:
        x = keras.layers.Activation("relu6")(x)
    if context_gating:
        x = ContextGating()(x)
    return x


# Training settings the "cpu" presets were tuned with (``ModelConfig.training`` fields): every
# frame (no sampling, so training and evaluation see the same sequences), Adam 3e-3, batch 32.
CPU_TRAINING = {
    "netvlad": {"epochs": 6, "batch_size": 32, "learning_rate": 0.003, "num_samples": 0, "eval_batch_size": 32},
    "gru": {"epochs": 4, "batch_size": 32, "learning_rate": 0.003, "num_samples": 0, "eval_batch_size": 32},
    "lstm": {"epochs": 4, "batch_size": 32, "learning_rate": 0.003, "num_samples": 0, "eval_batch_size": 32},
}


# ---------------------------------------------------------------- VLAD family (WILLOW 2017)

def _vlad_presets(small_clusters: int, small_audio: int, small_hidden: int, published_clusters: int,
                  small_output_gating: bool) -> dict:
    return {
        "small": {"clusters": small_clusters, "audio_clusters": small_audio, "hidden": small_hidden,
                  "hidden_relu": True, "context_gating": True, "dropout": 0.0, "frame_pool": 1,
                  **HEAD_SMALL, "output_gating": small_output_gating},
        "published": {"clusters": published_clusters, "audio_clusters": published_clusters // 2, "hidden": 1024,
                      "hidden_relu": False, "context_gating": True, "dropout": 0.0, "frame_pool": 1,
                      **HEAD_PUBLISHED, "output_gating": True},
    }


# netvlad's small preset keeps the sizes the local pipeline was tuned with.
NETVLAD_PRESETS = _vlad_presets(16, 8, 256, 256, small_output_gating=False)
# "cpu": tuned to beat mean pooling on synthetic data with segment-local evidence on a 2-core CPU
# (benchmarks/bench_family_gap.py): 4-frame window means, hidden 128, dropout 0.5, sigmoid head;
# train with CPU_TRAINING["netvlad"] (every frame, num_samples 0).
NETVLAD_PRESETS["cpu"] = {**NETVLAD_PRESETS["small"], "hidden": 128, "dropout": 0.5, "frame_pool": 4,
                          "head": "logistic"}
NETRVLAD_PRESETS = _vlad_presets(8, 4, 64, 256, small_output_gating=True)
NETFV_PRESETS = _vlad_presets(8, 4, 64, 128, small_output_gating=True)


def _vlad_model(name: str, pooling, num_classes: int, clusters: int, audio_clusters: int, hidden: int,
                hidden_relu: bool, context_gating: bool, dropout: float, frame_pool: int, head: str,
                num_mixtures: int, l2: float, label_dim: int, output_gating: bool):
    check_head(head)
    inputs = frame_inputs()
    rgb, audio = _late_fusion(inputs)
    num_frames = inputs["num_frames"]
    if frame_pool > 1:  # mean of each window of frame_pool frames (after the per-frame L2 normalisation)
        rgb, pooled_frames = TemporalMeanPool(frame_pool, name="rgb_frame_pool")(rgb, num_frames)
        audio, _ = TemporalMeanPool(frame_pool, name="audio_frame_pool")(audio, num_frames)
        num_frames = pooled_frames
    pooled = keras.layers.Concatenate()([
        pooling(clusters, name="rgb_pool")(rgb, num_frames),
        pooling(audio_clusters, name="audio_pool")(audio, num_frames),
    ])
    x = _hidden(pooled, hidden, hidden_relu, context_gating, dropout)
    out = classifier_head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating)
    return keras.Model(inputs, out, name=name)


@register("netvlad", "frame", NETVLAD_PRESETS,
          "gated NetVLAD (WILLOW 2017 best single model): rgb/audio VLAD, hidden FC, context gating, MoE, "
          "gating on output probabilities (published: K=256, H=1024, 321.5M parameters)")
def netvlad(num_classes: int, **params):
    return _vlad_model("netvlad", NetVLAD, num_classes, **params)


@register("netrvlad", "frame", NETRVLAD_PRESETS,
          "gated NetRVLAD (WILLOW): residual-less VLAD (no cluster centres), otherwise as netvlad (K=256)")
def netrvlad(num_classes: int, **params):
    return _vlad_model("netrvlad", NetRVLAD, num_classes, **params)


@register("netfv", "frame", NETFV_PRESETS,
          "gated NetFV (WILLOW): first+second order Fisher-vector pooling, otherwise as netvlad (K=128)")
def netfv(num_classes: int, **params):
    return _vlad_model("netfv", NetFV, num_classes, **params)


# ---------------------------------------------------------------- bags of frames

DBOF_PRESETS = {
    "small": {"clusters": 64, "hidden": 32, "pooling": "max", "hidden_relu": True, "context_gating": False,
              "dropout": 0.0, **HEAD_SMALL},
    # Starter code DbofModel: 8192 clusters, 1024 hidden, max pool, MoE (37.6M); sample 30 frames at training.
    "published": {"clusters": 8192, "hidden": 1024, "pooling": "max", "hidden_relu": True, "context_gating": False,
                  "dropout": 0.0, **HEAD_PUBLISHED},
}


@register("dbof", "frame", DBOF_PRESETS,
          "deep bag of frames (starter code): per-frame projection to K clusters (BN, relu6), max pool over "
          "frames, hidden FC, MoE; train with num_samples=30")
def dbof(num_classes: int, clusters: int, hidden: int, pooling: str, hidden_relu: bool, context_gating: bool,
         dropout: float, head: str, num_mixtures: int, l2: float, label_dim: int, output_gating: bool):
    check_head(head)
    inputs = frame_inputs()
    frames = _early_fusion(inputs)
    pooled = DBoF(clusters, pooling, name="dbof_pool")(frames, inputs["num_frames"])
    x = _hidden(pooled, hidden, hidden_relu, context_gating, dropout)
    out = classifier_head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating)
    return keras.Model(inputs, out, name="dbof")


def _soft_dbof_presets(gated: bool) -> dict:
    gates = {"context_gating": gated, "gated_pooling": False}
    return {
        "small": {"clusters": 64, "audio_clusters": 32, "hidden": 32, "max_pool": False, "hidden_relu": False,
                  "dropout": 0.0, **gates, **HEAD_SMALL, "output_gating": gated},
        # K=8000 (audio K/2), hidden 1024, no ReLU (WILLOW --dbof_relu=False), MoE: 40.8M parameters;
        # the gated variant adds context gating on the hidden layer (+1.05M).
        "published": {"clusters": 8000, "audio_clusters": 4000, "hidden": 1024, "max_pool": False,
                      "hidden_relu": False, "dropout": 0.0, **gates, **HEAD_PUBLISHED},
    }


SOFT_DBOF_PRESETS = _soft_dbof_presets(gated=False)
GATED_SOFT_DBOF_PRESETS = _soft_dbof_presets(gated=True)


def _soft_dbof_model(name: str, num_classes: int, clusters: int, audio_clusters: int, hidden: int, max_pool: bool,
                     hidden_relu: bool, dropout: float, context_gating: bool, gated_pooling: bool, head: str,
                     num_mixtures: int, l2: float, label_dim: int, output_gating: bool):
    check_head(head)
    inputs = frame_inputs()
    rgb, audio = _late_fusion(inputs)
    if gated_pooling:  # WILLOW's GatedDBoF on the rgb frames
        rgb_pool = GatedSoftDBoF(clusters, name="rgb_pool")(rgb, inputs["num_frames"])
    else:
        rgb_pool = SoftDBoF(clusters, max_pool, name="rgb_pool")(rgb, inputs["num_frames"])
    audio_pool = SoftDBoF(audio_clusters, max_pool, name="audio_pool")(audio, inputs["num_frames"])
    x = _hidden(keras.layers.Concatenate()([rgb_pool, audio_pool]), hidden, hidden_relu, context_gating, dropout)
    out = classifier_head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating)
    return keras.Model(inputs, out, name=name)


@register("soft_dbof", "frame", SOFT_DBOF_PRESETS,
          "soft deep bag of frames (WILLOW): softmax cluster assignment, sum pool over real frames, L2 norm, "
          "hidden FC, MoE (published K=8000: 40.8M)")
def soft_dbof(num_classes: int, **params):
    return _soft_dbof_model("soft_dbof", num_classes, **params)


@register("gated_soft_dbof", "frame", GATED_SOFT_DBOF_PRESETS,
          "gated soft-DBoF: soft_dbof + context gating on the hidden layer; options: WILLOW's gated pooling "
          "(gated_pooling) and gating on output probabilities (output_gating)")
def gated_soft_dbof(num_classes: int, **params):
    return _soft_dbof_model("gated_soft_dbof", num_classes, **params)


# ---------------------------------------------------------------- recurrent

# RNN input options (off in "small" / "published"): ``frame_pool`` averages windows of that many
# consecutive frames before the RNN (fewer, cleaner steps); ``input_projection`` > 0 maps each
# (pooled) frame to that many dims with a bias-free Dense + LayerNormalization (the L2-normalised
# 1152-d frames have tiny per-direction components; the projection makes them O(1)).
_RNN_INPUT_OFF = {"frame_pool": 1, "input_projection": 0}


def _rnn_presets(published_units: int) -> dict:
    return {
        "small": {"units": 32, "layers": 2, "bidirectional": False, "state": "last", "dropout": 0.0,
                  **_RNN_INPUT_OFF, **HEAD_SMALL},
        # WILLOW's LstmModel / GruModel: 2 layers, the final state of every layer (TF1 MultiRNNCell with
        # state_is_tuple=False) into MoE: LSTM 2x1024 96.4M, GRU 2x1200 63.5M; state="last" (top layer's
        # final output only, as the starter code) gives 37.1M / 40.3M.
        "published": {"units": published_units, "layers": 2, "bidirectional": False, "state": "all",
                      "dropout": 0.0, **_RNN_INPUT_OFF, **HEAD_PUBLISHED},
        # "cpu": tuned to beat mean pooling on synthetic data with segment-local evidence on a 2-core CPU
        # (benchmarks/bench_family_gap.py): 4-frame window means (75 steps for 300 frames), a 64-d
        # projection + LayerNorm, one 64-unit layer, max over its outputs, MoE; train with
        # CPU_TRAINING (every frame, num_samples 0).
        "cpu": {"units": 64, "layers": 1, "bidirectional": False, "state": "max", "dropout": 0.0,
                "frame_pool": 4, "input_projection": 64, **HEAD_SMALL},
    }


def _rnn_model(name: str, cell, num_classes: int, units: int, layers: int, bidirectional: bool, state: str,
               dropout: float, frame_pool: int, input_projection: int, head: str, num_mixtures: int, l2: float,
               label_dim: int, output_gating: bool):
    check_head(head)
    if state not in ("last", "all", "max"):
        raise ValueError(f"state must be 'last' (top layer's final output), 'all' (every layer's final "
                         f"state) or 'max' (max over the top layer's outputs at the real frames); got {state!r}")
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    if frame_pool < 1 or input_projection < 0:
        raise ValueError(f"need frame_pool >= 1 and input_projection >= 0, got {frame_pool}, {input_projection}")
    inputs = frame_inputs()
    x = _early_fusion(inputs)
    num_frames = inputs["num_frames"]
    if frame_pool > 1:
        x, num_frames = TemporalMeanPool(frame_pool, name="frame_pool")(x, num_frames)
    if input_projection:
        x = keras.layers.Dense(input_projection, use_bias=False, name="input_projection")(x)
        x = keras.layers.LayerNormalization(name="input_norm")(x)
    mask = FrameMask()(x, num_frames)
    finals, states = [], []
    for i in range(layers):
        rnn = cell(units, return_sequences=True, return_state=True, name=f"{name}_{i}")
        if bidirectional:
            rnn = keras.layers.Bidirectional(rnn, name=f"bi{name}_{i}")
        outputs = rnn(x, mask=mask)
        x, layer_states = outputs[0], list(outputs[1:])
        states += layer_states
        per_direction = len(layer_states) // (2 if bidirectional else 1)
        finals = layer_states[::per_direction]  # the h state of each direction
    if state == "max":
        features = [MaskedMaxPool()(x, num_frames)]  # x: the top layer's outputs [B, F, units (x2)]
    else:
        features = finals if state == "last" else states
    features = keras.layers.Concatenate()(features) if len(features) > 1 else features[0]
    if dropout:
        features = keras.layers.Dropout(dropout)(features)
    out = classifier_head(features, num_classes, head, num_mixtures, l2, label_dim, output_gating)
    return keras.Model(inputs, out, name=name)


@register("lstm", "frame", _rnn_presets(1024),
          "stacked LSTM over the real frames (masked), uni- or bidirectional, final state into MoE "
          "(published 2x1024)")
def lstm(num_classes: int, **params):
    return _rnn_model("lstm", keras.layers.LSTM, num_classes, **params)


@register("gru", "frame", _rnn_presets(1200),
          "stacked GRU over the real frames (masked), uni- or bidirectional, final state into MoE "
          "(published 2x1200)")
def gru(num_classes: int, **params):
    return _rnn_model("gru", keras.layers.GRU, num_classes, **params)


# ---------------------------------------------------------------- attention

TRANSFORMER_PRESETS = {
    "small": {"width": 32, "layers": 1, "num_heads": 2, "ff_dim": 64, "dropout": 0.0, "positional": True,
              **HEAD_SMALL},
    # No published YT8M figure: a mid-size encoder (~23M parameters at 3,862 classes).
    "published": {"width": 512, "layers": 4, "num_heads": 8, "ff_dim": 2048, "dropout": 0.1, "positional": True,
                  **HEAD_PUBLISHED},
}


@register("transformer", "frame", TRANSFORMER_PRESETS,
          "transformer encoder over the frames (padding masked as attention keys), masked mean pool, MoE")
def transformer(num_classes: int, width: int, layers: int, num_heads: int, ff_dim: int, dropout: float,
                positional: bool, head: str, num_mixtures: int, l2: float, label_dim: int, output_gating: bool):
    check_head(head)
    inputs = frame_inputs()
    x = keras.layers.Dense(width)(_early_fusion(inputs))
    if positional:
        x = SinusoidalPositions()(x)
    for i in range(layers):
        x = TransformerEncoderBlock(num_heads, ff_dim, dropout, name=f"encoder_{i}")(x, inputs["num_frames"])
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    pooled = MaskedMeanPool()(x, inputs["num_frames"])
    out = classifier_head(pooled, num_classes, head, num_mixtures, l2, label_dim, output_gating)
    return keras.Model(inputs, out, name="transformer")
