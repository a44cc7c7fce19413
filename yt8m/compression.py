"""Weight compression for the served graph: how each large tensor is stored and read back in-graph.

Methods (``METHODS``), applied to float32 tensors with MORE than ``min_elements`` elements (17,000 by
default, the 2018 1st-place threshold); everything smaller stays float32:

- ``none``: float32 (4 bytes / element).
- ``float16``: stored float16, cast back to float32 in the graph (2 bytes / element; the 7th-place team).
- ``uint8``: min-max per last-axis channel, ``w = q * scale + offset`` (1 byte / element + 8 bytes per
  channel); the worst-case error is half a step, ``(max - min) / 510`` of the channel.
- ``codebook``: 256 float32 centroids for the whole tensor, stored as uint8 indices + the 256 levels,
  gathered back in the graph (the 1st-place team's "256 float32 centroids"; 1 byte / element + 1 KiB).
  The centroids come from a deterministic 1-D k-means (Lloyd) on at most ``CODEBOOK_SAMPLE`` of the
  tensor's values (an evenly strided sample), started from both the uniform min-max levels (the
  1st-place codebook) and the sample's quantiles; the run with the lower mean squared error wins, so
  the codebook is never worse on the sample than the uniform 256-level one.

Every method has one numpy encoder (``encode``) and its decoder (``decode``); the in-graph modules
(``Float16Tensor``, ``QuantizedTensor``, ``CodebookTensor``) hold what ``encode`` returns and decode
with the same arithmetic, so ``decode(encode(w))`` is what the served graph computes.

``tensor_report`` is the per-tensor size report (name, shape, method, bytes) computed from the arrays
alone, without exporting: the planner sizes every member at every method from it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

METHODS = ("none", "float16", "uint8", "codebook")
DEFAULT_MIN_ELEMENTS = 17_000
CODEBOOK_LEVELS = 256
CODEBOOK_SAMPLE = 1 << 20
_LLOYD_ITERATIONS = 30


def check_method(method: str, where: str = "compression") -> str:
    if method not in METHODS:
        raise ValueError(f"{where}: expected one of {', '.join(METHODS)}, got {method!r}")
    return method


def applies(value: np.ndarray, method: str, min_elements: int | None) -> str:
    """The method actually used for ``value``: ``method`` for a float32 tensor above the threshold, else none."""
    check_method(method)
    if method == "none" or min_elements is None:
        return "none"
    if np.asarray(value).dtype != np.float32 or np.asarray(value).size <= min_elements:
        return "none"
    return method


# ------------------------------------------------------------------------------------------ numpy codecs


def _channels(value: np.ndarray) -> np.ndarray:
    return value.reshape(-1, value.shape[-1]) if value.ndim > 1 else value.reshape(-1, 1)


def kmeans_1d(values: np.ndarray, levels: int = CODEBOOK_LEVELS, iterations: int = _LLOYD_ITERATIONS) -> np.ndarray:
    """Deterministic 1-D k-means centroids (sorted, float32 [levels]) of ``values`` (see the module doc)."""
    flat = np.asarray(values, np.float64).ravel()
    if flat.size > CODEBOOK_SAMPLE:
        flat = flat[np.linspace(0, flat.size - 1, CODEBOOK_SAMPLE).astype(np.int64)]
    x = np.sort(flat)
    lo, hi = x[0], x[-1]
    if hi == lo:
        return np.full(levels, lo, np.float32)
    best, best_mse = None, np.inf
    for start in (np.linspace(lo, hi, levels), np.quantile(x, (np.arange(levels) + 0.5) / levels)):
        c = np.array(start, np.float64)
        for _ in range(iterations):
            c = np.sort(c)
            idx = np.searchsorted((c[1:] + c[:-1]) / 2, x)
            counts = np.bincount(idx, minlength=levels)
            sums = np.bincount(idx, weights=x, minlength=levels)
            moved = np.where(counts > 0, sums / np.maximum(counts, 1), c)  # an empty level keeps its place
            if np.array_equal(moved, c):
                break
            c = moved
        c = np.sort(c)
        mse = float(np.mean((c[np.searchsorted((c[1:] + c[:-1]) / 2, x)] - x) ** 2))
        if mse < best_mse:
            best, best_mse = c, mse
    return best.astype(np.float32)


def encode(value: np.ndarray, method: str) -> dict:
    """The arrays a method stores for ``value`` (float32): see the module doc."""
    check_method(method)
    value = np.asarray(value, np.float32)
    if method == "none":
        return {"value": value}
    if method == "float16":
        return {"value": value.astype(np.float16)}
    if method == "uint8":
        flat = _channels(value)
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        scale = np.where(hi > lo, (hi - lo) / 255.0, 1.0).astype(np.float32)
        q = np.round((flat - lo) / scale).clip(0, 255).astype(np.uint8)
        if value.ndim > 1:
            return {"q": q.reshape(value.shape), "scale": scale, "offset": lo.astype(np.float32)}
        return {"q": q.reshape(value.shape), "scale": scale.reshape(()), "offset": lo.reshape(()).astype(np.float32)}
    centroids = kmeans_1d(value)
    q = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, value.ravel()).astype(np.uint8)
    return {"q": q.reshape(value.shape), "centroids": centroids}


def decode(arrays: dict, method: str) -> np.ndarray:
    """float32 values from ``encode``'s arrays, with the served graph's arithmetic."""
    check_method(method)
    if method in ("none", "float16"):
        return np.asarray(arrays["value"]).astype(np.float32)
    if method == "uint8":
        return (arrays["q"].astype(np.float32) * arrays["scale"] + arrays["offset"]).astype(np.float32)
    return arrays["centroids"][arrays["q"].astype(np.int64)]


def roundtrip(value: np.ndarray, method: str, min_elements: int | None = DEFAULT_MIN_ELEMENTS) -> np.ndarray:
    """``value`` as the served graph sees it after compression (unchanged when the method does not apply)."""
    used = applies(value, method, min_elements)
    return np.asarray(value) if used == "none" else decode(encode(value, used), used)


def stored_bytes(shape, method: str) -> int:
    """Payload bytes of a float32 tensor of ``shape`` stored with ``method`` (variables' data only)."""
    check_method(method)
    n = int(np.prod(shape, dtype=np.int64))
    if method == "none":
        return 4 * n
    if method == "float16":
        return 2 * n
    if method == "uint8":
        return n + 8 * (int(shape[-1]) if len(shape) > 1 else 1)
    return n + 4 * CODEBOOK_LEVELS


def tensor_report(named_values, method: str, min_elements: int | None = DEFAULT_MIN_ELEMENTS) -> list[dict]:
    """Per tensor: name, shape, method used, its bytes and its float32 bytes (``named_values``: (name, array))."""
    rows = []
    for name, value in named_values:
        value = np.asarray(value)
        used = applies(value, method, min_elements)
        rows.append({"name": name, "shape": list(value.shape), "method": used,
                     "bytes": stored_bytes(value.shape, used) if value.dtype == np.float32 else int(value.nbytes),
                     "fp32_bytes": int(value.nbytes)})
    return rows


def report_bytes(rows: list[dict]) -> int:
    return int(sum(r["bytes"] for r in rows))


# ---------------------------------------------------------------------------------- in-graph storage


class Float16Tensor(tf.Module):
    """float16 storage, cast back to float32 in the graph."""

    def __init__(self, value: np.ndarray, name: str):
        super().__init__(name=name)
        self.value = tf.Variable(encode(value, "float16")["value"], trainable=False, name="value")

    def dequantize(self):
        return tf.cast(self.value, tf.float32)


class QuantizedTensor(tf.Module):
    """uint8 min-max quantization per last-axis channel: ``w = q * scale + offset``."""

    def __init__(self, value: np.ndarray, name: str):
        super().__init__(name=name)
        arrays = encode(value, "uint8")
        self.shape = np.asarray(value).shape
        self.q = tf.Variable(arrays["q"], trainable=False, name="q")
        self.scale = tf.Variable(arrays["scale"], trainable=False, name="scale")
        self.offset = tf.Variable(arrays["offset"], trainable=False, name="offset")

    def dequantize(self):
        return tf.cast(self.q, tf.float32) * self.scale + self.offset


class CodebookTensor(tf.Module):
    """uint8 indices into 256 float32 centroids, gathered back in the graph."""

    def __init__(self, value: np.ndarray, name: str):
        super().__init__(name=name)
        arrays = encode(value, "codebook")
        self.q = tf.Variable(arrays["q"], trainable=False, name="q")
        self.centroids = tf.Variable(arrays["centroids"], trainable=False, name="centroids")

    def dequantize(self):
        return tf.gather(self.centroids, tf.cast(self.q, tf.int32))


_MODULES = {"float16": Float16Tensor, "uint8": QuantizedTensor, "codebook": CodebookTensor}


def stored_weight(value: np.ndarray, name: str, method: str, min_elements: int | None = DEFAULT_MIN_ELEMENTS):
    """A ``tf.Variable`` (float32, or a small / non-float32 tensor) or the method's storage module."""
    used = applies(value, method, min_elements)
    if used == "none":
        return tf.Variable(value, trainable=False, name=name)
    return _MODULES[used](value, name)


def read(weight):
    """The float32 value of a ``stored_weight`` inside the graph."""
    return weight.dequantize() if hasattr(weight, "dequantize") else tf.convert_to_tensor(weight)
