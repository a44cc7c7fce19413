"""Frame-level families of the 2018 2nd-place team (Samsung AI Moscow, twoleggedeye/youtube8m,
PyTorch) that the rest of the zoo lacks, rewritten in Keras 3:

``attention_net``     ``sequence_models/models.py`` ``AttentionModel`` (configs/config21.yaml)
``bilstm_attention``  ``EarlyConcatLSTM4`` (configs/config27.yaml, config28.yaml)
``frame_conv_max``    ``EarlyConcatAlternate`` (configs/config19.yaml): a time-distributed dense (or,
                      with ``kernel_size`` > 1, a temporal convolution as in their ``FrameConv``) per
                      modality, max over frames, their ``ResNetLike`` trunk
``vlad_bow``          ``BoWResnetLike`` with ``VLADBoW`` and a learnable softmax power
                      (configs/config91.yaml)

Deviations from the team's code, all on purpose:

* Padding frames are masked everywhere (the batch carries ``num_frames``). The team's attention
  softmaxes, means, max pools and bag-of-words sums run over the zero padding too
  (``EarlyConcatLSTM4`` packs its LSTM inputs but not its attention); here a prediction does not
  depend on how much padding follows the real frames.
* ``vlad_bow`` raises the assignment logits to the power ``p`` as ``sign(z) |z|^p``: the team's
  ``z.pow(p)`` equals it at their initial ``p = 3`` but is NaN for a negative ``z`` once a learned
  ``p`` is not an integer. Their unused ``cluster_centers`` parameters (``VLADBoW`` never reads them)
  are left out.
* Outputs are probabilities (sigmoid), as every family of the zoo; the team trained logits with
  ``binary_cross_entropy_with_logits``. The head is the zoo's ``classifier_head``: "logistic" is
  their final ``nn.Linear`` + sigmoid (published presets); the small presets use the MoE head.
* LeakyReLU slope 0.01 (PyTorch's default, which the team used).
* BN moving averages as PyTorch's default ``nn.BatchNorm1d`` (``momentum=0.1``, which no call of the
  team's changes) in the published presets: ``bn_momentum`` 0.9 (layers.TORCH_BN_MOMENTUM); the small
  presets keep Keras' 0.99.

Published presets reproduce the team's layer sizes at 3,862 classes (parameter counts of their
modules in ``sizes.SECOND_PLACE_CODE_PARAMETERS``; the team published no sizes of their own).
"""

from __future__ import annotations

import keras
from keras import ops

from yt8m.models.heads import HEAD_SMALL, check_head, classifier_head
from yt8m.models.inputs import frame_inputs
from yt8m.models.layers import (KERAS_BN_MOMENTUM, TORCH_BN_MOMENTUM, FrameMask, MaskedMeanPool, batch_norm, frame_mask,
                                masked_max, window_means)
from yt8m.models.registry import register
from yt8m.models.video_level import TEAM_VALIDATION_EVERY, resnet_trunk

# Heads: the small presets as the rest of the zoo (heads.HEAD_SMALL); the published ones the team's final nn.Linear
# (+ sigmoid), without weight decay (their configs leave Adam's weight_decay off).
HEAD_TEAM = {"head": "logistic", "num_mixtures": 2, "l2": 0.0, "label_dim": 256, "output_gating": False}
# BN moving-average momentum: Keras' 0.99 for the small presets' few hundred steps; the team's PyTorch default
# (nn.BatchNorm1d momentum=0.1, i.e. Keras 0.9) for the published ones. Their BNs: AttentionModel ``self._bn``,
# EarlyConcatLSTM4 ``self._bn``, EarlyConcatAlternate.AlternateFC ``bn_feature`` (sequence_models/models.py) and
# ResNetLike.FCBlock ``batch_norm`` (video_level_nn_models/models.py), all ``nn.BatchNorm1d(size)``.
BN_SMALL = {"bn_momentum": KERAS_BN_MOMENTUM}
BN_TEAM = {"bn_momentum": TORCH_BN_MOMENTUM}



