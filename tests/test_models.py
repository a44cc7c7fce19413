"""The model zoo: every family's small preset trains, outputs probabilities, honours num_frames,
exports into the serving graph unchanged, and validates its overrides."""

import numpy as np
import pytest
import tensorflow as tf

from yt8m import export
from yt8m.models import layers, registry

NUM_CLASSES = 7
FRAMES = 6

# The 2018 2nd place's families (yt8m/models/second_place.py).
SECOND_PLACE_FAMILIES = ["attention_net", "bilstm_attention", "frame_conv_max", "vlad_bow"]
FAMILIES = sorted(["logistic", "moe", "resnet_like", "dbof", "soft_dbof", "gated_soft_dbof", "netvlad", "netrvlad",
                   "netfv", "lstm", "gru", "transformer", "frame_mil"] + SECOND_PLACE_FAMILIES)
FRAME_FAMILIES = [f for f in FAMILIES if f not in ("logistic", "moe", "resnet_like")]

# (family, overrides): every family's small preset plus the options that change the graph.
CASES = [(f, {}) for f in FAMILIES] + [
    ("moe", {"output_gating": True}),
    ("resnet_like", {"head": "moe"}),
    ("dbof", {"pooling": "mean", "context_gating": True}),
    ("dbof", {"input_bn": True, "sample_frames_at_inference": 4}),  # the published preset's options
    ("soft_dbof", {"max_pool": True}),
    ("soft_dbof", {"hidden_bn": False}),  # WILLOW's relu=False hidden layer: a bias, no BN
    ("gated_soft_dbof", {"gated_pooling": False, "context_gating": True, "max_pool": True}),
    ("netvlad", {"head": "label_embedding", "output_gating": True}),
    ("netvlad", {"input_l2": "per_modality", "input_bn": False, "hidden_relu": False, "hidden_bn": False}),
    ("lstm", {"bidirectional": True}),
    ("gru", {"bidirectional": True, "state": "all", "head": "label_embedding"}),
    ("gru", {"reset_after": False}),
    ("transformer", {"positional": False, "head": "logistic"}),
    ("attention_net", {"layers": 1, "head": "logistic"}),
    ("bilstm_attention", {"layers": 2, "rgb_projection": 0}),
    ("frame_conv_max", {"kernel_size": 3, "dropout": 0.1}),
    ("vlad_bow", {"learnable_power": False, "power": 1.0, "bow_dropout": 0.1}),
    ("frame_mil", {"hidden": 0, "frame_pool": 1, "sharpness": 1.0, "dropout": 0.1}),
]
FRAME_CASES = [c for c in CASES if c[0] in FRAME_FAMILIES]


def _case_id(case):
    family, overrides = case
    return family + "".join(f"-{k}={v}" for k, v in sorted(overrides.items()))


def _frames(rng, n, frames=FRAMES, num_frames=None):
    """Random frame batch, zero beyond each video's num_frames (as the readers deliver it)."""
    if num_frames is None:
        num_frames = rng.integers(1, frames + 1, n)
    num_frames = np.asarray(num_frames, np.int32)
    mask = (np.arange(frames)[None, :] < num_frames[:, None])[..., None]
    return {"rgb": (rng.normal(size=(n, frames, 1024)) * mask).astype(np.float32),
            "audio": (rng.normal(size=(n, frames, 128)) * mask).astype(np.float32),
            "num_frames": num_frames}


def _video(frames):
    """The masked mean of the frames: what export._video_features feeds a video-level member."""
    denom = np.maximum(frames["num_frames"], 1).astype(np.float32)[:, None]
    return {"mean_rgb": frames["rgb"].sum(1) / denom, "mean_audio": frames["audio"].sum(1) / denom}


def _inputs(family, frames):
    return frames if registry.get_family(family).input_level == "frame" else _video(frames)


def _pad(frames, extra, fill=0.0, rng=None):
    """Append ``extra`` frames after the last one; ``num_frames`` unchanged."""
    out = dict(frames)
    for key in ("rgb", "audio"):
        b, f, d = frames[key].shape
        tail = np.full((b, extra, d), fill, np.float32) if rng is None else rng.normal(size=(b, extra, d))
        out[key] = np.concatenate([frames[key], tail.astype(np.float32)], axis=1)
    return out


