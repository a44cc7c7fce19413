"""Training-time augmentations and the test-time variants (the 2018 winners' recipes).

Frame-level batches (``rgb [B, F, 1024]``, ``audio [B, F, 128]``, ``num_frames [B]``, zero
beyond ``num_frames``):

- ``segment``: each video's frames ``[start, start + length)``, optionally in reverse order,
  moved to the front and zero-padded to ``F``; ``num_frames`` becomes ``length``.
- halves: first half = frames ``[0, ceil(n/2))``, second half = ``[floor(n/2), n)`` (both
  non-empty when ``n >= 1``; for odd ``n`` they share the middle frame).
- ``frame_indices`` (training, per record, before decoding: ``yt8m.readers``): with probability
  ``half_prob`` one of the two halves (equally likely), frames sampled with replacement, with
  probability ``reverse_prob`` the reversed order.
- ``tta_variants``: the 6 test-time variants (full, first half, second half, each forward and
  reversed), stacked along the batch axis (variant-major).

Video-level batches: ``mixup`` (x = l*xi + (1-l)*xj and the targets likewise, same l per
example, l ~ Beta(alpha, alpha)).
"""

from __future__ import annotations

import tensorflow as tf

NUM_TTA_VARIANTS = 6


def half_bounds(num_frames, which: str):
    """(start, length) of the ``"first"`` or ``"second"`` half of videos of ``num_frames`` frames."""
    n = tf.cast(num_frames, tf.int32)
    if which == "first":
        return tf.zeros_like(n), (n + 1) // 2
    if which == "second":
        return n // 2, n - n // 2
    raise ValueError(f"which must be 'first' or 'second', got {which!r}")


def segment(rgb, audio, start, length, reverse=False):
    """Frames ``[start, start+length)`` of each video (reversed where ``reverse``), front-aligned, zero-padded."""
    frames = tf.shape(rgb)[1]
    start = tf.cast(start, tf.int32)[:, None]
    length = tf.cast(length, tf.int32)
    j = tf.range(frames)[None, :]
    reverse = tf.broadcast_to(tf.convert_to_tensor(reverse, tf.bool), tf.shape(length))[:, None]
    src = tf.where(reverse, start + length[:, None] - 1 - j, start + j)
    valid = j < length[:, None]
    src = tf.where(valid, tf.clip_by_value(src, 0, tf.maximum(frames - 1, 0)), 0)
    mask = tf.cast(valid, rgb.dtype)[:, :, None]
    return (tf.gather(rgb, src, batch_dims=1) * mask, tf.gather(audio, src, batch_dims=1) * mask,
            tf.cast(length, tf.int32))


def frame_indices(num_frames, half_prob: float = 0.0, reverse_prob: float = 0.0, num_samples: int = 0,
                  seed: int | None = None):
    """Which stored frames ONE training example is made of, chosen before any frame is decoded.

    ``num_frames`` (a scalar: the frames the member sees) -> int32 indices into them: with probability
    ``half_prob`` one half of the video (first or second, equally likely), else all of it; with
    ``num_samples`` that many frames sampled uniformly with replacement from it, in temporal order;
    with probability ``reverse_prob`` the order reversed. ``len(indices)`` is the example's ``num_frames``.
    """
    n = tf.cast(num_frames, tf.int32)
    start, length, reverse = tf.zeros_like(n), n, tf.constant(False)
    if half_prob or reverse_prob:
        u = tf.random.uniform([3], seed=seed)
        first_start, first_len = half_bounds(n, "first")
        second_start, second_len = half_bounds(n, "second")
        use_half, second = u[0] < half_prob, u[1] < 0.5
        start = tf.where(use_half, tf.where(second, second_start, first_start), 0)
        length = tf.where(use_half, tf.where(second, second_len, first_len), n)
        reverse = u[2] < reverse_prob
    if num_samples:
        offsets = sorted_uniform_indices(num_samples, length, seed=None if seed is None else seed + 1)
    else:
        offsets = tf.range(length)
    return start + tf.where(reverse, length - 1 - offsets, offsets)


def sorted_uniform_indices(count: int, length, seed: int | None = None):
    """``count`` indices drawn uniformly with replacement from ``[0, length)``, in ascending order, without a sort.

    The ascending order statistics of ``count`` uniforms are the partial sums of ``count + 1`` standard
    exponentials divided by their total (Devroye, *Non-Uniform Random Variate Generation*, V.2); flooring them
    to frame indices keeps the order. Same distribution as sorting ``count`` uniform draws, at a fraction of
    the cost per record (``tf.sort`` is a top-k over the whole vector: the sampled training path went from
    ~0.85x to ~0.93x a plain tf.data parse per thread, ``benchmarks/bench_reader.py``).
    """
    n = tf.cast(length, tf.int32)
    spacings = -tf.math.log1p(-tf.random.uniform([count + 1], seed=seed))  # Exp(1); 1 - u lies in (0, 1]
    sums = tf.cumsum(spacings)
    positions = sums[:count] / sums[count]  # in [0, 1), ascending
    return tf.minimum(tf.cast(positions * tf.cast(n, tf.float32), tf.int32), n - 1)


def tta_variants(rgb, audio, num_frames):
    """The 6 test-time variants stacked on the batch axis: ``[6B, F, D]`` x2 and ``num_frames [6B]``.

    Order: full, first half, second half (forward), then the same three reversed; variant ``v``
    of video ``b`` is row ``v * B + b``.
    """
    n = tf.cast(num_frames, tf.int32)
    parts = [(tf.zeros_like(n), n), half_bounds(n, "first"), half_bounds(n, "second")]
    out = [segment(rgb, audio, start, length, reverse) for reverse in (False, True) for start, length in parts]
    return (tf.concat([o[0] for o in out], 0), tf.concat([o[1] for o in out], 0),
            tf.concat([o[2] for o in out], 0))


def sample_beta(shape, alpha: float, seed: int | None = None):
    """Beta(alpha, alpha) samples via two Gamma(alpha) draws."""
    a = tf.random.gamma(shape, alpha, seed=seed)
    b = tf.random.gamma(shape, alpha, seed=None if seed is None else seed + 1)
    return a / tf.maximum(a + b, 1e-12)


def mix(tree, lam, perm):
    """``lam * x + (1 - lam) * x[perm]`` for every float tensor of ``tree`` (a dict or a tensor), per example."""

    def one(x):
        if not x.dtype.is_floating:
            return x
        l = tf.reshape(tf.cast(lam, x.dtype), [-1] + [1] * (len(x.shape) - 1))
        return l * x + (1.0 - l) * tf.gather(x, perm)

    return tf.nest.map_structure(one, tree)


def mixup(features, targets, alpha: float = 0.4, prob: float = 1.0, seed: int | None = None):
    """Mixup on a batch: each example (with probability ``prob``) is mixed with a random partner.

    Features and targets of an example are mixed with the same ``l ~ Beta(alpha, alpha)``;
    returns ``(features, targets, lam, perm)``.
    """
    leaves = tf.nest.flatten(targets)
    batch = tf.shape(leaves[0])[0]
    lam = sample_beta([batch], alpha, seed)
    if prob < 1.0:
        lam = tf.where(tf.random.uniform([batch], seed=None if seed is None else seed + 2) < prob, lam, 1.0)
    perm = tf.random.shuffle(tf.range(batch), seed=None if seed is None else seed + 3)
    return mix(features, lam, perm), mix(targets, lam, perm), lam, perm
