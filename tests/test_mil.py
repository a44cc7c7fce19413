"""frame_mil (yt8m/models/mil.py): the log-mean-exp pooling and what late pooling can learn that mean pooling cannot."""

import numpy as np
import pytest

from yt8m.models import mil, registry


def _pool(x, num_frames, sharpness):
    return np.asarray(mil.MaskedLogMeanExpPool(sharpness)(x.astype(np.float32), np.asarray(num_frames, np.int32)))


def test_log_mean_exp_pool_goes_from_the_mean_to_the_max_over_the_real_frames_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 5))
    num_frames = [7, 3, 1]
    real = [x[i, :n] for i, n in enumerate(num_frames)]
    np.testing.assert_allclose(_pool(x, num_frames, 1e-3), [r.mean(0) for r in real], atol=2e-3)
    # r large: the max, up to log(n) / r
    np.testing.assert_allclose(_pool(x, num_frames, 200.0), [r.max(0) for r in real], atol=np.log(7) / 200 + 1e-5)
    # r = 2 by the formula
    expected = [np.log(np.exp(2 * r).mean(0)) / 2 for r in real]
    np.testing.assert_allclose(_pool(x, num_frames, 2.0), expected, atol=1e-5)
    # padding never enters, whatever it holds (huge values included)
    garbage = x.copy()
    for i, n in enumerate(num_frames):
        garbage[i, n:] = 1e4
    np.testing.assert_allclose(_pool(garbage, num_frames, 4.0), _pool(x, num_frames, 4.0), atol=1e-6)


def test_log_mean_exp_pool_scores_an_empty_video_zero_and_rejects_a_bad_sharpness():
    assert np.array_equal(_pool(np.ones((1, 4, 2)), [0], 4.0), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="sharpness must be > 0"):
        mil.MaskedLogMeanExpPool(0.0)
    with pytest.raises(ValueError, match="hidden must be >= 0"):
        registry.build_model("frame_mil", 3, "small", {"hidden": -1})


def _conjunction_videos(rng, n, frames=20, amplitude=3.0):
    """Label 1 (2 in 5 videos): directions u and v together in the same 2 frames. Label 0: 2 in 5 videos hold
    nothing, 1 in 5 is a decoy (u in 2 frames, v in 2 others). A decoy's frame mean is a positive's,
    ``2 * amplitude * (u + v) / frames`` plus noise, so mean pooling cannot tell those two apart; a per-frame
    linear score ``(u + v) . x`` is twice as high on a positive's frames. Returns (inputs, labels, is_decoy)."""
    dim, used = 1152, 128  # noise and evidence live in 128 of the 1,152 dimensions (fewer than the videos)
    u, v = np.zeros(dim), np.zeros(dim)
    u[:used // 2], v[used // 2:used] = 1.0, 1.0
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    x = np.zeros((n, frames, dim))
    x[..., :used] = rng.normal(scale=0.3, size=(n, frames, used))
    kind = np.array([0, 0, 1, 2, 2])[np.arange(n) % 5]  # 0 positive, 1 decoy, 2 nothing
    for i in range(n):
        t = rng.permutation(frames)[:4]
        if kind[i] == 0:
            x[i, t[:2]] += amplitude * (u + v)
        elif kind[i] == 1:
            x[i, t[:2]] += amplitude * u
            x[i, t[2:]] += amplitude * v
    x = x.astype(np.float32)
    inputs = {"rgb": x[..., :1024], "audio": x[..., 1024:], "num_frames": np.full(n, frames, np.int32)}
    return inputs, (kind == 0).astype(np.float32)[:, None], kind == 1


def test_late_pooling_learns_a_within_frame_conjunction_that_mean_pooling_cannot_see():
    import keras

    rng = np.random.default_rng(0)
    train, y_train, train_decoy = _conjunction_videos(rng, 600)
    test, y_test, decoy = _conjunction_videos(rng, 150)
    keras.utils.set_random_seed(0)
    model = registry.build_model("frame_mil", 1, "local", {"frame_pool": 1})
    model.compile(optimizer=keras.optimizers.Adam(3e-2), loss="binary_crossentropy")
    model.fit(train, y_train, batch_size=50, epochs=20, verbose=0)
    correct = (np.asarray(model(test, training=False))[:, 0] > 0.5) == (y_test[:, 0] > 0.5)
    assert correct.mean() >= 0.95 and correct[decoy].mean() >= 0.95, (correct.mean(), correct[decoy].mean())
    # the same data mean-pooled: a linear model on the means tells the empty videos from the positives but
    # not the decoys (near chance on positives vs decoys)
    def means(x):
        return np.c_[x["rgb"].mean(1), x["audio"].mean(1), np.ones(len(x["rgb"]))]

    fit = (y_train[:, 0] > 0.5) | train_decoy  # least squares on positives vs decoys only
    w, *_ = np.linalg.lstsq(means(train)[fit], y_train[fit, 0] * 2 - 1, rcond=None)
    pairs = (y_test[:, 0] > 0.5) | decoy
    mean_correct = ((means(test) @ w > 0) == (y_test[:, 0] > 0.5))[pairs]
    assert mean_correct.mean() < 0.7, mean_correct.mean()


def test_mean_skip_adds_a_linear_score_of_the_frame_means_to_the_pooled_logits():
    """With the per-window logits zeroed, a mean_skip model scores sigmoid(W . BN(frame means) + b): the frame means
    over each video's real frames only; without mean_skip there is no such layer."""
    rng = np.random.default_rng(1)
    model = registry.build_model("frame_mil", 3, "local", {"mean_skip": True})
    assert "mean_logits" not in [layer.name for layer in registry.build_model("frame_mil", 3, "local").layers]
    frame_logits = model.get_layer("frame_logits")
    frame_logits.set_weights([np.zeros_like(w) for w in frame_logits.get_weights()])
    dense = model.get_layer("mean_logits")
    dense.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.05 for w in dense.get_weights()])
    frames, num_frames = rng.normal(size=(2, 12, 1152)).astype(np.float32), np.array([12, 5], np.int32)
    frames[1, 5:] = 9.0  # padding: never in the mean
    inputs = {"rgb": frames[..., :1024], "audio": frames[..., 1024:], "num_frames": num_frames}
    means = np.stack([frames[i, :n].mean(0) for i, n in enumerate(num_frames)])
    gamma, beta, moving_mean, moving_var = model.get_layer("means_norm").get_weights()
    normed = (means - moving_mean) / np.sqrt(moving_var + 1e-3) * gamma + beta
    kernel, bias = dense.get_weights()
    expected = 1.0 / (1.0 + np.exp(-(normed @ kernel + bias)))
    np.testing.assert_allclose(np.asarray(model(inputs, training=False)), expected, rtol=1e-4, atol=1e-5)
