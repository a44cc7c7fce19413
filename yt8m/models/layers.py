"""Reusable Keras 3 layers of the winning YT8M models (written once with ``keras.ops``).

Frame-level layers take ``[B, F, D]`` frames plus ``num_frames`` ``[B]``: frames at index
``>= num_frames`` are zero padding and never reach a pooled output (masking everywhere),
so appending padding frames does not change a model's prediction.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

_EPS = 1e-6


def frame_mask(num_frames, frames, dtype="float32"):
    """``[B, F]`` mask, 1 for frames ``< num_frames``, 0 for padding."""
    positions = ops.expand_dims(ops.arange(frames, dtype="int32"), 0)
    return ops.cast(positions < ops.expand_dims(ops.cast(num_frames, "int32"), 1), dtype)


def l2_normalize(x, axis=-1):
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True)), _EPS)


def slim_l2(l2: float):
    """The references' L2 penalty, or None for ``l2 == 0``: TF-slim ``slim.l2_regularizer(l2)`` is
    ``l2 * tf.nn.l2_loss(w) = l2 * sum(w^2) / 2`` (google/youtube-8m video_level_models.py MoeModel /
    LogisticModel ``weights_regularizer=slim.l2_regularizer(l2_penalty)``, WILLOW's MoE with ``moe_l2``);
    Keras' ``L2(l2)`` is ``l2 * sum(w^2)``, hence ``L2(l2 / 2)``."""
    return keras.regularizers.L2(l2 / 2) if l2 else None


# BatchNormalization's moving-average momentum (Keras: ``moving = momentum * moving + (1 - momentum) * batch``),
# a parameter of every family with BN (``bn_momentum``); the published presets use their reference code's:
# * SLIM_BN_MOMENTUM: TF-slim ``slim.batch_norm`` (``tf.contrib.layers.batch_norm``), default ``decay=0.999``;
#   every BN of WILLOW (antoine77340/Youtube-8M-WILLOW frame_level_models.py ``*ModelLF`` input_bn / cluster_bn /
#   hidden1_bn / gating_bn, video_level_models.py MoeModel gating_prob_bn) and of the starter's DbofModel
#   (google/youtube-8m frame_level_models.py input_bn / cluster_bn / hidden1_bn) is ``slim.batch_norm(x,
#   center=True, scale=True, is_training=..., scope=...)`` without a ``decay`` (and no arg_scope sets one).
# * TORCH_BN_MOMENTUM: PyTorch ``nn.BatchNorm1d`` default ``momentum=0.1`` (``moving = 0.9 * moving + 0.1 *
#   batch``); the 2018 2nd place (twoleggedeye/youtube8m) never passes a momentum.
# * KERAS_BN_MOMENTUM: Keras' default, kept by the small / cpu / local presets: they train a few hundred
#   steps, and a 0.999 average (a ~1,000-step memory) would leave the inference statistics near their
#   initial values (mean 0, variance 1).
KERAS_BN_MOMENTUM = 0.99
SLIM_BN_MOMENTUM = 0.999
TORCH_BN_MOMENTUM = 0.9


def batch_norm(momentum: float = KERAS_BN_MOMENTUM, **kwargs) -> keras.layers.BatchNormalization:
    """The zoo's BatchNormalization (every BN of every family is made here) with this moving-average
    ``momentum``; Keras' epsilon 1e-3 equals slim's default."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1), got {momentum}")
    return keras.layers.BatchNormalization(momentum=momentum, **kwargs)


def _normal(dim: int, mean: float = 0.0):
    return keras.initializers.RandomNormal(mean=mean, stddev=1.0 / math.sqrt(dim))


@keras.saving.register_keras_serializable("yt8m")
class FrameL2Normalize(keras.layers.Layer):
    """L2-normalise each frame of ``[B, F, D]`` (zero frames stay zero)."""

    def call(self, x):
        return l2_normalize(x, axis=-1)


@keras.saving.register_keras_serializable("yt8m")
class FeatureSlice(keras.layers.Layer):
    """``x[..., start:stop]`` (splits a fused rgb+audio vector back into its modalities)."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.stop - self.start,)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable("yt8m")
class FrameBatchNorm(keras.layers.Layer):
    """BatchNormalization of every frame of ``[B, F, D]`` (per feature dimension), the statistics of a
    training batch taken over the real frames only (``num_frames``), so padding never skews them.

    WILLOW's input BN (Youtube-8M-WILLOW frame_level_models.py ``*ModelLF``: ``slim.batch_norm(
    reshaped_input, center=True, scale=True, scope="input_bn")`` on the ``[B * F, 1152]`` frames) and
    the starter's DbofModel input BN (google/youtube-8m frame_level_models.py). Keras' epsilon 1e-3
    equals slim's default.
    """

    def __init__(self, bn_momentum: float = KERAS_BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.bn_momentum = bn_momentum

    def build(self, input_shape):
        self.dim = int(input_shape[-1])
        self.norm = batch_norm(self.bn_momentum)
        self.norm.build((None, self.dim))

    def call(self, x, num_frames, training=None):
        frames = ops.shape(x)[1]
        mask = ops.reshape(frame_mask(num_frames, frames, "bool"), (-1,))
        # on the [B * F, D] frames, as WILLOW's reshaped_input (the reshape back also drops the Keras mask
        # BatchNormalization attaches to its output, which the next layers do not take)
        flat = self.norm(ops.reshape(x, (-1, self.dim)), training=training, mask=mask)
        return ops.reshape(flat, (-1, frames, self.dim))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable("yt8m")
class InferenceFrameSample(keras.layers.Layer):
    """At inference, ``num_samples`` frames of each video's real frames, sampled with replacement (the
    starter's DbofModel calls ``utils.SampleRandomFrames(model_input, num_frames, iterations)`` inside
    the model, so it samples at evaluation too: google/youtube-8m frame_level_models.py, model_utils.py).
    At training the frames pass through unchanged: the reader has sampled them already
    (``training.num_samples``, the same uniform sampling with replacement).

    Choice for serving: the starter draws fresh random positions on every call; here the draw is FIXED
    (``seed``) and shared by every video, position ``floor(u_i * num_frames)`` for ``num_samples`` fixed
    ``u_i`` in [0, 1), so a served video's score is reproducible and independent of its batch. An
    empty video (``num_frames == 0``) stays empty. Returns the sampled frames and their count.
    """

    def __init__(self, num_samples: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples, self.seed = num_samples, seed
        self.positions = sorted(np.random.default_rng(seed).random(num_samples).tolist())

    def call(self, x, num_frames, training=None):
        if training:
            return x, ops.cast(num_frames, "int32")
        num_frames = ops.cast(num_frames, "int32")
        u = ops.expand_dims(ops.convert_to_tensor(self.positions, "float32"), 0)  # [1, S]
        index = ops.cast(ops.floor(u * ops.expand_dims(ops.cast(num_frames, "float32"), 1)), "int32")
        index = ops.minimum(index, ops.expand_dims(ops.maximum(num_frames - 1, 0), 1))  # [B, S]
        sampled = ops.take_along_axis(x, ops.expand_dims(index, -1), axis=1)
        return sampled, ops.where(num_frames > 0, self.num_samples, 0)

    def compute_output_spec(self, x, num_frames, training=None):
        return (keras.KerasTensor((x.shape[0], None, x.shape[-1]), dtype=x.dtype),
                keras.KerasTensor(num_frames.shape, dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "num_samples": self.num_samples, "seed": self.seed}


@keras.saving.register_keras_serializable("yt8m")
class FrameMask(keras.layers.Layer):
    """Boolean ``[B, F]`` mask of the real frames (the ``mask=`` of Keras RNN layers)."""

    def call(self, x, num_frames):
        return frame_mask(num_frames, ops.shape(x)[1], "bool")

    def compute_output_spec(self, x, num_frames):
        return keras.KerasTensor(x.shape[:2], dtype="bool")


@keras.saving.register_keras_serializable("yt8m")
class MaskedMeanPool(keras.layers.Layer):
    """Mean over the first ``num_frames`` frames of ``[B, F, D]`` (0 for an empty video)."""

    def call(self, x, num_frames):
        mask = frame_mask(num_frames, ops.shape(x)[1], x.dtype)
        total = ops.sum(x * ops.expand_dims(mask, -1), axis=1)
        return total / ops.maximum(ops.expand_dims(ops.cast(num_frames, x.dtype), -1), 1.0)


@keras.saving.register_keras_serializable("yt8m")
class TemporalMeanPool(keras.layers.Layer):
    """Averages non-overlapping windows of ``window`` consecutive real frames:
    ``[B, F, D]`` -> ``[B, ceil(F / window), D]`` and ``num_frames`` -> ``ceil(num_frames / window)``.

    Padding frames never enter a window's mean (a window's mean is over its real frames only),
    so the output does not depend on how much padding follows the real frames.
    """

    def __init__(self, window: int, **kwargs):
        super().__init__(**kwargs)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window

    def call(self, x, num_frames):
        w, dim = self.window, x.shape[-1]
        frames = ops.shape(x)[1]
        mask = frame_mask(num_frames, frames, x.dtype)
        pad = (w - frames % w) % w
        x = ops.pad(x * ops.expand_dims(mask, -1), [[0, 0], [0, pad], [0, 0]])
        mask = ops.pad(mask, [[0, 0], [0, pad]])
        windows = (frames + pad) // w
        total = ops.sum(ops.reshape(x, (-1, windows, w, dim)), axis=2)
        count = ops.sum(ops.reshape(mask, (-1, windows, w)), axis=2)
        pooled = total / ops.expand_dims(ops.maximum(count, 1.0), -1)
        return pooled, (ops.cast(num_frames, "int32") + (w - 1)) // w

    def compute_output_spec(self, x, num_frames):
        frames = None if x.shape[1] is None else -(-x.shape[1] // self.window)
        return (keras.KerasTensor((x.shape[0], frames, x.shape[-1]), dtype=x.dtype),
                keras.KerasTensor(num_frames.shape, dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "window": self.window}


def window_means(rgb, audio, num_frames, frame_pool: int):
    """``(rgb, audio, num_frames)`` as means of ``frame_pool``-frame windows (unchanged for 1): a frame-level
    model sees every frame at 1/``frame_pool`` of its per-frame cost."""
    if frame_pool <= 1:
        return rgb, audio, num_frames
    rgb, pooled_frames = TemporalMeanPool(frame_pool, name="rgb_frame_pool")(rgb, num_frames)
    audio, _ = TemporalMeanPool(frame_pool, name="audio_frame_pool")(audio, num_frames)
    return rgb, audio, pooled_frames


@keras.saving.register_keras_serializable("yt8m")
class MaskedMaxPool(keras.layers.Layer):
    """Max over the first ``num_frames`` frames of ``[B, F, D]`` (0 for an empty video).

    Accepts (and consumes) a Keras timestep mask, e.g. from a masked RNN's output sequence.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x, num_frames, mask=None):
        return masked_max(x, frame_mask(num_frames, ops.shape(x)[1], "bool"))

    def compute_mask(self, x, num_frames, mask=None):
        return None


def masked_max(x, mask_bool):
    """Max over axis 1 of ``[B, F, D]`` ignoring frames where ``mask_bool`` [B, F] is False."""
    m = ops.expand_dims(mask_bool, -1)
    pooled = ops.max(ops.where(m, x, ops.full_like(x, -1e30)), axis=1)
    return ops.where(ops.any(mask_bool, axis=1, keepdims=True), pooled, ops.zeros_like(pooled))


@keras.saving.register_keras_serializable("yt8m")
class ContextGating(keras.layers.Layer):
    """WILLOW's context gating: ``x * sigmoid(BN(x W))``.

    On a hidden layer it re-weights features; on output probabilities ([B, C], WILLOW's
    ``moe_prob_gating``) it captures label correlations and keeps scores in [0, 1].
    """

    def __init__(self, bn_momentum: float = KERAS_BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.bn_momentum = bn_momentum

    def build(self, input_shape):
        dim = input_shape[-1]
        self.dense = keras.layers.Dense(dim, use_bias=False)
        self.dense.build(input_shape)
        self.norm = batch_norm(self.bn_momentum)
        self.norm.build(input_shape)

    def call(self, x, training=None):
        return x * ops.sigmoid(self.norm(self.dense(x), training=training))

    def get_config(self):
        return {**super().get_config(), "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable("yt8m")
class MixtureOfExperts(keras.layers.Layer):
    """Softmax gates over ``num_mixtures`` sigmoid experts plus a dummy expert, per class."""

    def __init__(self, num_classes: int, num_mixtures: int = 2, l2: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.num_mixtures, self.l2 = num_classes, num_mixtures, l2

    def build(self, input_shape):
        reg = slim_l2(self.l2)  # slim's l2 * sum(w^2) / 2 (see slim_l2)
        # Gates without a bias: google/youtube-8m video_level_models.py MoeModel (and WILLOW's) build the
        # gates with ``slim.fully_connected(..., biases_initializer=None)``; only the experts have biases.
        self.gates = keras.layers.Dense(self.num_classes * (self.num_mixtures + 1), use_bias=False,
                                        kernel_regularizer=reg)
        self.experts = keras.layers.Dense(self.num_classes * self.num_mixtures, kernel_regularizer=reg)
        self.gates.build(input_shape)
        self.experts.build(input_shape)

    def call(self, x):
        m = self.num_mixtures
        gates = ops.softmax(ops.reshape(self.gates(x), (-1, self.num_classes, m + 1)), axis=-1)
        experts = ops.sigmoid(ops.reshape(self.experts(x), (-1, self.num_classes, m)))
        return ops.sum(gates[:, :, :m] * experts, axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "num_mixtures": self.num_mixtures,
                "l2": self.l2}


@keras.saving.register_keras_serializable("yt8m")
class LabelEmbeddingHead(keras.layers.Layer):
    """Scores ``sigmoid(<P x, e_c> + b_c)``: dot products of the projected features with learned
    class embeddings ``e_c`` (``embedding_dim`` each), one bias per class."""

    def __init__(self, num_classes: int, embedding_dim: int = 256, l2: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.embedding_dim, self.l2 = num_classes, embedding_dim, l2

    def build(self, input_shape):
        reg = slim_l2(self.l2)  # slim's l2 * sum(w^2) / 2 (see slim_l2)
        self.project = keras.layers.Dense(self.embedding_dim, kernel_regularizer=reg)
        self.project.build(input_shape)
        self.class_embeddings = self.add_weight(name="class_embeddings", shape=(self.num_classes, self.embedding_dim),
                                                initializer=_normal(self.embedding_dim), regularizer=reg)
        self.class_bias = self.add_weight(name="class_bias", shape=(self.num_classes,), initializer="zeros")

    def call(self, x):
        logits = ops.matmul(self.project(x), ops.transpose(self.class_embeddings)) + self.class_bias
        return ops.sigmoid(logits)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "embedding_dim": self.embedding_dim,
                "l2": self.l2}


class _SoftAssignment(keras.layers.Layer):
    """Shared part of the VLAD / FV / soft-DBoF poolings: ``softmax(BN(x W))`` per frame, masked."""

    def __init__(self, num_clusters: int, bn_momentum: float = KERAS_BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.num_clusters, self.bn_momentum = num_clusters, bn_momentum

    def build(self, input_shape):
        self.dim = int(input_shape[-1])
        self.cluster_weights = self.add_weight(name="cluster_weights", shape=(self.dim, self.num_clusters),
                                               initializer=_normal(self.dim))
        self.norm = batch_norm(self.bn_momentum)
        self.norm.build((None, self.num_clusters))

    def assign(self, x, num_frames, training=None):
        """``[B, F, K]`` soft assignments, zero for padding frames; and the float mask ``[B, F]``."""
        frames = ops.shape(x)[1]
        mask = frame_mask(num_frames, frames, x.dtype)
        flat = ops.matmul(ops.reshape(x, (-1, self.dim)), self.cluster_weights)
        # batch statistics over the real frames only (padding would skew them at training time)
        flat = self.norm(flat, training=training, mask=ops.reshape(mask, (-1,)) > 0)
        activation = ops.reshape(ops.softmax(flat, axis=-1), (-1, frames, self.num_clusters))
        return activation * ops.expand_dims(mask, -1), mask

    def get_config(self):
        return {**super().get_config(), "num_clusters": self.num_clusters, "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable("yt8m")
class NetVLAD(_SoftAssignment):
    """NetVLAD pooling of ``[B, F, D]`` frames into ``[B, K * D]``: soft-assigned residuals to
    learned cluster centres, intra-normalised per cluster, then L2-normalised."""

    residual = True

    def build(self, input_shape):
        super().build(input_shape)
        if self.residual:
            self.cluster_centers = self.add_weight(name="cluster_centers", shape=(1, self.dim, self.num_clusters),
                                                   initializer=_normal(self.dim))

    def call(self, x, num_frames, training=None):
        activation, _ = self.assign(x, num_frames, training)
        vlad = ops.transpose(ops.matmul(ops.transpose(activation, (0, 2, 1)), x), (0, 2, 1))  # [B, D, K]
        if self.residual:
            vlad = vlad - ops.sum(activation, axis=1, keepdims=True) * self.cluster_centers
        vlad = l2_normalize(vlad, axis=1)
        return l2_normalize(ops.reshape(vlad, (-1, self.dim * self.num_clusters)))


@keras.saving.register_keras_serializable("yt8m")
class NetRVLAD(NetVLAD):
    """Residual-less VLAD (WILLOW's "lightvlad"): soft-assignment-weighted sums of the frames."""

    residual = False


@keras.saving.register_keras_serializable("yt8m")
class NetFV(_SoftAssignment):
    """NetFV (WILLOW): first- and second-order Fisher-vector statistics ``[B, 2 * K * D]``."""

    def build(self, input_shape):
        super().build(input_shape)
        self.covar_weights = self.add_weight(name="covar_weights", shape=(self.dim, self.num_clusters),
                                             initializer=_normal(self.dim, mean=1.0))
        self.cluster_centers = self.add_weight(name="cluster_centers", shape=(1, self.dim, self.num_clusters),
                                               initializer=_normal(self.dim))

    def call(self, x, num_frames, training=None):
        activation, _ = self.assign(x, num_frames, training)
        a_sum = ops.sum(activation, axis=1, keepdims=True)  # [B, 1, K]
        covar = ops.square(self.covar_weights) + _EPS  # [D, K]
        centers = self.cluster_centers
        at = ops.transpose(activation, (0, 2, 1))  # [B, K, F]
        fv1 = ops.transpose(ops.matmul(at, x), (0, 2, 1))  # [B, D, K]
        fv2 = ops.transpose(ops.matmul(at, ops.square(x)), (0, 2, 1))
        fv2 = (a_sum * ops.square(centers) + fv2 - 2.0 * fv1 * centers) / ops.square(covar) - a_sum
        fv2 = l2_normalize(ops.reshape(fv2, (-1, self.dim * self.num_clusters)))
        fv1 = l2_normalize((fv1 - a_sum * centers) / covar, axis=1)
        fv1 = l2_normalize(ops.reshape(fv1, (-1, self.dim * self.num_clusters)))
        return ops.concatenate([fv1, fv2], axis=-1)


@keras.saving.register_keras_serializable("yt8m")
class SoftDBoF(_SoftAssignment):
    """Soft deep bag of frames (WILLOW): softmax cluster assignments, sum-pooled over the real
    frames, L2-normalised -> ``[B, K]`` (``max_pool`` appends the normalised max -> ``[B, 2K]``)."""

    def __init__(self, num_clusters: int, max_pool: bool = False, bn_momentum: float = KERAS_BN_MOMENTUM, **kwargs):
        super().__init__(num_clusters, bn_momentum, **kwargs)
        self.max_pool = max_pool

    def call(self, x, num_frames, training=None):
        activation, mask = self.assign(x, num_frames, training)
        out = l2_normalize(ops.sum(activation, axis=1))
        if self.max_pool:
            out = ops.concatenate([out, l2_normalize(masked_max(activation, mask > 0))], axis=-1)
        return out

    def get_config(self):
        return {**super().get_config(), "max_pool": self.max_pool}


@keras.saving.register_keras_serializable("yt8m")
class GatedSoftDBoF(_SoftAssignment):
    """WILLOW's gated DBoF pooling: the sum-pooled soft assignments ``[B, K]`` are gated by
    ``sigmoid(BN(l2(maxpool) W_red W_2))`` (``W_red`` [K, D], ``W_2`` [D, K]), then L2-normalised."""

    def build(self, input_shape):
        super().build(input_shape)
        self.dim_red = self.add_weight(name="dim_red", shape=(self.num_clusters, self.dim),
                                       initializer=_normal(self.dim))
        self.gate_weights = self.add_weight(name="gate_weights", shape=(self.dim, self.num_clusters),
                                            initializer=_normal(self.dim))
        self.gate_norm = batch_norm(self.bn_momentum)
        self.gate_norm.build((None, self.num_clusters))

    def call(self, x, num_frames, training=None):
        activation, mask = self.assign(x, num_frames, training)
        summed = ops.sum(activation, axis=1)
        maxed = l2_normalize(masked_max(activation, mask > 0))
        gates = ops.sigmoid(self.gate_norm(ops.matmul(ops.matmul(maxed, self.dim_red), self.gate_weights),
                                           training=training))
        return l2_normalize(gates * summed)


@keras.saving.register_keras_serializable("yt8m")
class DBoF(keras.layers.Layer):
    """The starter code's deep bag of frames: ``relu6(BN(x W))`` per frame into ``num_clusters``
    dims, max- (or mean-) pooled over the real frames -> ``[B, K]``."""

    def __init__(self, num_clusters: int, pooling: str = "max", bn_momentum: float = KERAS_BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        if pooling not in ("max", "mean"):
            raise ValueError(f"DBoF pooling must be 'max' or 'mean', got {pooling!r}")
        self.num_clusters, self.pooling, self.bn_momentum = num_clusters, pooling, bn_momentum

    def build(self, input_shape):
        self.dim = int(input_shape[-1])
        self.cluster_weights = self.add_weight(name="cluster_weights", shape=(self.dim, self.num_clusters),
                                               initializer=_normal(self.dim))
        self.norm = batch_norm(self.bn_momentum)
        self.norm.build((None, self.num_clusters))

    def call(self, x, num_frames, training=None):
        frames = ops.shape(x)[1]
        mask = frame_mask(num_frames, frames, x.dtype)
        flat = ops.matmul(ops.reshape(x, (-1, self.dim)), self.cluster_weights)
        flat = self.norm(flat, training=training, mask=ops.reshape(mask, (-1,)) > 0)
        activation = ops.reshape(ops.relu6(flat), (-1, frames, self.num_clusters))
        if self.pooling == "max":
            return masked_max(activation, mask > 0)
        total = ops.sum(activation * ops.expand_dims(mask, -1), axis=1)
        return total / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)

    def get_config(self):
        return {**super().get_config(), "num_clusters": self.num_clusters, "pooling": self.pooling,
                "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable("yt8m")
class SinusoidalPositions(keras.layers.Layer):
    """Adds the fixed sinusoidal position encoding of "Attention is all you need" to ``[B, F, D]``
    (no maximum length: works for any number of frames)."""

    def call(self, x):
        frames, dim = ops.shape(x)[1], x.shape[-1]
        positions = ops.cast(ops.arange(frames), x.dtype)[:, None]
        rates = ops.exp(ops.cast(ops.arange(0, dim, 2), x.dtype) * (-math.log(10000.0) / dim))[None, :]
        angles = positions * rates  # [F, ceil(D/2)]
        enc = ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (frames, -1))[:, :dim]
        return x + ops.expand_dims(enc, 0)


@keras.saving.register_keras_serializable("yt8m")
class TransformerEncoderBlock(keras.layers.Layer):
    """Pre-LayerNorm transformer encoder block; padding frames are masked out as attention keys."""

    def __init__(self, num_heads: int, ff_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.ff_dim, self.dropout = num_heads, ff_dim, dropout

    def build(self, input_shape):
        dim = int(input_shape[-1])
        if dim % self.num_heads:
            raise ValueError(f"model width {dim} is not divisible by num_heads={self.num_heads}")
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.norm1.build(input_shape)
        self.attention = keras.layers.MultiHeadAttention(self.num_heads, dim // self.num_heads, dropout=self.dropout)
        self.attention.build(input_shape, input_shape)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.norm2.build(input_shape)
        self.ff1 = keras.layers.Dense(self.ff_dim, activation="gelu")
        self.ff1.build(input_shape)
        self.ff2 = keras.layers.Dense(dim)
        self.ff2.build(tuple(input_shape[:-1]) + (self.ff_dim,))
        self.drop = keras.layers.Dropout(self.dropout)

    def call(self, x, num_frames, training=None):
        keys = frame_mask(num_frames, ops.shape(x)[1], "bool")  # [B, F]
        attention_mask = ops.logical_and(ops.expand_dims(keys, 1), ops.ones_like(ops.expand_dims(keys, 2)))
        h = self.norm1(x)
        x = x + self.drop(self.attention(h, h, attention_mask=attention_mask, training=training), training=training)
        h = self.ff2(self.ff1(self.norm2(x)))
        return x + self.drop(h, training=training)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ff_dim": self.ff_dim, "dropout": self.dropout}
