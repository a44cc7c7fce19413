"""Output heads shared by the families: pooled features ``[B, H]`` -> probabilities ``[B, C]``."""

from __future__ import annotations

import keras

from yt8m.models.layers import KERAS_BN_MOMENTUM, ContextGating, LabelEmbeddingHead, MixtureOfExperts, slim_l2

HEADS = ("moe", "logistic", "label_embedding")
# The small presets' head, shared by every family that has one (see classifier_head).
HEAD_SMALL = {"head": "moe", "num_mixtures": 2, "l2": 1e-6, "label_dim": 16, "output_gating": False}


def check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}; got {head!r}")


def classifier_head(x, num_classes: int, head: str = "moe", num_mixtures: int = 2, l2: float = 1e-6,
                    label_dim: int = 256, output_gating: bool = False, bn_momentum: float = KERAS_BN_MOMENTUM):
    """``moe`` (softmax-gated sigmoid experts + dummy expert), ``logistic`` (sigmoid FC) or
    ``label_embedding`` (sigmoid of dot products with learned class embeddings); then, with
    ``output_gating``, WILLOW's context gating on the output probabilities (``C x C`` weights, its BN at
    ``bn_momentum``)."""
    check_head(head)
    if head == "moe":
        probs = MixtureOfExperts(num_classes, num_mixtures, l2, name="moe")(x)
    elif head == "logistic":
        reg = slim_l2(l2)  # the starter's LogisticModel: slim.l2_regularizer, l2 * sum(w^2) / 2
        probs = keras.layers.Dense(num_classes, activation="sigmoid", kernel_regularizer=reg, name="logistic")(x)
    else:
        probs = LabelEmbeddingHead(num_classes, label_dim, l2, name="label_embedding")(x)
    if output_gating:
        probs = ContextGating(bn_momentum, name="output_gating")(probs)
    return probs
