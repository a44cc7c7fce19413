"""The YouTube-8M data contract (2018 "v2" release), in one place.

Frame-level records are ``tf.train.SequenceExample``: context ``id`` (bytes) and
``labels`` (int64 list); feature lists ``rgb`` and ``audio`` with one bytes value per
frame (1 frame per second) of 1024 resp. 128 uint8 values.
Video-level records are ``tf.train.Example``: ``id``, ``labels``, ``mean_rgb``
float32[1024], ``mean_audio`` float32[128].

Quantization follows the starter code bit for bit:
``x = q * (4/255) + (4/512 - 2)`` and ``q = round((clip(x, -2, 2) + 2) * 255/4)``.
"""

from __future__ import annotations

import numpy as np

RGB_SIZE = 1024
AUDIO_SIZE = 128
FEATURE_SIZES = {"rgb": RGB_SIZE, "audio": AUDIO_SIZE}
FRAME_FEATURES = ("rgb", "audio")
VIDEO_FEATURES = ("mean_rgb", "mean_audio")
NUM_CLASSES = 3862
MAX_FRAMES = 300
TOP_K = 20

# Quantization range of the starter code (max 2, min -2; note 512, not 510).
MAX_QUANTIZED_VALUE = 2.0
MIN_QUANTIZED_VALUE = -2.0
QUANTIZE_SCALE = (MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE) / 255.0  # 4/255
DEQUANTIZE_BIAS = (MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE) / 512.0 + MIN_QUANTIZED_VALUE  # 4/512 - 2


def dequantize(quantized, dtype=np.float32):
    """uint8 (numpy) -> float, exactly ``q * 4/255 + 4/512 - 2`` (the starter code)."""
    q = np.asarray(quantized)
    return (q.astype(dtype) * dtype(QUANTIZE_SCALE) + dtype(DEQUANTIZE_BIAS)).astype(dtype)


def quantize(features) -> np.ndarray:
    """float -> uint8, ``round((clip(x, -2, 2) + 2) * 255/4)``."""
    x = np.clip(np.asarray(features, dtype=np.float64), MIN_QUANTIZED_VALUE, MAX_QUANTIZED_VALUE)
    return np.round((x - MIN_QUANTIZED_VALUE) * (255.0 / (MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE))).astype(
        np.uint8
    )


def tf_dequantize(quantized_float):
    """The same formula on a float32 TensorFlow tensor of uint8 values."""
    return quantized_float * QUANTIZE_SCALE + DEQUANTIZE_BIAS


def dequantized_mean(quantized_sum, count):
    """The ONE video-mean formula: the mean of ``count`` dequantized frame values from the exact sum of their
    quantized (uint8) values, ``(S / n) * 4/255 + (4/512 - 2)``; both float64 (numpy or TensorFlow), the
    result float64 (callers round it once to float32). Dequantization is affine, so this is the frames' mean;
    the preprocessing job's transform (the video-level shards), the serving graph and the trainer's reader of
    frame-level records all compute it so, and agree bit for bit."""
    return quantized_sum / count * QUANTIZE_SCALE + DEQUANTIZE_BIAS
