"""The trainer's loss on the references' scale (issue 14, fidelity: "Loss scale").

References, written out in numpy below:

- WILLOW ``losses.py`` ``CrossEntropyLoss`` (antoine77340/Youtube-8M-WILLOW; google/youtube-8m is the
  same with epsilon 10e-8): ``epsilon = 10e-6``,
  ``-(y * log(p + epsilon) + (1 - y) * log(1 - p + epsilon))`` summed over classes
  (``tf.reduce_sum(..., 1)``), then ``tf.reduce_mean`` over the batch;
- TF-slim's ``l2_regularizer(l2)`` on the MoE gates/experts and logistic weights:
  ``l2 * tf.nn.l2_loss(w) = l2 * sum(w^2) / 2``, added to the label loss (starter ``train.py``);
- ``tf.train.AdamOptimizer`` (epsilon 1e-8), WILLOW's ``clip_gradient_norm=1.0``;
- distillation (YT8M_FACTS.md): ``w * BCE(p, teacher) + (1 - w) * BCE(p, labels)``, each BCE as above;
- mixup: the BCE above against ``l * y_i + (1 - l) * y_j``.

The trainer's loss is checked end to end: ``Trainer.train_on_batch`` returns the loss of the
step (``tf.nn.compute_average_loss`` of ``per_example_loss`` + the model's ``losses``), computed
on the weights before the update, which the numpy reference recomputes from the same weights.
"""

import numpy as np
import pytest
import tensorflow as tf

from yt8m import augment, distill, schema, train_loop
from yt8m import config as config_lib
from yt8m.models import registry

EPSILON = 10e-6  # WILLOW losses.py
C, B = 7, 8  # classes, batch


def ref_bce(targets, probs):
    """Per-example reference BCE: summed over classes."""
    t, p = np.asarray(targets, np.float64), np.asarray(probs, np.float64)
    return -np.sum(t * np.log(p + EPSILON) + (1 - t) * np.log(1 - p + EPSILON), axis=1)


def ref_loss(targets, probs):
    """``tf.reduce_mean(tf.reduce_sum(cross_entropy_loss, 1))``."""
    return float(np.mean(ref_bce(targets, probs)))


def slim_l2(l2, *weights):
    """``sum(l2 * tf.nn.l2_loss(w))`` over the regularized weights."""
    return float(sum(l2 * np.sum(np.asarray(w, np.float64) ** 2) / 2 for w in weights))


