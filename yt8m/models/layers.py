"""Reusable Keras 3 layers of the winning YT8M models (written once with ``keras.ops``)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable("yt8m")
class FrameL2Normalize(keras.layers.Layer):
    """L2-normalise each frame of ``[B, F, D]`` (zero frames stay zero)."""

    def call(self, x):
        return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True)), 1e-6)


@keras.saving.register_keras_serializable("yt8m")
class MaskedMeanPool(keras.layers.Layer):
    """Mean over the first ``num_frames`` frames of ``[B, F, D]``."""

    def call(self, x, num_frames):
        mask = ops.cast(ops.expand_dims(ops.arange(ops.shape(x)[1]), 0) < ops.expand_dims(num_frames, 1), x.dtype)
        total = ops.sum(x * ops.expand_dims(mask, -1), axis=1)
        return total / ops.maximum(ops.expand_dims(ops.cast(num_frames, x.dtype), -1), 1.0)


@keras.saving.register_keras_serializable("yt8m")
class ContextGating(keras.layers.Layer):
    """WILLOW's context gating: ``x * sigmoid(BN(x W))``."""

    def build(self, input_shape):
        dim = input_shape[-1]
        self.dense = keras.layers.Dense(dim, use_bias=False)
        self.dense.build(input_shape)
        self.norm = keras.layers.BatchNormalization()
        self.norm.build(input_shape)

    def call(self, x, training=None):
        return x * ops.sigmoid(self.norm(self.dense(x), training=training))


@keras.saving.register_keras_serializable("yt8m")
class MixtureOfExperts(keras.layers.Layer):
    """Softmax gates over ``num_mixtures`` sigmoid experts plus a dummy expert, per class."""

    def __init__(self, num_classes: int, num_mixtures: int = 2, l2: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.num_mixtures, self.l2 = num_classes, num_mixtures, l2

    def build(self, input_shape):
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        self.gates = keras.layers.Dense(self.num_classes * (self.num_mixtures + 1), kernel_regularizer=reg)
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
class NetVLAD(keras.layers.Layer):
    """NetVLAD pooling of ``[B, F, D]`` frames into ``[B, K * D]`` with masked padding frames."""

    def __init__(self, num_clusters: int, **kwargs):
        super().__init__(**kwargs)
        self.num_clusters = num_clusters

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.dim = dim
        init = keras.initializers.RandomNormal(stddev=1.0 / dim**0.5)
        self.cluster_weights = self.add_weight(name="cluster_weights", shape=(dim, self.num_clusters),
                                               initializer=init)
        self.cluster_centers = self.add_weight(name="cluster_centers", shape=(1, dim, self.num_clusters),
                                               initializer=init)
        self.norm = keras.layers.BatchNormalization()
        self.norm.build((None, self.num_clusters))

    def call(self, x, num_frames, training=None):
        frames = ops.shape(x)[1]
        flat = ops.reshape(x, (-1, self.dim))
        activation = ops.softmax(self.norm(ops.matmul(flat, self.cluster_weights), training=training), axis=-1)
        activation = ops.reshape(activation, (-1, frames, self.num_clusters))
        mask = ops.cast(ops.expand_dims(ops.arange(frames), 0) < ops.expand_dims(num_frames, 1), x.dtype)
        activation = activation * ops.expand_dims(mask, -1)
        a = ops.sum(activation, axis=1, keepdims=True) * self.cluster_centers  # [B, D, K]
        vlad = ops.transpose(ops.matmul(ops.transpose(activation, (0, 2, 1)), x), (0, 2, 1)) - a
        vlad = vlad / ops.maximum(ops.sqrt(ops.sum(ops.square(vlad), axis=1, keepdims=True)), 1e-6)
        vlad = ops.reshape(vlad, (-1, self.dim * self.num_clusters))
        return vlad / ops.maximum(ops.sqrt(ops.sum(ops.square(vlad), axis=-1, keepdims=True)), 1e-6)

    def get_config(self):
        return {**super().get_config(), "num_clusters": self.num_clusters}
