"""LightGBM stacking over candidate classes (issue 15): fitted on OOF predictions, exported as TF ops."""

import numpy as np
import pytest
import tensorflow as tf

from yt8m import ensemble, predictions, stacking

C, N, K = 30, 900, 5


def _members(rng, n, labels):
    """Three members' dense scores: two honest but noisy, one that under-scores the even classes 5x."""
    truth = np.zeros((n, C), np.float32)
    for i, lab in enumerate(labels):
        truth[i, lab] = 1
    out = []
    for m in range(3):
        logits = 3.0 * truth + rng.normal(0, 1.3, (n, C)) - 2.0
        probs = 1 / (1 + np.exp(-logits))
        if m == 2:
            probs[:, ::2] *= 0.2
        out.append(probs.astype(np.float32))
    return out


def _table(tmp_path, name, rng, n):
    labels = [sorted(rng.choice(C, size=rng.integers(1, 3), replace=False).tolist()) for _ in range(n)]
    ids = [f"{name}{i}" for i in range(n)]
    dense = _members(rng, n, labels)
    paths = []
    for m, scores in enumerate(dense):
        paths.append(str(tmp_path / f"{name}_{m}.npz"))
        predictions.save_topk(paths[-1], ids, scores, K)
    table = ensemble.topk_table(paths, dict(zip(ids, labels)), k=K)
    return table, dense, dict(zip(ids, labels))


def _fit(table, labels):
    present = (table.scores != 0) & (table.classes >= 0)[None]
    return stacking.fit_stacker(table.video_ids, table.classes, table.scores, present, table.relevant,
                                table.num_positives, stacking.class_prior(labels, C), k=K)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    table, dense, labels = _table(tmp, "v", np.random.default_rng(0), N)
    return table, dense, labels, _fit(table, labels)


def test_stacker_beats_the_plain_average_out_of_fold_when_a_member_is_miscalibrated(fitted):
    table, _dense, _labels, stacker = fitted
    average = table.gap(np.full(table.num_members, 1 / table.num_members))
    assert stacker.report["cross_fitted_oof_gap"] > average + 0.01, (stacker.report, average)
    assert stacker.report["rounds"] >= 1 and len(stacker.report["best_iterations_per_half"]) == 2


def test_the_in_graph_stacker_equals_lightgbm_on_the_same_candidates(fitted, tmp_path):
    _table_, _dense, _labels, stacker = fitted
    rng = np.random.default_rng(1)
    table, dense, _ = _table(tmp_path, "h", rng, 64)
    present = (table.scores != 0) & (table.classes >= 0)[None]
    expected = stacker.predict(table.classes, table.scores, present)  # [N, U], LightGBM on numpy features
    served = stacking.StackerModule(stacker)([tf.constant(d) for d in dense]).numpy()  # [N, C]
    rows = np.repeat(np.arange(64), table.classes.shape[1]).reshape(table.classes.shape)
    valid = table.classes >= 0
    np.testing.assert_allclose(served[rows[valid], table.classes[valid]], expected[valid], atol=1e-6)
    outside = np.ones_like(served, bool)
    outside[rows[valid], table.classes[valid]] = False
    assert not served[outside].any()  # no member's candidate: 0


def test_in_graph_trees_match_booster_raw_scores_on_random_features(fitted):
    *_, stacker = fitted
    module = stacking.StackerModule(stacker)
    features = np.random.default_rng(2).random((500, len(stacking.feature_names(3)))) * [C, 0.2, 1, 6, 1, 6, 1, 6, 1, 3]
    raw = stacker.booster().predict(features, raw_score=True)
    np.testing.assert_allclose(module.raw_score(tf.constant(features)).numpy(), raw, atol=1e-9)


def test_ranks_count_strictly_greater_scores_of_the_same_member():
    scores = np.array([[[0.9, 0.5, 0.5, 0.0]]], np.float32)
    present = np.array([[[True, True, True, False]]])
    assert stacking.member_ranks(scores, present, k=3).tolist() == [[[1, 2, 2, 4]]]


def test_stacker_saves_and_loads(fitted, tmp_path):
    table, _dense, _labels, stacker = fitted
    stacker.save(str(tmp_path))
    again = stacking.Stacker.load(str(tmp_path))
    present = (table.scores != 0) & (table.classes >= 0)[None]
    np.testing.assert_array_equal(again.predict(table.classes[:50], table.scores[:, :50], present[:, :50]),
                                  stacker.predict(table.classes[:50], table.scores[:, :50], present[:, :50]))


def test_unsupported_splits_are_refused():
    tree = {"tree_info": [{"tree_structure": {"decision_type": "==", "missing_type": "None", "split_feature": 0,
                                              "threshold": "1||2", "left_child": {"leaf_value": 1.0},
                                              "right_child": {"leaf_value": 0.0}}}]}
    with pytest.raises(ValueError, match="unsupported LightGBM split =="):
        stacking.flatten_trees(tree)


def test_the_run_configs_stacking_settings_reach_the_stacker(tmp_path):
    from yt8m import config

    table, _dense, labels = _table(tmp_path, "s", np.random.default_rng(1), 300)
    settings = config.StackingConfig(learning_rate=0.3, max_rounds=4, early_stopping_rounds=2)
    stacker = ensemble.StackerCache(table, labels, C, settings).get(range(table.num_members))
    assert stacker.report["params"]["learning_rate"] == 0.3
    assert max(stacker.report["best_iterations_per_half"]) <= 4


def test_small_fits_run_on_one_lightgbm_thread_and_large_ones_on_every_core():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 4))
    targets = (features[:, 0] > 0).astype(np.float64)
    booster = stacking._train(features, targets, None, None, dict(stacking.DEFAULT_PARAMS), rounds=3)
    assert booster.params["num_threads"] == 1  # an OpenMP barrier per histogram stalls on a busy machine
    assert stacking.lightgbm_threads(stacking.SINGLE_THREAD_ROWS) == stacking.DEFAULT_PARAMS["num_threads"] == 0
    assert stacking.lightgbm_threads(10 ** 7, 8) == 8 and stacking.lightgbm_threads(10, 8) == 1