def _with_garbage_padding(frames, rng):
    """Fill every padding position (index >= num_frames) with noise."""
    out = dict(frames)
    mask = (np.arange(frames["rgb"].shape[1])[None, :] < frames["num_frames"][:, None])[..., None]
    for key in ("rgb", "audio"):
        out[key] = np.where(mask, frames[key], rng.normal(size=frames[key].shape)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def trained():
    """Each case's model after 3 training steps (built once per module)."""
    import keras

    cache = {}

    def get(case):
        key = _case_id(case)
        if key not in cache:
            family, overrides = case
            keras.utils.set_random_seed(0)
            model = registry.build_model(family, NUM_CLASSES, "small", overrides)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
            rng = np.random.default_rng(1)
            x = _inputs(family, _frames(rng, 12))
            y = (rng.random((12, NUM_CLASSES)) < 0.3).astype(np.float32)
            before = [w.numpy().copy() for w in model.trainable_weights]
            history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
            changed = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
            cache[key] = (model, history.history["loss"], changed, len(before))
        return cache[key]

    return get


def test_registry_has_every_family_with_small_and_published_presets():
    registry._load_families()
    assert sorted(registry.FAMILIES) == FAMILIES
    for name in FAMILIES:
        family = registry.get_family(name)
        assert {"small", "published"} <= set(family.presets), name
        assert set(family.presets["small"]) == set(family.presets["published"]), name
        assert family.input_level == ("frame" if name in FRAME_FAMILIES else "video")
        assert family.description


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_small_preset_trains_and_outputs_probabilities(trained, case):
    family, overrides = case
    model, losses, changed, total = trained(case)
    assert np.isfinite(losses).all()
    assert changed == total, f"{changed}/{total} trainable tensors were updated"
    x = _inputs(family, _frames(np.random.default_rng(2), 5))
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (5, NUM_CLASSES)
    assert np.isfinite(probs).all() and probs.min() >= 0.0 and probs.max() <= 1.0
    assert model.count_params() < 5_000_000  # small presets stay CPU-test sized


@pytest.mark.parametrize("case", FRAME_CASES, ids=_case_id)
def test_frames_beyond_num_frames_do_not_change_the_prediction(trained, case):
    model = trained(case)[0]
    rng = np.random.default_rng(3)
    x = _frames(rng, 4, num_frames=[FRAMES, 3, 1, 5])
    base = np.asarray(model(x, training=False))
    padded = np.asarray(model(_pad(x, 9), training=False))  # F=6 -> F=15, e.g. eval at 300 vs training samples
    np.testing.assert_allclose(padded, base, atol=1e-5, rtol=0)
    garbage = np.asarray(model(_with_garbage_padding(_pad(x, 3), rng), training=False))
    np.testing.assert_allclose(garbage, base, atol=1e-5, rtol=0)
    # ... while the real frames do count
    truncated = dict(x, num_frames=np.asarray([2, 3, 1, 5], np.int32))
    assert np.abs(np.asarray(model(truncated, training=False))[0] - base[0]).max() > 0


@pytest.mark.parametrize("family,overrides", [("dbof", {}), ("dbof", {"input_bn": True}), ("soft_dbof", {}),
                                              ("gated_soft_dbof", {}), ("netvlad", {}), ("netfv", {}),
                                              ("frame_conv_max", {}), ("frame_mil", {})])
def test_padding_does_not_enter_batch_norm_statistics_at_training_time(family, overrides):
    """Per-frame BatchNormalization (input BN, cluster assignments) uses only the real frames' batch statistics."""
    import keras

    keras.utils.set_random_seed(0)
    model = registry.build_model(family, NUM_CLASSES, "small", overrides)
    x = _frames(np.random.default_rng(7), 4, num_frames=[FRAMES, 3, 1, 5])
    base = np.asarray(model(x, training=True))
    np.testing.assert_allclose(np.asarray(model(_pad(x, 9), training=True)), base, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_exported_graph_matches_in_memory_prediction(tmp_path, trained, case):
    family, overrides = case
    model = trained(case)[0]
    level = registry.get_family(family).input_level
    config = {"family": family, "preset": "small", "overrides": overrides}
    export.export_serving_model([export.Member(_case_id(case), model, level, config)], str(tmp_path))
    x = _frames(np.random.default_rng(4), 4, num_frames=[FRAMES, 3, 1, 5])
    served = tf.saved_model.load(str(tmp_path)).signatures["predict_features"](
        rgb=tf.constant(x["rgb"]), audio=tf.constant(x["audio"]), num_frames=tf.constant(x["num_frames"]))
    expected = np.asarray(model(_inputs(family, x), training=False))
    assert served["scores"].shape == (4, NUM_CLASSES)
    np.testing.assert_allclose(served["scores"].numpy(), expected, atol=1e-5, rtol=0)


def test_overrides_change_the_model_and_unknown_keys_raise():
    base = registry.build_model("moe", NUM_CLASSES, "small").count_params()
    gated = registry.build_model("moe", NUM_CLASSES, "small", {"output_gating": True}).count_params()
    assert gated - base == NUM_CLASSES * NUM_CLASSES + 4 * NUM_CLASSES  # C x C gating + BN
    assert registry.resolve_params("lstm", "small", {"units": 8})["units"] == 8
    bi = registry.build_model("lstm", NUM_CLASSES, "small", {"units": 8, "bidirectional": True})
    assert [type(layer).__name__ for layer in bi.layers].count("Bidirectional") == 2
    with pytest.raises(KeyError, match="override 'bogus' is not a parameter of 'netvlad'"):
        registry.build_model("netvlad", NUM_CLASSES, "small", {"bogus": 1})
    with pytest.raises(KeyError, match="no preset 'huge'"):
        registry.build_model("gru", NUM_CLASSES, "huge")
    with pytest.raises(ValueError, match="head must be one of"):
        registry.build_model("dbof", NUM_CLASSES, "small", {"head": "svm"})
    with pytest.raises(ValueError, match="state must be"):
        registry.build_model("gru", NUM_CLASSES, "small", {"state": "mean"})


def test_rnn_final_state_sizes():
    """``state="last"``: the top layer's final h; ``"all"``: every layer's final state (LSTM h and c)."""
    units, c = 8, NUM_CLASSES

    def moe_input_width(family, **overrides):
        model = registry.build_model(family, c, "small", {"units": units, **overrides})
        return model.get_layer("moe").gates.kernel.shape[0]

    assert moe_input_width("lstm") == units
    assert moe_input_width("lstm", state="all") == 4 * units
    assert moe_input_width("lstm", bidirectional=True) == 2 * units
    assert moe_input_width("gru", state="all") == 2 * units
    assert moe_input_width("gru", bidirectional=True, state="all") == 4 * units


def test_masked_pools_and_empty_videos():
    x = np.array([[[1.0, -5.0], [3.0, -1.0], [100.0, 100.0]]], np.float32)
    n = np.array([2], np.int32)
    np.testing.assert_allclose(layers.MaskedMaxPool()(x, n), [[3.0, -1.0]])
    np.testing.assert_allclose(layers.MaskedMeanPool()(x, n), [[2.0, -3.0]])
    np.testing.assert_allclose(layers.MaskedMaxPool()(x, np.array([0], np.int32)), [[0.0, 0.0]])
    np.testing.assert_allclose(layers.MaskedMeanPool()(x, np.array([0], np.int32)), [[0.0, 0.0]])


def test_vlad_layers_output_sizes_and_unit_norm():
    x = np.random.default_rng(5).normal(size=(2, 4, 16)).astype(np.float32)
    n = np.array([4, 2], np.int32)
    for layer, width in [(layers.NetVLAD(3), 48), (layers.NetRVLAD(3), 48), (layers.NetFV(3), 96),
                         (layers.SoftDBoF(5), 5), (layers.SoftDBoF(5, max_pool=True), 10),
                         (layers.GatedSoftDBoF(5), 5), (layers.DBoF(5), 5)]:
        out = np.asarray(layer(x, n))
        assert out.shape == (2, width), type(layer).__name__
        if not isinstance(layer, layers.DBoF):
            norms = np.linalg.norm(out, axis=1)
            expected = 2.0 if isinstance(layer, layers.NetFV) or getattr(layer, "max_pool", False) else 1.0
            np.testing.assert_allclose(norms, np.sqrt(expected), rtol=1e-4)
    assert not hasattr(layers.NetRVLAD(3), "cluster_centers")


def test_output_gating_and_label_embedding_keep_probabilities():
    rng = np.random.default_rng(6)
    probs = rng.random((3, NUM_CLASSES)).astype(np.float32)
    gated = np.asarray(layers.ContextGating()(probs))
    assert (gated >= 0).all() and (gated <= probs + 1e-7).all()
    head = layers.LabelEmbeddingHead(NUM_CLASSES, 4)
    scores = np.asarray(head(rng.normal(size=(3, 10)).astype(np.float32)))
    assert scores.shape == (3, NUM_CLASSES) and (scores > 0).all() and (scores < 1).all()
    assert head.class_embeddings.shape == (NUM_CLASSES, 4)


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_round_trip_through_a_rebuilt_model(tmp_path, family):
    """The ensembler rebuilds members from (family, preset, overrides) + ``model.weights.h5``."""
    import keras

    keras.utils.set_random_seed(1)
    model = registry.build_model(family, NUM_CLASSES, "small")
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    keras.utils.set_random_seed(2)
    rebuilt = registry.build_model(family, NUM_CLASSES, "small")
    rebuilt.load_weights(path)
    x = _inputs(family, _frames(np.random.default_rng(8), 3))
    np.testing.assert_allclose(np.asarray(rebuilt(x, training=False)), np.asarray(model(x, training=False)),
                               atol=1e-6, rtol=0)


def test_resnet_like_uses_pytorchs_leaky_relu_slope_as_the_2nd_place_team():
    """twoleggedeye/youtube8m trained ResNetLike with nn.LeakyReLU() (slope 0.01), not Keras' default 0.3."""
    import keras

    from yt8m.models import registry as registry_lib

    for family in ("resnet_like", "frame_conv_max", "vlad_bow"):
        model = registry_lib.build_model(family, 10, "small")
        slopes = {float(layer.negative_slope) for layer in model.layers if isinstance(layer, keras.layers.LeakyReLU)}
        assert slopes == {0.01}, (family, slopes)


def test_dbof_samples_frames_at_inference_as_the_starter_and_uses_the_given_frames_at_training():
    """google/youtube-8m DbofModel samples ``iterations`` frames inside the model, at evaluation too. Here: at
    inference, a fixed draw of positions floor(u * num_frames) shared by every video (so a score does not
    depend on the batch); at training, the frames the reader sampled, unchanged."""
    import keras

    samples = 4
    keras.utils.set_random_seed(0)
    sampling = registry.build_model("dbof", NUM_CLASSES, "small", {"sample_frames_at_inference": samples})
    every_frame = registry.build_model("dbof", NUM_CLASSES, "small")
    every_frame.set_weights(sampling.get_weights())
    x = _frames(np.random.default_rng(8), 3, num_frames=[FRAMES, 3, 1])
    positions = np.asarray(sampling.get_layer("inference_frame_sample").positions)
    index = np.floor(positions[None, :] * x["num_frames"][:, None]).astype(int)  # [B, samples]
    gathered = {key: np.take_along_axis(x[key], index[..., None], axis=1) for key in ("rgb", "audio")}
    gathered["num_frames"] = np.full(3, samples, np.int32)
    np.testing.assert_allclose(np.asarray(sampling(x, training=False)),
                               np.asarray(every_frame(gathered, training=False)), atol=1e-6, rtol=0)
    alone = np.asarray(sampling({k: v[1:2] for k, v in x.items()}, training=False))
    np.testing.assert_allclose(alone[0], np.asarray(sampling(x, training=False))[1], atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.asarray(sampling(x, training=True)), np.asarray(every_frame(x, training=True)),
                               atol=1e-6, rtol=0)
    assert registry.resolve_params("dbof", "published")["sample_frames_at_inference"] == 30  # --iterations 30
    assert registry.resolve_params("dbof", "small")["sample_frames_at_inference"] == 0  # the local run's member


def test_moe_gates_have_no_bias_and_the_experts_have_one():
    """google/youtube-8m video_level_models.py MoeModel: gates ``biases_initializer=None``."""
    moe = layers.MixtureOfExperts(NUM_CLASSES, 2)
    moe.build((None, 10))
    assert not moe.gates.use_bias and moe.experts.use_bias
    assert moe.count_params() == 10 * NUM_CLASSES * 3 + 10 * NUM_CLASSES * 2 + NUM_CLASSES * 2


def test_hidden_layer_without_batch_norm_has_a_bias_as_willow_without_relu():
    """WILLOW ``*ModelLF``: BN on the hidden layer only with relu; else ``hidden1_biases`` and no BN."""
    with_bn = registry.build_model("netvlad", NUM_CLASSES, "small", {"hidden": 8})
    without = registry.build_model("netvlad", NUM_CLASSES, "small", {"hidden": 8, "hidden_relu": False,
                                                                     "hidden_bn": False})
    assert not with_bn.get_layer("hidden").use_bias and with_bn.get_layer("hidden_bn")
    assert without.get_layer("hidden").use_bias
    assert "hidden_bn" not in [layer.name for layer in without.layers]
    assert registry.resolve_params("netvlad", "published")["hidden_bn"] is False


@pytest.mark.parametrize("family", ["netvlad", "soft_dbof", "gated_soft_dbof", "dbof"])
def test_willow_and_starter_models_batch_normalize_their_input_frames(family):
    """WILLOW's ``*ModelLF`` and the starter's DbofModel: an input BatchNorm over the joint 1152-d frames."""
    p = registry.resolve_params(family, "published")
    assert p["input_bn"] is True and p.get("input_l2", "joint") == "joint"
    model = registry.build_model(family, NUM_CLASSES, "small", {"input_bn": True})
    assert model.get_layer("input_bn").norm.gamma.shape == (1152,)


def test_gru_reset_after_false_is_the_tf1_cell():
    """TF1 GRUCell (WILLOW's GruModel) applies the reset gate before the recurrent matmul and has one bias
    vector: Keras ``reset_after=False``; the published preset uses it."""
    tf1 = registry.build_model("gru", NUM_CLASSES, "small", {"units": 8, "layers": 1, "reset_after": False})
    cudnn = registry.build_model("gru", NUM_CLASSES, "small", {"units": 8, "layers": 1})
    assert tf1.get_layer("gru_0").cell.bias.shape == (3 * 8,)
    assert cudnn.get_layer("gru_0").cell.bias.shape == (2, 3 * 8)
    assert registry.resolve_params("gru", "published")["reset_after"] is False
    assert registry.resolve_params("gru", "small")["reset_after"] is True


def test_published_presets_carry_their_team_recipe_and_the_yaml_training_fields_override_it():
    import dataclasses

    from yt8m import config

    registry._load_families()
    fields = {f.name for f in dataclasses.fields(config.TrainingConfig)}
    for name, family in registry.FAMILIES.items():
        assert set(family.recipes) == set(family.recipe_sources), name
        for preset, recipe in family.recipes.items():
            assert set(recipe) <= fields, (name, preset, set(recipe) - fields)
            loaded = config.model_config_from_dict({"name": "m", "family": name, "preset": preset}).training
            assert {k: getattr(loaded, k) for k in recipe} == recipe, (name, preset)
    willow = registry.training_recipe("netvlad", "published")
    assert (willow["learning_rate"], willow["lr_decay"], willow["lr_decay_examples"], willow["batch_size"],
            willow["num_samples"], willow["clip_gradient_norm"]) == (2e-4, 0.8, 4_000_000, 80, 300, 1.0)
    assert willow["epochs"] * willow["steps_per_epoch"] == 700_000  # --max_step=700000
    assert registry.training_recipe("gru", "published")["batch_size"] == 128
    assert registry.training_recipe("soft_dbof", "published")["lr_decay"] == 0.9
    # the user's training fields win; the small presets keep the library defaults (the local run)
    mine = config.model_config_from_dict({"name": "m", "family": "netvlad", "preset": "published",
                                          "training": {"batch_size": 16}}).training
    assert (mine.batch_size, mine.learning_rate) == (16, 2e-4)
    assert config.model_config_from_dict({"name": "m", "family": "netvlad"}).training == config.TrainingConfig()
    run = config.run_config_from_dict({"models": [{"name": "v", "family": "vlad_bow", "preset": "published"}]})
    assert run.models[0].training.batch_size == 128  # twoleggedeye configs/config91.yaml


# BatchNormalization moving-average momentum of each family's published preset, from its reference code
# (yt8m/models/layers.py): TF-slim slim.batch_norm's default decay 0.999 (Youtube-8M-WILLOW
# frame_level_models.py / video_level_models.py, google/youtube-8m frame_level_models.py DbofModel: no call
# passes a decay); PyTorch nn.BatchNorm1d's default momentum 0.1, i.e. Keras 0.9 (twoleggedeye/youtube8m
# ResNetLike.FCBlock and sequence_models/models.py); the transformer has no reference code: Keras' 0.99.
# logistic has no BN.
PUBLISHED_BN_MOMENTUM = {
    **dict.fromkeys(["netvlad", "netrvlad", "netfv", "soft_dbof", "gated_soft_dbof", "dbof", "lstm", "gru", "moe"],
                    0.999),
    **dict.fromkeys(["resnet_like", "attention_net", "bilstm_attention", "frame_conv_max", "vlad_bow"], 0.9),
    "transformer": 0.99, "frame_mil": 0.99,  # no reference code either
}
# Every optional BN switched on (where the family has the switch), so that each BN site is checked ...
BN_SITES_ON = {"input_bn": True, "hidden_bn": True, "context_gating": True, "output_gating": True}
# ... and the published presets built at small widths (their other parameters kept).
NARROW = {
    **dict.fromkeys(["netvlad", "netrvlad", "netfv", "soft_dbof", "gated_soft_dbof"],
                    {"clusters": 4, "audio_clusters": 2, "hidden": 8}),
    "dbof": {"clusters": 4, "hidden": 8, "sample_frames_at_inference": 2},
    "lstm": {"units": 4}, "gru": {"units": 4}, "moe": {},
    "transformer": {"width": 8, "layers": 1, "num_heads": 2, "ff_dim": 8},
    "resnet_like": {"inner": 8, "branch_blocks": 1, "fused_blocks": 1},
    "attention_net": {"layers": 1, "hidden": 8, "fc_sizes": [8]},
    "bilstm_attention": {"rgb_projection": 8, "audio_projection": 4, "rgb_units": 4, "audio_units": 2, "fc_sizes": [8]},
    "frame_conv_max": {"rgb_units": 8, "audio_units": 4, "inner": 8, "branch_blocks": 1, "fused_blocks": 1},
    "vlad_bow": {"clusters": 4, "audio_clusters": 4, "inner": 8, "branch_blocks": 1, "fused_blocks": 1},
    "frame_mil": {"hidden": 8},
}


def _batch_norm_momenta(family: str, preset: str, overrides: dict) -> list[float]:
    """The momentum of every BatchNormalization in the built model, those inside custom layers included."""
    import keras

    params = registry.resolve_params(family, preset)
    overrides = {**{k: v for k, v in BN_SITES_ON.items() if k in params}, **overrides}
    model = registry.build_model(family, NUM_CLASSES, preset, overrides)
    return [layer.momentum for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def test_every_family_with_batch_norm_has_a_bn_momentum_parameter():
    registry._load_families()
    for name in FAMILIES:
        has_bn = bool(_batch_norm_momenta(name, "small", {}))
        assert has_bn == (name in PUBLISHED_BN_MOMENTUM), name
        for preset, params in registry.get_family(name).presets.items():
            assert ("bn_momentum" in params) == has_bn, (name, preset)


@pytest.mark.parametrize("family", sorted(PUBLISHED_BN_MOMENTUM))
def test_published_presets_use_the_reference_bn_momentum_and_small_ones_keras(family):
    """Published: the reference code's BN moving average; small / cpu / local: Keras' 0.99 (a few hundred steps
    would leave a 0.999 average near its initial statistics)."""
    expected = PUBLISHED_BN_MOMENTUM[family]
    assert registry.resolve_params(family, "published")["bn_momentum"] == expected
    published = _batch_norm_momenta(family, "published", NARROW[family])
    assert published and all(m == pytest.approx(expected) for m in published), published
    small = _batch_norm_momenta(family, "small", {})
    assert small and all(m == pytest.approx(0.99) for m in small), small
    for preset in set(registry.get_family(family).presets) - {"published"}:
        assert registry.resolve_params(family, preset)["bn_momentum"] == 0.99, preset


def test_custom_layers_keep_their_bn_momentum_through_their_config():
    from yt8m.models import second_place

    for layer in [layers.FrameBatchNorm(0.9), layers.ContextGating(0.9), layers.NetVLAD(3, bn_momentum=0.9),
                  layers.NetFV(3, bn_momentum=0.9), layers.SoftDBoF(3, True, 0.9), layers.GatedSoftDBoF(3, 0.9),
                  layers.DBoF(3, "max", 0.9), second_place.FrameProjectionMax(3, 1, 0.9)]:
        assert type(layer).from_config(layer.get_config()).bn_momentum == 0.9, type(layer).__name__
    with pytest.raises(ValueError, match="bn_momentum"):
        layers.batch_norm(1.0)
