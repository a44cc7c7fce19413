"""Video-level families: inputs ``mean_rgb`` [1024] and ``mean_audio`` [128]."""

from __future__ import annotations

import keras

from yt8m import schema
from yt8m.models.heads import check_head, classifier_head
from yt8m.models.inputs import video_inputs
from yt8m.models.layers import (KERAS_BN_MOMENTUM, SLIM_BN_MOMENTUM, TORCH_BN_MOMENTUM, ContextGating, FeatureSlice,
                                MixtureOfExperts, batch_norm, slim_l2)
from yt8m.models.registry import register


def _normalized_video_vector(inputs):
    x = keras.layers.Concatenate()([inputs["mean_rgb"], inputs["mean_audio"]])
    return keras.layers.UnitNormalization()(x)


# The starter code's training recipe (google/youtube-8m train.py defaults; its README trains the
# video-level baselines and DbofModel with them): Adam, --base_learning_rate 0.01, --learning_rate_decay
# 0.95 every --learning_rate_decay_examples 4000000, --batch_size 1024, --clip_gradient_norm 1.0,
# --num_epochs 5.
STARTER_RECIPE = {"learning_rate": 0.01, "lr_decay": 0.95, "lr_decay_examples": 4_000_000, "batch_size": 1024,
                  "clip_gradient_norm": 1.0, "epochs": 5}
STARTER_SOURCE = "google/youtube-8m train.py defaults"


@register("logistic", "video", {"small": {"l2": 1e-8}, "published": {"l2": 1e-8}},
          "sigmoid FC on the L2-normalised mean features (the class-prior-beating baseline)",
          recipes={"published": STARTER_RECIPE}, recipe_sources={"published": STARTER_SOURCE})
def logistic(num_classes: int, l2: float):
    inputs = video_inputs()
    reg = slim_l2(l2)  # google/youtube-8m LogisticModel: slim.l2_regularizer(1e-8), l2 * sum(w^2) / 2
    out = keras.layers.Dense(num_classes, activation="sigmoid", kernel_regularizer=reg)(
        _normalized_video_vector(inputs))
    return keras.Model(inputs, out, name="logistic")


MOE_PRESETS = {
    # bn_momentum: of the BN in the optional output gating; Keras' 0.99 for the few-hundred-step runs
    "small": {"num_mixtures": 2, "l2": 1e-6, "output_gating": False, "bn_momentum": KERAS_BN_MOMENTUM},
    # The starter-code baseline (22.3M parameters, no BN); ``output_gating`` adds WILLOW's C x C gating, whose BN
    # is slim's (Youtube-8M-WILLOW video_level_models.py MoeModel ``slim.batch_norm(gates, ...,
    # scope="gating_prob_bn")``, default decay 0.999).
    "published": {"num_mixtures": 2, "l2": 1e-6, "output_gating": False, "bn_momentum": SLIM_BN_MOMENTUM},
}


@register("moe", "video", MOE_PRESETS,
          "Mixture-of-Experts: softmax gates over sigmoid experts + dummy expert (starter-code baseline); "
          "optional context gating on the output probabilities",
          recipes={"published": STARTER_RECIPE}, recipe_sources={"published": STARTER_SOURCE})
def moe(num_classes: int, num_mixtures: int, l2: float, output_gating: bool = False,
        bn_momentum: float = KERAS_BN_MOMENTUM):
    inputs = video_inputs()
    out = MixtureOfExperts(num_classes, num_mixtures, l2)(_normalized_video_vector(inputs))
    if output_gating:
        out = ContextGating(bn_momentum, name="output_gating")(out)
    return keras.Model(inputs, out, name="moe")


_HEAD_DEFAULTS = {"num_mixtures": 2, "l2": 1e-6, "label_dim": 256, "output_gating": False}

RESNET_PRESETS = {
    "small": {"inner": 48, "branch_blocks": 1, "fused_blocks": 1, "dropout": 0.4, "head": "logistic",
              **_HEAD_DEFAULTS, "label_dim": 16, "bn_momentum": KERAS_BN_MOMENTUM},
    # Samsung AI Moscow (2018 2nd place): width 2048, 4 identity blocks in each of the rgb and audio
    # branches and 4 after fusing them, dropout 0.4, sigmoid output: 153.1M parameters at 3,862 classes.
    # BN: PyTorch's default momentum 0.1 = Keras 0.9 (twoleggedeye/youtube8m video_level_nn_models/models.py
    # ResNetLike.FCBlock ``nn.BatchNorm1d(output_size)``).
    "published": {"inner": 2048, "branch_blocks": 4, "fused_blocks": 4, "dropout": 0.4, "head": "logistic",
                  **_HEAD_DEFAULTS, "bn_momentum": TORCH_BN_MOMENTUM},
}


