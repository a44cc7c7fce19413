"""Parity with WILLOW's code: the zoo's NetVLAD, NetRVLAD, NetFV, Soft-DBoF and gated DBoF poolings, and
the whole NetVLAD / NetFV / Soft-DBoF models, equal a numpy re-implementation of the TF1 graph of
antoine77340/Youtube-8M-WILLOW (``frame_level_models.py`` classes ``NetVLAD``, ``LightVLAD``, ``NetFV``,
``SoftDBoF``, ``GatedDBoF``, ``NetVLADModelLF``, ``NetFVModelLF``, ``SoftDbofModelLF``; ``train.py``'s
input normalisation; ``video_level_models.py`` ``MoeModel`` with ``moe_prob_gating``), in inference mode,
on the Keras layers' own (randomised) weights.

The numpy functions below follow WILLOW's code line by line (its variable names in the comments); TF1
semantics: ``tf.nn.l2_normalize(x, axis)`` is ``x / sqrt(max(sum(x^2), 1e-12))``, ``slim.batch_norm`` at
inference is ``gamma * (x - moving_mean) / sqrt(moving_variance + 0.001) + beta`` (epsilon 0.001 by
default). WILLOW samples its frames before the model, so its pooling sums over every frame it is given:
here each video's REAL frames (the Keras layers mask the padding, which the checks with padding cover).
"""

import numpy as np
import pytest

from yt8m.models import layers, registry

NUM_CLASSES = 7
SLIM_BN_EPSILON = 1e-3


# ------------------------------------------------------------------ WILLOW's math in numpy (float64)

def l2_normalize(x, axis):  # tf.nn.l2_normalize
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), 1e-12))


def batch_norm(x, bn):  # slim.batch_norm(center=True, scale=True), is_training=False
    gamma, beta, mean, var = bn
    return gamma * (x - mean) / np.sqrt(var + SLIM_BN_EPSILON) + beta


def softmax(z):  # tf.nn.softmax over the last axis
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _assignment(reshaped_input, max_frames, w):
    """activation = softmax(batch_norm(matmul(reshaped_input, cluster_weights), "cluster_bn")), reshaped
    to [-1, max_frames, cluster_size]."""
    activation = softmax(batch_norm(reshaped_input @ w["cluster_weights"], w["cluster_bn"]))
    return activation.reshape(-1, max_frames, w["cluster_weights"].shape[1])


def willow_netvlad(reshaped_input, max_frames, w, residual=True):
    """``NetVLAD.forward`` (``LightVLAD.forward`` with ``residual=False``)."""
    feature_size, cluster_size = w["cluster_weights"].shape
    activation = _assignment(reshaped_input, max_frames, w)
    a_sum = activation.sum(axis=-2, keepdims=True)
    activation = activation.transpose(0, 2, 1)
    vlad = activation @ reshaped_input.reshape(-1, max_frames, feature_size)
    vlad = vlad.transpose(0, 2, 1)
    if residual:
        vlad = vlad - a_sum * w["cluster_weights2"]  # a = tf.multiply(a_sum, cluster_weights2)
    vlad = l2_normalize(vlad, 1)
    vlad = vlad.reshape(-1, cluster_size * feature_size)
    return l2_normalize(vlad, 1)


def willow_netfv(reshaped_input, max_frames, w):
    """``NetFV.forward`` with ``--fv_couple_weights=False`` (the published command)."""
    feature_size, cluster_size = w["cluster_weights"].shape
    covar_weights = np.square(w["covar_weights"]) + 1e-6
    activation = _assignment(reshaped_input, max_frames, w)
    a_sum = activation.sum(axis=-2, keepdims=True)
    cluster_weights2 = w["cluster_weights2"]
    a = a_sum * cluster_weights2
    activation = activation.transpose(0, 2, 1)
    reshaped = reshaped_input.reshape(-1, max_frames, feature_size)
    fv1 = (activation @ reshaped).transpose(0, 2, 1)
    a2 = a_sum * np.square(cluster_weights2)
    b2 = fv1 * cluster_weights2
    fv2 = (activation @ np.square(reshaped)).transpose(0, 2, 1)
    fv2 = a2 + fv2 + -2 * b2  # tf.add_n([a2, fv2, tf.scalar_mul(-2, b2)])
    fv2 = fv2 / np.square(covar_weights) - a_sum
    fv2 = l2_normalize(fv2.reshape(-1, cluster_size * feature_size), 1)
    fv2 = l2_normalize(fv2.reshape(-1, cluster_size * feature_size), 1)
    fv1 = (fv1 - a) / covar_weights
    fv1 = l2_normalize(fv1, 1)
    fv1 = l2_normalize(fv1.reshape(-1, cluster_size * feature_size), 1)
    return np.concatenate([fv1, fv2], axis=1)