def regularized_weights(model, head: str):
    """The weights the references regularize, by head."""
    if head == "moe":
        moe = next(layer for layer in model.layers if layer.__class__.__name__ == "MixtureOfExperts")
        return [moe.gates.kernel, moe.experts.kernel]
    if head == "logistic":
        named = [layer for layer in model.layers if layer.name == "logistic"]  # classifier_head's
        dense = named or [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
        return [dense[-1].kernel]
    head_layer = model.get_layer("label_embedding")
    return [head_layer.project.kernel, head_layer.class_embeddings]


def _cfg(family, overrides=None, **training_fields):
    return config_lib.model_config_from_dict({"name": f"p-{family}", "family": family, "preset": "small",
                                              "overrides": overrides or {},
                                              "training": {"batch_size": B, **training_fields}})


def _features(level, rng):
    if level == "video":
        return {"mean_rgb": rng.normal(size=(B, schema.RGB_SIZE)).astype(np.float32),
                "mean_audio": rng.normal(size=(B, schema.AUDIO_SIZE)).astype(np.float32)}
    num_frames = rng.integers(3, 12, size=B).astype(np.int32)
    mask = (np.arange(12)[None, :] < num_frames[:, None])[..., None]
    return {"rgb": (rng.normal(size=(B, 12, schema.RGB_SIZE)) * mask).astype(np.float32),
            "audio": (rng.normal(size=(B, 12, schema.AUDIO_SIZE)) * mask).astype(np.float32),
            "num_frames": num_frames}


def _labels(rng):
    labels = (rng.random((B, C)) < 0.3).astype(np.float32)
    labels[:, 0] = 1.0  # every video has a label
    return labels


# ------------------------------------------------------------------------------------- the formulas


def test_bce_is_the_reference_cross_entropy_summed_over_classes():
    rng = np.random.default_rng(0)
    labels = _labels(rng)
    probs = rng.uniform(0.0, 1.0, size=(B, C)).astype(np.float32)
    probs[0, :3] = [0.0, 1.0, 1e-9]  # the epsilon keeps the extremes finite, as in the reference
    per_example = distill.bce(labels, probs).numpy()
    np.testing.assert_allclose(per_example, ref_bce(labels, probs), rtol=1e-5)
    batch = tf.nn.compute_average_loss(distill.bce(labels, probs), global_batch_size=B).numpy()
    np.testing.assert_allclose(batch, ref_loss(labels, probs), rtol=1e-5)
    # the scale: an uninformed p = 0.5 costs log(2) per class, not log(2) per video
    np.testing.assert_allclose(distill.bce(labels, np.full((B, C), 0.5, np.float32)).numpy(),
                               np.full(B, C * -np.log(0.5 + EPSILON)), rtol=1e-6)


def test_distillation_and_mixup_targets_use_the_same_summed_bce():
    rng = np.random.default_rng(1)
    labels, teacher = _labels(rng), rng.random((B, C)).astype(np.float32)
    probs = rng.uniform(0.01, 0.99, size=(B, C)).astype(np.float32)
    for w in (0.0, 0.5, 0.8, 1.0):
        np.testing.assert_allclose(distill.distillation_loss(labels, teacher, probs, w).numpy(),
                                   w * ref_bce(teacher, probs) + (1 - w) * ref_bce(labels, probs), rtol=1e-5)
    lam = rng.random(B).astype(np.float32)
    perm = rng.permutation(B)
    mixed = lam[:, None] * labels + (1 - lam[:, None]) * labels[perm]
    # BCE is linear in the targets: the mixed loss is the l-weighted loss against both partners
    np.testing.assert_allclose(distill.bce(mixed, probs).numpy(),
                               lam * ref_bce(labels, probs) + (1 - lam) * ref_bce(labels[perm], probs), rtol=1e-5)


@pytest.mark.parametrize("family, overrides, head", [
    ("moe", {"l2": 1e-2}, "moe"),
    ("logistic", {"l2": 1e-2}, "logistic"),
    ("netvlad", {"l2": 1e-2}, "moe"),
    ("netvlad", {"l2": 1e-2, "head": "logistic"}, "logistic"),
    ("dbof", {"l2": 1e-2, "head": "label_embedding"}, "label_embedding"),
    ("resnet_like", {"l2": 1e-2}, None),
])
def test_model_l2_is_slims_half_sum_of_squares(family, overrides, head):
    model = registry.build_model(family, C, "small", overrides)
    head = head or registry.resolve_params(family, "small", overrides)["head"]
    expected = slim_l2(1e-2, *regularized_weights(model, head))
    assert expected > 0
    np.testing.assert_allclose(float(tf.add_n(model.losses)), expected, rtol=1e-5)


def test_adam_is_tf1s_with_willows_clip_norm():
    trainer = train_loop.Trainer(_cfg("moe"), C)
    assert trainer.optimizer.epsilon == pytest.approx(1e-8)
    assert trainer.optimizer.clipnorm == pytest.approx(1.0)


# ------------------------------------------------------------------------------------- the train step


@pytest.mark.parametrize("family, overrides, head, recipe", [
    (family, {"l2": 1e-2}, head, recipe)
    for family, head in (("moe", "moe"), ("logistic", "logistic"), ("netvlad", "moe"))
    for recipe in ("plain", "distill", "mixup") if not (family == "netvlad" and recipe == "mixup")  # video-level
])
def test_train_step_loss_equals_the_reference(family, overrides, head, recipe):
    level = registry.get_family(family).input_level
    rng = np.random.default_rng(2)
    weight = 0.7
    trainer = train_loop.Trainer(_cfg(family, overrides, **({"distill_weight": weight} if recipe == "distill" else {})),
                               C)
    features, labels = _features(level, rng), _labels(rng)
    targets = {"labels": labels}
    if recipe == "distill":
        targets["teacher"] = rng.random((B, C)).astype(np.float32)
    if recipe == "mixup":
        features, targets, lam, perm = augment.mixup(tf.nest.map_structure(tf.constant, features),
                                                     tf.nest.map_structure(tf.constant, targets), alpha=0.4, seed=5)
        features = {k: v.numpy() for k, v in features.items()}
        lam, perm = lam.numpy(), perm.numpy()
        mixed = lam[:, None] * labels + (1 - lam[:, None]) * labels[perm]
        np.testing.assert_allclose(targets["labels"].numpy(), mixed, rtol=1e-6)
        targets = {"labels": mixed}
    # the reference, on the weights before the step (training-mode forward pass: BN on batch statistics)
    probs = np.asarray(trainer.model(features, training=True))
    if recipe == "distill":
        label_loss = float(np.mean(weight * ref_bce(targets["teacher"], probs) + (1 - weight) * ref_bce(labels, probs)))
    else:
        label_loss = ref_loss(targets["labels"], probs)
    reg = slim_l2(1e-2, *regularized_weights(trainer.model, head))
    expected = label_loss + reg
    got = trainer.train_on_batch(features, targets)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert label_loss > 0.3 * C, "the label loss is summed over classes (~log 2 per class at initialisation)"
