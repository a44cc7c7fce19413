"""`yt8m evaluate` scores exactly what a Kaggle CSV submits (sparse pairs), checked by brute force."""

import json

import numpy as np
import pytest

from tests.helpers import random_video, write_videos
from yt8m import metrics, predictions
from yt8m_pipeline import cli


def brute_force_submission_gap(pairs, truth, k=20):
    """From the definition: each listed video's best k listed pairs (score desc, class asc) pooled and
    ranked (score desc, video order, class asc); recall over ALL positives of ALL videos in truth."""
    pool = []
    for video, (video_id, listed) in enumerate(pairs):
        ranked = sorted(listed, key=lambda p: (-p[1], p[0]))[:k]
        pool += [(-score, video, c, c in truth[video_id]) for c, score in ranked]
    pool.sort()
    num_positives = sum(len(v) for v in truth.values())
    hits, total = 0, 0.0
    for rank, entry in enumerate(pool, start=1):
        if entry[3]:
            hits += 1
            total += hits / rank
    return total / num_positives if num_positives else 0.0


def _random_sparse_case(seed, num_videos=60, num_classes=40):
    rng = np.random.default_rng(seed)
    truth = {f"v{i}": set(rng.choice(num_classes, size=rng.integers(1, 5), replace=False).tolist())
             for i in range(num_videos)}
    pairs = []
    for video_id in truth:
        if rng.random() < 0.2:
            continue  # a video the submission does not list
        n = int(rng.integers(1, 26))  # up to 25 pairs: more than 20 must be cut to the best 20
        classes = rng.choice(num_classes, size=n, replace=False)
        scores = np.round(rng.random(n), 2)  # rounded: ties inside and across videos
        pairs.append((video_id, list(zip(classes.tolist(), scores.tolist()))))
    return pairs, truth


def _evaluate(pairs, truth, num_classes):
    listed = {v for v, _ in pairs}
    return metrics.evaluate_submission(
        [np.array([c for c, _ in p], np.int64) for _, p in pairs],
        [np.array([s for _, s in p], np.float64) for _, p in pairs],
        [sorted(truth[v]) for v, _ in pairs], [sorted(truth[v]) for v in truth if v not in listed], num_classes)


@pytest.mark.parametrize("seed", range(6))
def test_sparse_gap_matches_brute_force(seed):
    pairs, truth = _random_sparse_case(seed)
    result = _evaluate(pairs, truth, 40)
    assert result["gap"] == pytest.approx(brute_force_submission_gap(pairs, truth), abs=1e-12)
    assert result["num_videos"] == len(truth)


def test_dense_path_and_sparse_path_agree_when_every_class_is_listed():
    rng = np.random.default_rng(3)
    scores = rng.random((30, 12))
    labels = (rng.random((30, 12)) < 0.2).astype(np.float32)
    truth = [np.flatnonzero(row).tolist() for row in labels]
    sparse = metrics.evaluate_submission([np.arange(12)] * 30, list(scores), truth, [], 12)
    dense = metrics.EvaluationAccumulator(12)
    dense.add(scores, labels)
    expected = dense.result()
    for key in ("gap", "hit_at_1", "perr", "map"):
        assert sparse[key] == pytest.approx(expected[key], abs=1e-12), key


def test_empty_submission_scores_zero_and_unlisted_classes_earn_nothing():
    truth = {"a": {0, 1}, "b": {2}}
    assert _evaluate([], truth, 5)["gap"] == 0.0
    # One listed pair, a hit: precision 1 at rank 1, recall over all 3 positives.
    assert _evaluate([("a", [(0, 0.9)])], truth, 5)["gap"] == pytest.approx(1 / 3)


def _write_case(tmp_path, pairs, truth, num_classes):
    data = str(tmp_path / "truth.tfrecord")
    rng = np.random.default_rng(0)
    write_videos(data, [random_video(rng, v, 2, num_classes, labels=sorted(l)) for v, l in truth.items()])
    csv = tmp_path / "sub.csv"
    lines = [predictions.KAGGLE_HEADER] + [v + "," + " ".join(f"{c} {s:.6f}" for c, s in p) for v, p in pairs]
    csv.write_text("\n".join(lines) + "\n")
    return data, str(csv)


def test_evaluate_verb_scores_a_header_only_submission_as_zero(tmp_path, capsys):
    _pairs, truth = _random_sparse_case(1, num_videos=20)
    data, csv = _write_case(tmp_path, [], truth, 40)
    assert cli.main(["evaluate", "--predictions", csv, "--data", data, "--num-classes", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["gap"] == 0.0 and result["videos_without_prediction"] == 20


def test_evaluate_verb_scores_exactly_the_submitted_pairs(tmp_path, capsys):
    pairs, truth = _random_sparse_case(5, num_videos=40)
    pairs = [(v, [(c, s) for c, s in p][:20]) for v, p in pairs]  # the CSV writer's 20 per video
    data, csv = _write_case(tmp_path, pairs, truth, 40)
    assert cli.main(["evaluate", "--predictions", csv, "--data", data, "--num-classes", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["gap"] == pytest.approx(brute_force_submission_gap(pairs, truth), abs=1e-6)
