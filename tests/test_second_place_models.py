"""The 2018 2nd place's families (yt8m/models/second_place.py) beyond the zoo-wide checks of
tests/test_models.py (build, train, masking, served == in-memory) and tests/test_model_sizes.py
(small and published sizes): their own layers, and one epoch of ``yt8m train`` per small preset."""

import glob
import os

import numpy as np
import pytest

from yt8m import config as config_lib
from yt8m import synth, training
from yt8m.models import registry, second_place

FAMILIES = ["attention_net", "bilstm_attention", "frame_conv_max", "vlad_bow"]
NUM_CLASSES = 10


def test_families_are_registered_with_team_sized_published_presets():
    for name in FAMILIES:
        family = registry.get_family(name)
        assert family.input_level == "frame" and "2nd place" in family.description
        assert {"small", "published"} <= set(family.presets) <= {"small", "published", "local"}
        assert family.presets["published"]["head"] == "logistic"  # the team's final Linear (+ sigmoid)


def test_attention_pool_ignores_padding_and_empty_videos_give_zero():
    pool = second_place.MaskedAttentionPool()
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    out = np.asarray(pool(x, np.array([5, 2, 0], np.int32)))
    noisy = x.copy()
    noisy[1, 2:] = 100.0
    np.testing.assert_allclose(np.asarray(pool(noisy, np.array([5, 2, 0], np.int32))), out, atol=1e-6)
    np.testing.assert_allclose(out[2], 0.0)
    # a convex combination of the real frames
    assert (out[1] <= x[1, :2].max(0) + 1e-6).all() and (out[1] >= x[1, :2].min(0) - 1e-6).all()


def test_soft_bow_counts_real_frames_and_power_is_signed():
    bow = second_place.PowerSoftBoW(6, 3, power=2.5)  # a non-integer power: z.pow(p) would be NaN for z < 0
    rng = np.random.default_rng(1)
    rgb = rng.normal(size=(2, 7, 1024)).astype(np.float32)
    audio = rng.normal(size=(2, 7, 128)).astype(np.float32)
    v, a = bow(rgb, audio, np.array([7, 3], np.int32))
    np.testing.assert_allclose(np.asarray(v).sum(1), [7.0, 3.0], rtol=1e-5)  # one soft word per real frame
    np.testing.assert_allclose(np.asarray(a).sum(1), [7.0, 3.0], rtol=1e-5)
    assert np.isfinite(np.asarray(v)).all() and bow.power.trainable


def test_learnable_power_is_learned_and_shared():
    import keras

    keras.utils.set_random_seed(0)
    model = registry.build_model("vlad_bow", NUM_CLASSES, "small")
    powers = [w for w in model.trainable_weights if w.name == "power"]
    assert len(powers) == 1  # one power for both modalities, as the team's shared nn.Parameter
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    rng = np.random.default_rng(2)
    frames = rng.normal(size=(8, 5, 1152)).astype(np.float32)
    x = {"rgb": frames[..., :1024], "audio": frames[..., 1024:], "num_frames": np.full(8, 5, np.int32)}
    model.fit(x, (rng.random((8, NUM_CLASSES)) < 0.3).astype(np.float32), epochs=1, batch_size=4, verbose=0)
    assert float(powers[0].numpy()) != 3.0 and np.isfinite(float(powers[0].numpy()))
    frozen = registry.build_model("vlad_bow", NUM_CLASSES, "small", {"learnable_power": False})
    assert not [w for w in frozen.trainable_weights if w.name == "power"]


def test_frame_conv_max_frame_pool_projects_window_means_of_the_real_frames():
    """frame_pool 2 on 5 real frames (+ 2 padding) == frame_pool 1 on their 3 window means, same weights."""
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(2, 7, 1152)).astype(np.float32)
    frames[:, 5:] = 9.0  # padding: never in a window
    means = np.stack([frames[:, 0:2].mean(1), frames[:, 2:4].mean(1), frames[:, 4]], axis=1)
    pooled = registry.build_model("frame_conv_max", NUM_CLASSES, "small", {"frame_pool": 2})
    plain = registry.build_model("frame_conv_max", NUM_CLASSES, "small")
    plain.set_weights(pooled.get_weights())

    def scores(model, x, n):
        return np.asarray(model({"rgb": x[..., :1024], "audio": x[..., 1024:],
                                 "num_frames": np.full(2, n, np.int32)}, training=False))

    np.testing.assert_allclose(scores(pooled, frames, 5), scores(plain, means, 3), rtol=1e-5, atol=1e-6)
    assert not np.allclose(scores(plain, frames, 5), scores(plain, means, 3), atol=1e-4)  # pooling matters
    assert registry.get_family("frame_conv_max").presets["published"]["frame_pool"] == 1  # the team's model


def test_frame_conv_max_mean_skip_feeds_the_real_frames_means_to_the_head():
    """With mean_skip the head also sees BN(mean of the real frames): padding changes nothing, the mean does."""
    model = registry.build_model("frame_conv_max", NUM_CLASSES, "small", {"mean_skip": True})
    plain = registry.build_model("frame_conv_max", NUM_CLASSES, "small")
    inner = registry.get_family("frame_conv_max").presets["small"]["inner"]
    assert model.get_layer("trunk_and_means").output.shape[-1] == inner + 1152
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(2, 6, 1152)).astype(np.float32)
    padded = frames.copy()
    padded[:, 4:] = 7.0  # after the 4 real frames

    def scores(m, x):
        return np.asarray(m({"rgb": x[..., :1024], "audio": x[..., 1024:], "num_frames": np.full(2, 4, np.int32)},
                            training=False))

    np.testing.assert_allclose(scores(model, frames), scores(model, padded), rtol=1e-5, atol=1e-6)
    before = scores(model, frames)
    norm = model.get_layer("means_norm")
    norm.gamma.assign(np.zeros(1152, np.float32))
    norm.beta.assign(np.zeros(1152, np.float32))  # the skip now adds zeros to the head's input
    assert not np.allclose(before, scores(model, frames), atol=1e-4)
    assert len(model.get_weights()) > len(plain.get_weights())


@pytest.fixture(scope="module")
def synthetic_train_files(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth"))
    synth.generate(root, videos=100, classes=NUM_CLASSES, seed=4, splits=(("train", 0.8), ("validate", 0.2)),
                   progress=False)
    train = sorted(glob.glob(os.path.join(root, "train", "*.tfrecord*")))
    evaluation = sorted(glob.glob(os.path.join(root, "validate", "*.tfrecord*")))
    assert train and evaluation
    return train, evaluation


@pytest.mark.slow  # ~50 s for the four on 2 shared cores
@pytest.mark.parametrize("family", FAMILIES)
def test_small_preset_trains_one_epoch_with_yt8m_train(tmp_path, synthetic_train_files, family):
    train, evaluation = synthetic_train_files
    cfg = config_lib.ModelConfig(name=f"sp-{family}", family=family, preset="small",
                                 training=config_lib.TrainingConfig(epochs=1, batch_size=16, eval_batch_size=16,
                                                                    max_frames=300))
    out = str(tmp_path / family)
    result = training.train_single(cfg, train, out, NUM_CLASSES, eval_data=evaluation)
    assert os.path.isdir(os.path.join(out, "saved_model"))
    assert 0.0 <= result["eval"]["gap"] <= 1.0 and result["parameters"] < 5_000_000