def willow_soft_dbof(reshaped_input, max_frames, w, max_pool=False):
    """``SoftDBoF.forward``."""
    activation = _assignment(reshaped_input, max_frames, w)
    activation_sum = l2_normalize(activation.sum(axis=1), 1)
    if not max_pool:
        return activation_sum
    return np.concatenate([activation_sum, l2_normalize(activation.max(axis=1), 1)], axis=1)


def willow_gated_dbof(reshaped_input, max_frames, w):
    """``GatedDBoF.forward``."""
    activation = _assignment(reshaped_input, max_frames, w)
    activation_sum = activation.sum(axis=1)
    activation_max = l2_normalize(activation.max(axis=1), 1)
    activation = activation_max @ w["dim_red"] @ w["cluster_weights_2"]
    activation = sigmoid(batch_norm(activation, w["cluster_bn_2"]))
    return l2_normalize(activation * activation_sum, 1)


def willow_moe(model_input, w, num_mixtures, vocab_size, prob_gating):
    """``MoeModel.create_model``: gates without biases (``biases_initializer=None``), experts with; then
    ``moe_prob_gating``: probabilities * sigmoid(batch_norm(probabilities @ gating_prob_weights))."""
    gate_activations = model_input @ w["gates"]
    expert_activations = model_input @ w["experts"] + w["experts_biases"]
    gating_distribution = softmax(gate_activations.reshape(-1, num_mixtures + 1))
    expert_distribution = sigmoid(expert_activations.reshape(-1, num_mixtures))
    probabilities = (gating_distribution[:, :num_mixtures] * expert_distribution).sum(axis=1)
    probabilities = probabilities.reshape(-1, vocab_size)
    if prob_gating:
        gates = batch_norm(probabilities @ w["gating_prob_weights"], w["gating_prob_bn"])
        probabilities = probabilities * sigmoid(gates)
    return probabilities


def willow_model_lf(rgb, audio, pool, w, pool_weights, relu, gating, prob_gating, num_mixtures=2):
    """``NetVLADModelLF`` / ``NetFVModelLF`` / ``SoftDbofModelLF`` on one video's real frames ``[F, D]``:
    train.py's ``tf.nn.l2_normalize(model_input_raw, feature_dim)`` of the 1152-d frames, "input_bn",
    pooling of ``reshaped_input[:, 0:1024]`` and ``[:, 1024:]``, hidden1 (BN only with relu; else
    hidden1_biases), optional relu6, context gating ("gating_bn"), MoE."""
    max_frames = rgb.shape[0]
    model_input = l2_normalize(np.concatenate([rgb, audio], axis=1), 1)
    reshaped_input = batch_norm(model_input, w["input_bn"])
    video = pool(reshaped_input[:, 0:1024], max_frames, pool_weights["rgb_pool"])
    audio_pooled = pool(reshaped_input[:, 1024:], max_frames, pool_weights["audio_pool"])
    activation = np.concatenate([video, audio_pooled], axis=1) @ w["hidden1_weights"]
    if relu:
        activation = np.minimum(np.maximum(batch_norm(activation, w["hidden1_bn"]), 0), 6)
    else:
        activation = activation + w["hidden1_biases"]
    if gating:
        activation = activation * sigmoid(batch_norm(activation @ w["gating_weights_2"], w["gating_bn"]))
    return willow_moe(activation, w, num_mixtures, NUM_CLASSES, prob_gating)


# ------------------------------------------------------------------ weights out of the Keras layers

def _randomize_batch_norms_and_biases(model_or_layer, seed=0, kernel_scale=1.0):
    """Non-trivial BN statistics / scales / offsets and biases (they start at 0 / 1), so that the
    comparison exercises every term; Dense kernels times ``kernel_scale`` (larger logits: the scores
    then move more when any earlier term changes)."""
    rng = np.random.default_rng(seed)
    for v in model_or_layer.weights:
        shape, name = tuple(v.shape), v.name
        if name == "kernel":
            v.assign(np.asarray(v) * kernel_scale)
        if name == "moving_variance":
            v.assign(rng.uniform(0.5, 2.0, shape).astype(np.float32))
        elif name == "gamma":
            v.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif name in ("beta", "moving_mean", "bias"):
            v.assign(rng.normal(0.0, 0.2, shape).astype(np.float32))