# ---------------------------------------------------------------- layers

@keras.saving.register_keras_serializable("yt8m_second_place")
class MaskedAttentionPool(keras.layers.Layer):
    """``sum_t softmax_t(x_t w + b) x_t`` over the first ``num_frames`` frames of ``[B, F, D]``
    (the team's ``nn.Linear(D, 1)`` + softmax over time); 0 for an empty video.

    Accepts (and consumes) a Keras timestep mask, e.g. from a masked RNN's output sequence.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, x_shape, num_frames_shape=None):
        self.score = keras.layers.Dense(1, name="score")
        self.score.build(x_shape)

    def call(self, x, num_frames, mask=None):
        real = frame_mask(num_frames, ops.shape(x)[1], "bool")  # [B, F]
        logits = ops.squeeze(self.score(x), -1)
        logits = ops.where(real, logits, ops.full_like(logits, -1e30))
        weights = ops.softmax(logits, axis=-1) * ops.cast(real, x.dtype)
        return ops.sum(x * ops.expand_dims(weights, -1), axis=1)

    def compute_mask(self, x, num_frames, mask=None):
        return None

    def compute_output_spec(self, x, num_frames, mask=None):
        return keras.KerasTensor((x.shape[0], x.shape[-1]), dtype=x.dtype)


@keras.saving.register_keras_serializable("yt8m_second_place")
class BroadcastOverFrames(keras.layers.Layer):
    """``concat([frames, tile(vector)])``: appends a per-video vector ``[B, V]`` to every frame of
    ``[B, F, D]`` (the team's ``vector.repeat(...)`` + ``torch.cat(..., dim=2)``)."""

    def call(self, frames, vector):
        tiled = ops.zeros_like(frames[..., :1]) + ops.expand_dims(vector, 1)  # [B, F, V]
        return ops.concatenate([frames, tiled], axis=-1)

    def compute_output_spec(self, frames, vector):
        return keras.KerasTensor(tuple(frames.shape[:2]) + (frames.shape[-1] + vector.shape[-1],), dtype=frames.dtype)


@keras.saving.register_keras_serializable("yt8m_second_place")
class FrameProjectionMax(keras.layers.Layer):
    """Per frame ``relu(BN(conv_k(x)))`` into ``units`` channels, max over the real frames -> ``[B, units]``.

    ``kernel_size`` 1 is the team's time-distributed ``nn.Linear`` (``EarlyConcatAlternate.AlternateFC``);
    larger kernels are their ``FrameConv``'s temporal ``nn.Conv1d`` ("same" padding). Padding frames are
    zeroed before the convolution (a real frame next to the end sees zeros, whatever the padding
    holds) and BN's training statistics use the real frames only.
    """

    def __init__(self, units: int, kernel_size: int = 1, bn_momentum: float = KERAS_BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        if units < 1 or kernel_size < 1:
            raise ValueError(f"need units >= 1 and kernel_size >= 1, got {units}, {kernel_size}")
        self.units, self.kernel_size, self.bn_momentum = units, kernel_size, bn_momentum

    def build(self, x_shape, num_frames_shape=None):
        if self.kernel_size == 1:
            self.project = keras.layers.Dense(self.units, name="project")
        else:
            self.project = keras.layers.Conv1D(self.units, self.kernel_size, padding="same", name="project")
        self.project.build(x_shape)
        self.norm = batch_norm(self.bn_momentum, name="norm")
        self.norm.build((None, self.units))

    def call(self, x, num_frames, training=None):
        frames = ops.shape(x)[1]
        mask = frame_mask(num_frames, frames, x.dtype)
        h = self.project(x * ops.expand_dims(mask, -1))
        flat = self.norm(ops.reshape(h, (-1, self.units)), training=training, mask=ops.reshape(mask, (-1,)) > 0)
        h = ops.reshape(ops.relu(flat), (-1, frames, self.units))
        return masked_max(h, mask > 0)

    def compute_output_spec(self, x, num_frames, training=None):
        return keras.KerasTensor((x.shape[0], self.units), dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "kernel_size": self.kernel_size,
                "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable("yt8m_second_place")
class PowerSoftBoW(keras.layers.Layer):
    """The team's ``VLADBoW`` on both modalities: per frame ``softmax(sign(z) |z|^p)`` with
    ``z = x W + b`` (``clusters`` / ``audio_clusters`` soft words), summed over the real frames
    -> ``([B, K], [B, K_audio])``. One power ``p`` for both modalities (the team passes the same
    ``nn.Parameter``), learned when ``learnable_power``, initialised at ``power``."""

    def __init__(self, clusters: int, audio_clusters: int, power: float = 3.0, learnable_power: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.clusters, self.audio_clusters = clusters, audio_clusters
        self.power_init, self.learnable_power = float(power), bool(learnable_power)

    def build(self, rgb_shape, audio_shape, num_frames_shape=None):
        self.rgb_assign = keras.layers.Dense(self.clusters, name="rgb_assign")
        self.rgb_assign.build(rgb_shape)
        self.audio_assign = keras.layers.Dense(self.audio_clusters, name="audio_assign")
        self.audio_assign.build(audio_shape)
        self.power = self.add_weight(name="power", shape=(), trainable=self.learnable_power,
                                     initializer=keras.initializers.Constant(self.power_init))

    def _bow(self, assign, x, mask):
        z = assign(x)
        z = ops.sign(z) * ops.power(ops.maximum(ops.abs(z), 1e-12), self.power)
        return ops.sum(ops.softmax(z, axis=-1) * ops.expand_dims(mask, -1), axis=1)

    def call(self, rgb, audio, num_frames):
        mask = frame_mask(num_frames, ops.shape(rgb)[1], rgb.dtype)
        return self._bow(self.rgb_assign, rgb, mask), self._bow(self.audio_assign, audio, mask)

    def compute_output_spec(self, rgb, audio, num_frames):
        return (keras.KerasTensor((rgb.shape[0], self.clusters), dtype=rgb.dtype),
                keras.KerasTensor((rgb.shape[0], self.audio_clusters), dtype=rgb.dtype))

    def get_config(self):
        return {**super().get_config(), "clusters": self.clusters, "audio_clusters": self.audio_clusters,
                "power": self.power_init, "learnable_power": self.learnable_power}


# ---------------------------------------------------------------- shared blocks

def _fcn(x, sizes, dropout: float, name: str):
    """The team's ``FCN`` hidden part: ``Linear -> Dropout -> ReLU`` per size (the output Linear is the head)."""
    for i, units in enumerate(sizes):
        x = keras.layers.Dense(int(units), name=f"{name}_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
        x = keras.layers.ReLU()(x)
    return x


def _resnet_trunk(video, audio, inner: int, branch_blocks: int, fused_blocks: int, dropout: float,
                  bn_momentum: float):
    """The team's ``video_level_nn_models.models.ResNetLike`` up to its output Linear (``video_part ==
    audio_part``), concatenating [audio, video] as they do; the blocks are the zoo's ResNet-like ones."""
    return resnet_trunk([audio, video], inner, branch_blocks, fused_blocks, dropout, bn_momentum)


def _head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum):
    return classifier_head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum)


# ---------------------------------------------------------------- attention_net

# The team's training recipes (twoleggedeye/youtube8m, commit c640c50: configs/configNN.yaml
# ``batch_size`` / ``optimizer_kwargs.lr`` / ``epochs`` x ``max_batches_per_epoch``, youtube8m/utils/training.py
# ``clip_grad_norm_(..., grad_clip=10)``; their frame reader feeds every frame, no sampling). Their
# ReduceLROnPlateau (``lr_scheduler_kwargs``: halve the lr when 1 - validation GAP stops improving, after
# ``patience`` epochs) runs on the trainer's validation slice (yt8m/plateau.py) of 1 in
# ``video_level.TEAM_VALIDATION_EVERY`` training records; no other decay (lr_decay 1.0). Their early stopping
# (config19: patience 100 of 30 epochs) never fired: off. Not expressible, so left out: config27's RMSprop ->
# here the trainer's Adam at their lr.


def _team_recipe(learning_rate: float, batch_size: int, epochs: int, batches_per_epoch: int,
                 plateau_patience: int) -> dict:
    return {"learning_rate": learning_rate, "batch_size": batch_size, "epochs": epochs,
            "steps_per_epoch": batches_per_epoch, "lr_decay": 1.0, "clip_gradient_norm": 10.0, "num_samples": 0,
            "validation_every": TEAM_VALIDATION_EVERY, "lr_plateau_factor": 0.5,
            "lr_plateau_patience": plateau_patience}


_TEAM = "twoleggedeye/youtube8m configs/"
ATTENTION_NET_RECIPES = {"published": _team_recipe(1e-3, 400, 50, 1000, plateau_patience=0)}
BILSTM_ATTENTION_RECIPES = {"published": _team_recipe(1e-4, 256, 50, 1000, plateau_patience=0)}
FRAME_CONV_MAX_RECIPES = {"published": _team_recipe(5e-3, 512, 30, 2000, plateau_patience=1)}
VLAD_BOW_RECIPES = {"published": _team_recipe(1e-3, 128, 60, 2000, plateau_patience=1)}
_PLATEAU = ("ReduceLROnPlateau factor 0.5 patience {} on a validation slice of 1 in "
            f"{TEAM_VALIDATION_EVERY} training records")
RECIPE_SOURCES = {
    "attention_net": _TEAM + f"config21.yaml (Adam 1e-3; {_PLATEAU.format(0)})",
    "bilstm_attention": _TEAM + f"config27.yaml (RMSprop 1e-4 -> Adam 1e-4; {_PLATEAU.format(0)})",
    "frame_conv_max": _TEAM + f"config19.yaml (Adam 5e-3; {_PLATEAU.format(1)})",
    "vlad_bow": _TEAM + f"config91.yaml (Adam 1e-3; {_PLATEAU.format(1)})",
}


ATTENTION_NET_PRESETS = {
    "small": {"layers": 2, "hidden": 64, "fc_sizes": [256], "fc_dropout": 0.0, **HEAD_SMALL, **BN_SMALL},
    # AttentionModel defaults (config21: model_kwargs {}): 3 layers of 1024, FCN (4096, 4096), no dropout.
    "published": {"layers": 3, "hidden": 1024, "fc_sizes": [4096, 4096], "fc_dropout": 0.0, **HEAD_TEAM, **BN_TEAM},
}


@register("attention_net", "frame", ATTENTION_NET_PRESETS,
          "2018 2nd place AttentionModel: per layer a frame-wise FC+ReLU over [frames, earlier pooled "
          "vectors], masked attention pooling, pooled vector appended to every frame; masked mean, BN, "
          "FC 4096x2 (published 3x1024)",
          recipes=ATTENTION_NET_RECIPES, recipe_sources={"published": RECIPE_SOURCES["attention_net"]})
def attention_net(num_classes: int, layers: int, hidden: int, fc_sizes, fc_dropout: float, head: str,
                  num_mixtures: int, l2: float, label_dim: int, output_gating: bool, bn_momentum: float):
    check_head(head)
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    inputs = frame_inputs()
    num_frames = inputs["num_frames"]
    frames = keras.layers.Concatenate()([inputs["rgb"], inputs["audio"]])  # the team's raw early concat
    x, pooled = frames, [MaskedMeanPool()(frames, num_frames)]
    for i in range(layers):
        vectors = keras.layers.Dense(hidden, activation="relu", name=f"frame_fc_{i}")(x)
        vector = MaskedAttentionPool(name=f"attention_{i}")(vectors, num_frames)
        pooled.append(vector)  # the mean over frames of the broadcast vector is the vector itself
        if i + 1 < layers:
            x = BroadcastOverFrames()(x, vector)
    features = keras.layers.Concatenate()(pooled)
    features = batch_norm(bn_momentum)(features)
    features = _fcn(features, fc_sizes, fc_dropout, "fc")
    return keras.Model(inputs, _head(features, num_classes, head, num_mixtures, l2, label_dim, output_gating,
                                     bn_momentum), name="attention_net")


# ---------------------------------------------------------------- bilstm_attention

BILSTM_ATTENTION_PRESETS = {
    "small": {"rgb_projection": 64, "audio_projection": 16, "rgb_units": 32, "audio_units": 8, "layers": 1,
              "fc_sizes": [256], "fc_dropout": 0.0, **HEAD_SMALL, **BN_SMALL},
    # EarlyConcatLSTM4 defaults (config27/28: model_kwargs {}): Linear(1024,1024)+ReLU / Linear(128,128)+ReLU,
    # one densely connected bi-LSTM layer (rgb 1024, audio 128 units per direction), attention over
    # [projection, LSTM outputs], BN, FCN (4096, 4096).
    "published": {"rgb_projection": 1024, "audio_projection": 128, "rgb_units": 1024, "audio_units": 128,
                  "layers": 1, "fc_sizes": [4096, 4096], "fc_dropout": 0.0, **HEAD_TEAM, **BN_TEAM},
}


def _bilstm_branch(x, num_frames, projection: int, units: int, layers: int, name: str):
    if projection:
        x = keras.layers.Dense(projection, activation="relu", name=f"{name}_projection")(x)
    mask = FrameMask()(x, num_frames)
    for i in range(layers):
        rnn = keras.layers.Bidirectional(keras.layers.LSTM(units, return_sequences=True), name=f"{name}_bilstm_{i}")
        x = keras.layers.Concatenate()([x, rnn(x, mask=mask)])  # dense connections, as the team's
    return MaskedAttentionPool(name=f"{name}_attention")(x, num_frames)


@register("bilstm_attention", "frame", BILSTM_ATTENTION_PRESETS,
          "2018 2nd place EarlyConcatLSTM4: per modality FC+ReLU, densely connected bi-LSTM over the real "
          "frames, masked attention pooling; BN, FC 4096x2 (published rgb 1024 / audio 128 units)",
          recipes=BILSTM_ATTENTION_RECIPES, recipe_sources={"published": RECIPE_SOURCES["bilstm_attention"]})
def bilstm_attention(num_classes: int, rgb_projection: int, audio_projection: int, rgb_units: int,
                     audio_units: int, layers: int, fc_sizes, fc_dropout: float, head: str, num_mixtures: int,
                     l2: float, label_dim: int, output_gating: bool, bn_momentum: float):
    check_head(head)
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    inputs = frame_inputs()
    num_frames = inputs["num_frames"]
    video = _bilstm_branch(inputs["rgb"], num_frames, rgb_projection, rgb_units, layers, "rgb")
    audio = _bilstm_branch(inputs["audio"], num_frames, audio_projection, audio_units, layers, "audio")
    features = batch_norm(bn_momentum)(keras.layers.Concatenate()([video, audio]))
    features = _fcn(features, fc_sizes, fc_dropout, "fc")
    return keras.Model(inputs, _head(features, num_classes, head, num_mixtures, l2, label_dim, output_gating,
                                     bn_momentum), name="bilstm_attention")


# ---------------------------------------------------------------- frame_conv_max

FRAME_CONV_MAX_PRESETS = {
    "small": {"rgb_units": 64, "audio_units": 16, "kernel_size": 1, "inner": 128, "branch_blocks": 1,
              "fused_blocks": 1, "dropout": 0.0, "frame_pool": 1, "mean_skip": False, **HEAD_SMALL, **BN_SMALL},
    # EarlyConcatAlternate (config19): AlternateFC rgb 1024 / audio 128, ResNetLike(inner_size=1024,
    # av_id_block_num=2, concat_id_block_num=2, dropout 0.5 -- their default; config19's dropout 0.5
    # is not passed on).
    "published": {"rgb_units": 1024, "audio_units": 128, "kernel_size": 1, "inner": 1024, "branch_blocks": 2,
                  "fused_blocks": 2, "dropout": 0.5, "frame_pool": 1, "mean_skip": False, **HEAD_TEAM, **BN_TEAM},
}
# "local": the default local run's frame-level member (yt8m_pipeline/configs/local.yaml). Screened against the
# previous one (netvlad "local") and the gate's converged logistic on three generator settings
# (benchmarks/results/family_gap_screen.md, 3 folds, holdout GAP): 100 classes 0.651 vs NetVLAD 0.558, logistic
# 0.598; 200 noisy 0.418 vs 0.391 (NetVLAD local at 30,000 examples), 0.422; 400 classes 0.397 vs 0.296, 0.469;
# in about half NetVLAD's training time. Under the logistic at 200-400 classes at 60,000 examples: not converged.
# 512 rgb detectors (one per direction of ~256 classes' conjunctions), 8-frame window means (every frame seen at
# 1/8 of the projection cost), dropout 0.3; recipe FRAME_CONV_MAX_LOCAL_TRAINING: 90,000 examples, or 600 per
# class when more (the sixth session's screen: 200 noisy classes 0.374 / 0.418 / 0.435 after 30,000 / 60,000 /
# 120,000 examples, logistic 0.422; 400 classes 0.397 / 0.452 / 0.489 after 60,000 / 120,000 / 240,000, logistic
# 0.469). A mean-pooled skip into the head (mean_skip) did not help: 0.398 at 400 classes, 0.371 at 200 (60,000).
# At least 90,000 examples (tenth session): at 100 classes 60,000 under-trained it (c100-v4000: 0.650 / 0.687 / 0.710
# after 60,000 / 90,000 / 120,000 examples); 90,000 keeps `make run` within 10 minutes (120,000: 10 min 54 s).
# Batch 64 was no faster per example on 2 cores (120,000: 0.697 in 182 s vs 0.710 in 194 s at batch 32); a cosine
# decay of the learning rate (training.lr_schedule) helped at 200-400 classes (+0.004 / +0.021 / +0.006) and hurt at
# 100 (-0.027 at 60,000, -0.018 at 120,000): not the default.
FRAME_CONV_MAX_PRESETS["local"] = {**FRAME_CONV_MAX_PRESETS["small"], "rgb_units": 512, "audio_units": 64,
                                   "inner": 256, "frame_pool": 8, "dropout": 0.3}
FRAME_CONV_MAX_LOCAL_TRAINING = {"examples_to_see": 90_000, "examples_per_class": 600, "batch_size": 32,
                                 "learning_rate": 1e-3, "num_samples": 0, "eval_batch_size": 64}
FRAME_CONV_MAX_RECIPES["local"] = FRAME_CONV_MAX_LOCAL_TRAINING


@register("frame_conv_max", "frame", FRAME_CONV_MAX_PRESETS,
          "2018 2nd place EarlyConcatAlternate: time-distributed FC (kernel_size 1) or temporal conv per "
          "modality, BN, ReLU, masked max over frames, ResNet-like trunk (published: 1024/128, inner 1024, 2+2 "
          "blocks)",
          recipes=FRAME_CONV_MAX_RECIPES, recipe_sources={"published": RECIPE_SOURCES["frame_conv_max"],
                                                          "local": "benchmarks/bench_family_gap.py --screen"})
def frame_conv_max(num_classes: int, rgb_units: int, audio_units: int, kernel_size: int, inner: int,
                   branch_blocks: int, fused_blocks: int, dropout: float, frame_pool: int, mean_skip: bool,
                   head: str, num_mixtures: int, l2: float, label_dim: int, output_gating: bool, bn_momentum: float):
    check_head(head)
    inputs = frame_inputs()
    # frame_pool and mean_skip are not in the team's model (1 and off in both presets)
    rgb, audio, num_frames = window_means(inputs["rgb"], inputs["audio"], inputs["num_frames"], frame_pool)
    video = FrameProjectionMax(rgb_units, kernel_size, bn_momentum, name="rgb_frames")(rgb, num_frames)
    audio_max = FrameProjectionMax(audio_units, kernel_size, bn_momentum, name="audio_frames")(audio, num_frames)
    x = _resnet_trunk(video, audio_max, inner, branch_blocks, fused_blocks, dropout, bn_momentum)
    if mean_skip:  # the mean-pooled frames straight into the head: the video-level logistic's input beside the trunk
        means = keras.layers.Concatenate(name="frame_means")([MaskedMeanPool()(inputs["rgb"], inputs["num_frames"]),
                                                             MaskedMeanPool()(inputs["audio"], inputs["num_frames"])])
        x = keras.layers.Concatenate(name="trunk_and_means")([x, batch_norm(bn_momentum, name="means_norm")(means)])
    return keras.Model(inputs, _head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum),
                       name="frame_conv_max")


# ---------------------------------------------------------------- vlad_bow

VLAD_BOW_PRESETS = {
    "small": {"clusters": 64, "audio_clusters": 16, "power": 3.0, "learnable_power": True, "bow_dropout": 0.0,
              "inner": 128, "branch_blocks": 1, "fused_blocks": 1, "dropout": 0.0, **HEAD_SMALL, **BN_SMALL},
    # BoWResnetLike (config91): n_clusters 4096 (rgb and audio), softmax_power 3, learnable_power, dropout
    # 0.1 on the bags; ResNetLike(inner_size=1024, av_id 1, concat_id 1, its default dropout 0.5).
    "published": {"clusters": 4096, "audio_clusters": 4096, "power": 3.0, "learnable_power": True,
                  "bow_dropout": 0.1, "inner": 1024, "branch_blocks": 1, "fused_blocks": 1, "dropout": 0.5,
                  **HEAD_TEAM, **BN_TEAM},
}


@register("vlad_bow", "frame", VLAD_BOW_PRESETS,
          "2018 2nd place BoWResnetLike: soft bag of words per modality (softmax of assignment logits raised "
          "to a learnable power), summed over the real frames, ResNet-like trunk (published K=4096)",
          recipes=VLAD_BOW_RECIPES, recipe_sources={"published": RECIPE_SOURCES["vlad_bow"]})
def vlad_bow(num_classes: int, clusters: int, audio_clusters: int, power: float, learnable_power: bool,
             bow_dropout: float, inner: int, branch_blocks: int, fused_blocks: int, dropout: float, head: str,
             num_mixtures: int, l2: float, label_dim: int, output_gating: bool, bn_momentum: float):
    check_head(head)
    inputs = frame_inputs()
    video, audio = PowerSoftBoW(clusters, audio_clusters, power, learnable_power, name="bow")(
        inputs["rgb"], inputs["audio"], inputs["num_frames"])
    if bow_dropout:
        video, audio = keras.layers.Dropout(bow_dropout)(video), keras.layers.Dropout(bow_dropout)(audio)
    x = _resnet_trunk(video, audio, inner, branch_blocks, fused_blocks, dropout, bn_momentum)
    return keras.Model(inputs, _head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum),
                       name="vlad_bow")
