"""Augmentations: half-video, reversed order, the 6 test-time variants, mixup; TTA in the served graph."""

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import independent_sequence_example
from yt8m import augment, export, readers
from yt8m.models import registry

F = 8


def _indexed_frames(num_frames):
    """rgb/audio whose frame j (1-based value j+1) is recognisable; zero beyond num_frames."""
    b = len(num_frames)
    idx = np.arange(1, F + 1, dtype=np.float32)[None, :] * (np.arange(F)[None, :] < np.array(num_frames)[:, None])
    rgb = np.repeat(idx[:, :, None], 3, axis=2) + np.zeros((b, F, 3), np.float32)
    audio = np.repeat(idx[:, :, None], 2, axis=2) * 10
    return tf.constant(rgb), tf.constant(audio), tf.constant(num_frames, tf.int32)


def _frame_ids(rgb_row, n):
    """The 1-based source frame numbers of a video's first n frames; checks the padding is zero."""
    row = np.asarray(rgb_row)
    assert (row[n:] == 0).all(), "frames beyond num_frames must be zero"
    return row[:n, 0].astype(int).tolist()


NUM_FRAMES = [1, 2, 5, 6, 8]


def test_halves_and_reverse_keep_the_valid_frames_and_set_num_frames():
    rgb, audio, n = _indexed_frames(NUM_FRAMES)
    for which, expected in (("first", lambda k: list(range(1, (k + 1) // 2 + 1))),
                            ("second", lambda k: list(range(k // 2 + 1, k + 1)))):
        start, length = augment.half_bounds(n, which)
        for reverse in (False, True):
            out_rgb, out_audio, out_n = augment.segment(rgb, audio, start, length, reverse)
            for b, k in enumerate(NUM_FRAMES):
                want = expected(k)[::-1] if reverse else expected(k)
                assert int(out_n[b]) == len(want) >= 1
                assert _frame_ids(out_rgb[b], len(want)) == want
                np.testing.assert_array_equal(out_audio[b, :, 0], out_rgb[b, :, 0] * 10)


def _indices(k, **recipe):
    return augment.frame_indices(tf.constant(k), **recipe).numpy().tolist()


def test_frame_indices_probabilities_zero_one():
    for k in NUM_FRAMES:
        assert _indices(k) == list(range(k))  # no recipe: every frame, in order
        assert _indices(k, reverse_prob=1.0) == list(range(k - 1, -1, -1))  # always reversed, full length
    seen = set()
    for seed in range(8):
        for k in NUM_FRAMES:
            got = _indices(k, half_prob=1.0, seed=seed)  # always a half
            first, second = list(range((k + 1) // 2)), list(range(k // 2, k))
            assert got in (first, second)
            if k > 2:
                seen.add(got == first)
    assert seen == {True, False}, "both halves should occur"


def test_frame_indices_sample_with_replacement_within_the_half_in_temporal_or_reversed_order():
    k, samples = 9, 40
    for seed in range(6):
        forward = _indices(k, num_samples=samples, seed=seed)
        assert len(forward) == samples and forward == sorted(forward) and set(forward) <= set(range(k))
        assert len(set(forward)) > 1
        half = _indices(k, half_prob=1.0, reverse_prob=1.0, num_samples=samples, seed=seed)
        assert len(half) == samples and half == sorted(half, reverse=True)
        assert set(half) <= set(range(5)) or set(half) <= set(range(4, 9))


def test_sorted_uniform_indices_have_the_distribution_of_sorted_uniform_draws():
    k, draws = 9, 3
    samples = np.array([augment.sorted_uniform_indices(draws, k, seed=seed).numpy() for seed in range(600)])
    assert (np.diff(samples, axis=1) >= 0).all() and samples.min() >= 0 and samples.max() <= k - 1
    counts = np.bincount(samples.ravel(), minlength=k) / samples.size
    np.testing.assert_allclose(counts, 1 / k, atol=0.025)  # every frame equally likely (1,800 draws)
    # the order statistics: P(largest of 3 draws is the last frame) = 1 - (8/9)^3 = 0.298, P(smallest is 0) alike
    np.testing.assert_allclose((samples[:, -1] == k - 1).mean(), 1 - (8 / 9) ** 3, atol=0.06)
    np.testing.assert_allclose((samples[:, 0] == 0).mean(), 1 - (8 / 9) ** 3, atol=0.06)


def test_tta_variants_order_and_shapes():
    rgb, audio, n = _indexed_frames(NUM_FRAMES)
    v_rgb, v_audio, v_n = augment.tta_variants(rgb, audio, n)
    b = len(NUM_FRAMES)
    assert v_rgb.shape == (6 * b, F, 3) and v_audio.shape == (6 * b, F, 2) and v_n.shape == (6 * b,)
    k = 5
    i = NUM_FRAMES.index(k)
    expected = [[1, 2, 3, 4, 5], [1, 2, 3], [3, 4, 5], [5, 4, 3, 2, 1], [3, 2, 1], [5, 4, 3]]
    for v, want in enumerate(expected):
        assert _frame_ids(v_rgb[v * b + i], int(v_n[v * b + i])) == want


def test_mix_uses_the_same_lambda_for_features_and_targets():
    x = tf.constant([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    y = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    lam, perm = tf.constant([0.25, 1.0, 0.5]), tf.constant([1, 0, 0])
    mixed = augment.mix({"x": x, "y": y}, lam, perm)
    np.testing.assert_allclose(mixed["x"], [[0.25, 1.5], [0.0, 2.0], [2.5, 2.0]])
    np.testing.assert_allclose(mixed["y"], [[0.25, 0.75, 0.75], [0.0, 1.0, 1.0], [0.5, 0.0, 0.5]])


def test_mixup_random_batch_mixes_features_and_labels_alike():
    batch = 64
    eye = tf.eye(batch)
    features = {"mean_rgb": eye * 3.0, "mean_audio": eye}
    targets = {"labels": eye, "teacher": eye * 0.5}
    f, t, lam, perm = augment.mixup(features, targets, alpha=0.4, seed=3)
    np.testing.assert_allclose(f["mean_rgb"], t["labels"] * 3.0, atol=1e-6)
    np.testing.assert_allclose(f["mean_audio"], t["labels"], atol=1e-6)
    np.testing.assert_allclose(t["teacher"], t["labels"] * 0.5, atol=1e-6)
    lam, perm = lam.numpy(), perm.numpy()
    moved = perm != np.arange(batch)
    np.testing.assert_allclose(np.diag(t["labels"].numpy())[moved], lam[moved], atol=1e-6)
    assert ((lam > 0.01) & (lam < 0.99)).sum() > batch // 4
    np.testing.assert_allclose(t["labels"].numpy().sum(axis=1), 1.0, atol=1e-6)  # convex combinations
    _, _, lam_half, _ = augment.mixup(features, targets, alpha=0.4, prob=0.0, seed=3)
    np.testing.assert_array_equal(lam_half, 1.0)


def test_beta_samples_have_the_beta_moments():
    alpha = 0.4
    lam = augment.sample_beta([20000], alpha, seed=1).numpy()
    assert 0 <= lam.min() and lam.max() <= 1
    assert abs(lam.mean() - 0.5) < 0.02
    assert abs(lam.var() - 1 / (4 * (2 * alpha + 1))) < 0.01


@pytest.fixture(scope="module")
def lstm_member():
    import keras

    keras.utils.set_random_seed(4)
    model = registry.build_model("lstm", 7, "small")
    return export.Member("lstm", model, "frame", {"family": "lstm"})


def _variants_numpy(rgb, audio, n):
    """The 6 variants built by slicing (independent of yt8m.augment)."""
    out = []
    for reverse in (False, True):
        for lo, hi in ((0, n), (0, (n + 1) // 2), (n // 2, n)):
            r, a = rgb[lo:hi], audio[lo:hi]
            if reverse:
                r, a = r[::-1], a[::-1]
            out.append((r, a, hi - lo))
    return out


def test_tta_export_serves_the_mean_of_the_six_variants(tmp_path, lstm_member):
    rng = np.random.default_rng(0)
    videos = []
    for i, n in enumerate([1, 5, 12, 30]):
        videos.append((f"v{i}".encode(), [i % 7], rng.integers(0, 256, (n, 1024), np.uint8),
                       rng.integers(0, 256, (n, 128), np.uint8)))
    serialized = [independent_sequence_example(*v) for v in videos]
    out = str(tmp_path / "tta")
    export.export_serving_model([lstm_member], out, tta=True, max_frames=32)
    served = tf.saved_model.load(out).signatures["serving_default"](serialized=tf.constant(serialized))["scores"]
    plain_dir = str(tmp_path / "plain")
    export.export_serving_model([lstm_member], plain_dir, max_frames=32)
    plain = tf.saved_model.load(plain_dir).signatures["serving_default"](serialized=tf.constant(serialized))["scores"]

    _, rgb, audio, num_frames, _ = readers.decode_frame_batch(tf.constant(serialized), max_frames=32)
    call = tf.function(lambda inputs: lstm_member.model(inputs, training=False))
    expected = []
    for b in range(len(videos)):
        n = int(num_frames[b])
        probs = []
        for r, a, k in _variants_numpy(rgb[b].numpy()[:n], audio[b].numpy()[:n], n):
            pad = rgb.shape[1] - k
            inputs = {"rgb": np.pad(r, [[0, pad], [0, 0]])[None], "audio": np.pad(a, [[0, pad], [0, 0]])[None],
                      "num_frames": np.array([k], np.int32)}
            probs.append(call(inputs).numpy()[0])
        expected.append(np.mean(probs, axis=0))
    np.testing.assert_allclose(served.numpy(), np.stack(expected), atol=1e-5)
    assert np.abs(served.numpy() - plain.numpy()).max() > 1e-4, "TTA should change an LSTM's scores"