def _bn(norm):
    return tuple(np.asarray(v, np.float64) for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))


def _pool_weights(layer):
    w = {"cluster_weights": np.asarray(layer.cluster_weights, np.float64), "cluster_bn": _bn(layer.norm)}
    if hasattr(layer, "cluster_centers"):
        w["cluster_weights2"] = np.asarray(layer.cluster_centers, np.float64)
    if hasattr(layer, "covar_weights"):
        w["covar_weights"] = np.asarray(layer.covar_weights, np.float64)
    if hasattr(layer, "dim_red"):
        w["dim_red"] = np.asarray(layer.dim_red, np.float64)
        w["cluster_weights_2"] = np.asarray(layer.gate_weights, np.float64)
        w["cluster_bn_2"] = _bn(layer.gate_norm)
    return w


def _model_weights(model):
    w = {"input_bn": _bn(model.get_layer("input_bn").norm)}
    hidden = model.get_layer("hidden")
    w["hidden1_weights"] = np.asarray(hidden.kernel, np.float64)
    if hidden.use_bias:
        w["hidden1_biases"] = np.asarray(hidden.bias, np.float64)
    else:
        w["hidden1_bn"] = _bn(model.get_layer("hidden_bn"))
    if any(layer.name == "context_gating" for layer in model.layers):
        gating = model.get_layer("context_gating")
        w["gating_weights_2"] = np.asarray(gating.dense.kernel, np.float64)
        w["gating_bn"] = _bn(gating.norm)
    moe = model.get_layer("moe")
    assert not moe.gates.use_bias  # the starter's / WILLOW's gates have no biases
    w["gates"] = np.asarray(moe.gates.kernel, np.float64)
    w["experts"] = np.asarray(moe.experts.kernel, np.float64)
    w["experts_biases"] = np.asarray(moe.experts.bias, np.float64)
    if any(layer.name == "output_gating" for layer in model.layers):
        gating = model.get_layer("output_gating")
        w["gating_prob_weights"] = np.asarray(gating.dense.kernel, np.float64)
        w["gating_prob_bn"] = _bn(gating.norm)
    pools = {name: _pool_weights(model.get_layer(name)) for name in ("rgb_pool", "audio_pool")}
    return w, pools


def _frames(rng, num_frames, frames, dim):
    """[B, frames, dim] frames, noise (3x larger) beyond each video's num_frames: padding the model must ignore."""
    real = np.arange(frames)[None, :, None] < np.asarray(num_frames)[:, None, None]
    shape = (len(num_frames), frames, dim)
    return np.where(real, rng.normal(size=shape), 3 * rng.normal(size=shape)).astype(np.float32)


# ------------------------------------------------------------------ pooling layers

POOLINGS = [
    ("NetVLAD", lambda k: layers.NetVLAD(k), lambda x, f, w: willow_netvlad(x, f, w)),
    ("NetRVLAD (LightVLAD)", lambda k: layers.NetRVLAD(k), lambda x, f, w: willow_netvlad(x, f, w, residual=False)),
    ("NetFV", lambda k: layers.NetFV(k), willow_netfv),
    ("SoftDBoF", lambda k: layers.SoftDBoF(k), willow_soft_dbof),
    ("SoftDBoF max_pool", lambda k: layers.SoftDBoF(k, max_pool=True),
     lambda x, f, w: willow_soft_dbof(x, f, w, max_pool=True)),
    ("GatedDBoF", lambda k: layers.GatedSoftDBoF(k), willow_gated_dbof),
]


@pytest.mark.parametrize("name,make_layer,willow", POOLINGS, ids=[p[0] for p in POOLINGS])
def test_pooling_layer_equals_willow_math_on_the_real_frames(name, make_layer, willow):
    rng = np.random.default_rng(0)
    num_frames, dim, clusters = [5, 3, 1], 12, 4
    x = _frames(rng, num_frames, 5, dim)
    layer = make_layer(clusters)
    layer(x, np.asarray(num_frames, np.int32))  # build
    _randomize_batch_norms_and_biases(layer)
    w = _pool_weights(layer)
    got = np.asarray(layer(x, np.asarray(num_frames, np.int32), training=False))
    for i, n in enumerate(num_frames):
        expected = willow(x[i, :n].astype(np.float64), n, w)[0]
        np.testing.assert_allclose(got[i], expected, rtol=1e-4, atol=1e-6, err_msg=f"{name}, video {i}")
    # the comparison can fail: WILLOW's math on all 5 frames of video 1 (with its 2 noise padding frames)
    wrong = willow(x[1].astype(np.float64), 5, w)[0]
    assert np.abs(got[1] - wrong).max() > 1e-3