# The 2nd-place team's ResNetLike is PyTorch code: nn.LeakyReLU() / F.leaky_relu default slope 0.01
# (twoleggedeye/youtube8m video_level_nn_models/models.py), not Keras' 0.3.
LEAKY_SLOPE = 0.01


def fc_block(x, units: int, dropout: float, bn_momentum: float):
    """``ResNetLike.FCBlock``: Dense -> BN -> LeakyReLU(0.01) -> Dropout."""
    x = keras.layers.Dense(units)(x)
    x = batch_norm(bn_momentum)(x)
    x = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(x)
    return keras.layers.Dropout(dropout)(x) if dropout else x


def identity_block(x, inner: int, dropout: float, bn_momentum: float):
    """``ResNetLike.Identity``: ``leaky_relu(x + Dense_out(fc_block(x)))``, a residual MLP block."""
    y = fc_block(x, inner, dropout, bn_momentum)
    y = keras.layers.Dense(int(x.shape[-1]))(y)
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(keras.layers.Add()([x, y]))


def resnet_trunk(branches: list, inner: int, branch_blocks: int, fused_blocks: int, dropout: float,
                 bn_momentum: float):
    """The ResNet-like trunk up to the classifier: per branch fc_block to ``inner`` + ``branch_blocks``
    identity blocks; concatenated in the given order; ``fused_blocks`` identity blocks; fc_block to ``inner``."""
    processed = []
    for branch in branches:
        b = fc_block(branch, inner, dropout, bn_momentum)
        for _ in range(branch_blocks):
            b = identity_block(b, inner, dropout, bn_momentum)
        processed.append(b)
    x = keras.layers.Concatenate()(processed)
    for _ in range(fused_blocks):
        x = identity_block(x, inner, dropout, bn_momentum)
    return fc_block(x, inner, dropout, bn_momentum)


# The team's recipe for it (twoleggedeye/youtube8m configs/config0.yaml): Adam lr 5e-3, batch 4096,
# 40 epochs x 1000 batches, mixup of every batch with the previous one, l ~ Beta(0.3, 0.3)
# (video_level_nn_models/mixup_dataloader.py DataLoaderWithMixUp), grad clip 10 (utils/training.py).
# Their ReduceLROnPlateau (factor 0.5, patience 1) runs on the trainer's validation slice (yt8m/plateau.py); no
# other decay. The slice for the team's recipes: 1 in 40 training records, ~143,000 of YT8M's 5.7M training
# videos, where they scored 300 batches of 512 (153,600 videos) of their validation split each epoch.
TEAM_VALIDATION_EVERY = 40
RESNET_RECIPES = {"published": {"learning_rate": 5e-3, "batch_size": 4096, "epochs": 40, "steps_per_epoch": 1000,
                                "lr_decay": 1.0, "clip_gradient_norm": 10.0, "mixup_prob": 1.0, "mixup_alpha": 0.3,
                                "validation_every": TEAM_VALIDATION_EVERY, "lr_plateau_factor": 0.5,
                                "lr_plateau_patience": 1}}


@register("resnet_like", "video", RESNET_PRESETS,
          "ResNet-like video-level MLP (Samsung 2018): per-modality FC + identity blocks, fusion, "
          "identity blocks, FC, sigmoid output (train with mixup)",
          recipes=RESNET_RECIPES,
          recipe_sources={"published": "twoleggedeye/youtube8m configs/config0.yaml (ReduceLROnPlateau factor 0.5 "
                                       "patience 1 on a validation slice of 1 in 40 training records)"})
def resnet_like(num_classes: int, inner: int, branch_blocks: int, fused_blocks: int, dropout: float, head: str,
                num_mixtures: int, l2: float, label_dim: int, output_gating: bool, bn_momentum: float):
    check_head(head)
    inputs = video_inputs()
    x = _normalized_video_vector(inputs)
    rgb = FeatureSlice(0, schema.RGB_SIZE)(x)
    audio = FeatureSlice(schema.RGB_SIZE, schema.RGB_SIZE + schema.AUDIO_SIZE)(x)
    x = resnet_trunk([rgb, audio], inner, branch_blocks, fused_blocks, dropout, bn_momentum)
    out = classifier_head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum)
    return keras.Model(inputs, out, name="resnet_like")