# ------------------------------------------------------------------ whole models

# (family, overrides of the small preset giving the published preset's structure at a small size, the pooling
#  in numpy, WILLOW's flags: relu, gating, moe_prob_gating)
MODELS = [
    ("netvlad", {"clusters": 4, "audio_clusters": 2, "hidden": 16, "hidden_relu": False, "hidden_bn": False,
                 "output_gating": True}, willow_netvlad, False, True, True),
    ("netvlad", {"clusters": 4, "audio_clusters": 2, "hidden": 16}, willow_netvlad, True, True, False),
    ("netrvlad", {"hidden_relu": False, "hidden_bn": False}, lambda x, f, w: willow_netvlad(x, f, w, residual=False),
     False, True, True),
    ("netfv", {"clusters": 4, "audio_clusters": 2, "hidden": 16, "hidden_relu": False, "hidden_bn": False},
     willow_netfv, False, True, True),
    ("soft_dbof", {"hidden_bn": False}, willow_soft_dbof, False, False, False),
]


def _model_id(case):
    family, overrides = case[:2]
    return family + "".join(f"-{k}={v}" for k, v in sorted(overrides.items()) if k.startswith("hidden_"))


@pytest.mark.parametrize("case", MODELS, ids=[_model_id(c) for c in MODELS])
def test_model_equals_willow_model_lf_in_inference_mode(case):
    import keras

    family, overrides, pool, relu, gating, prob_gating = case
    keras.utils.set_random_seed(0)
    model = registry.build_model(family, NUM_CLASSES, "small", overrides)
    params = registry.resolve_params(family, "small", overrides)
    assert (params["input_l2"], params["input_bn"]) == ("joint", True)
    assert (params["hidden_relu"], params["context_gating"], params["output_gating"]) == (relu, gating, prob_gating)
    _randomize_batch_norms_and_biases(model, seed=1, kernel_scale=4.0)
    w, pools = _model_weights(model)
    rng = np.random.default_rng(2)
    num_frames = np.asarray([6, 2, 4], np.int32)
    rgb, audio = _frames(rng, num_frames, 6, 1024), _frames(rng, num_frames, 6, 128)
    got = np.asarray(model({"rgb": rgb, "audio": audio, "num_frames": num_frames}, training=False))
    for i, n in enumerate(num_frames):
        expected = willow_model_lf(rgb[i, :n].astype(np.float64), audio[i, :n].astype(np.float64), pool, w, pools,
                                   relu, gating, prob_gating)[0]
        np.testing.assert_allclose(got[i], expected, rtol=0, atol=1e-5, err_msg=f"{family}, video {i}")
    # the comparison can fail: WILLOW's math on all 6 frames of video 1 (its 4 noise padding frames included)
    wrong = willow_model_lf(rgb[1].astype(np.float64), audio[1].astype(np.float64), pool, w, pools, relu, gating,
                            prob_gating)[0]
    assert np.abs(got[1] - wrong).max() > 1e-3


def test_published_presets_have_willow_structure():
    """The published presets are the README commands' models: joint L2 + input BN; no ReLU, so a hidden
    bias and no BN; gating flags; audio clusters K/2 (VLAD, FV) or K/8 (Soft-DBoF)."""
    for family, clusters, audio, gating, prob_gating in [("netvlad", 256, 128, True, True),
                                                         ("netrvlad", 256, 128, True, True),
                                                         ("netfv", 128, 64, True, True),
                                                         ("soft_dbof", 8000, 1000, False, False),
                                                         ("gated_soft_dbof", 4096, 512, False, True)]:
        p = registry.resolve_params(family, "published")
        assert (p["input_l2"], p["input_bn"], p["hidden_relu"], p["hidden_bn"]) == ("joint", True, False, False), family
        assert (p["clusters"], p["audio_clusters"], p["hidden"]) == (clusters, audio, 1024), family
        assert (p["context_gating"], p["output_gating"], p["num_mixtures"]) == (gating, prob_gating, 2), family
    assert registry.resolve_params("gated_soft_dbof", "published")["gated_pooling"] is True
    assert registry.resolve_params("soft_dbof", "published")["gated_pooling"] is False
