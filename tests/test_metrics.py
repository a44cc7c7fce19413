"""Tests for yt8m.metrics: every metric against a pure-Python reference and hand cases."""

import subprocess
import sys

import numpy as np
import pytest

from yt8m import metrics
from yt8m.metrics import (EvaluationAccumulator, dense_labels, gap_at_k, hit_at_one, mean_average_precision,
                          perr, top_k)


# ---------------------------------------------------------------------------------------
# Pure-Python references, written from the definitions and the documented tie-break rule:
# within a video (score desc, class asc); across videos (score desc, video asc, class asc).

def _ranked_classes(row, k):
    return sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]


def reference_gap(predictions, labels, k):
    predictions, labels = predictions.tolist(), labels.tolist()
    pool, num_positives = [], 0
    for video, (row, row_labels) in enumerate(zip(predictions, labels)):
        num_positives += sum(1 for y in row_labels if y > 0)
        for c in _ranked_classes(row, min(k, len(row))):
            pool.append((-row[c], video, c, row_labels[c] > 0))
    pool.sort()
    hits, total = 0, 0.0
    for rank, (_, _, _, is_positive) in enumerate(pool, start=1):
        if is_positive:
            hits += 1
            total += hits / rank
    return total / num_positives if num_positives else 0.0


def reference_hit_at_one(predictions, labels):
    rows = list(zip(predictions.tolist(), labels.tolist()))
    return sum(1 for row, y in rows if y[_ranked_classes(row, 1)[0]] > 0) / len(rows)


def reference_perr(predictions, labels):
    precisions = []
    for row, row_labels in zip(predictions.tolist(), labels.tolist()):
        m = sum(1 for y in row_labels if y > 0)
        if m:
            precisions.append(sum(1 for c in _ranked_classes(row, m) if row_labels[c] > 0) / m)
    return sum(precisions) / len(precisions) if precisions else 0.0


def reference_map(predictions, labels, k=None):
    predictions, labels = predictions.tolist(), labels.tolist()
    num_classes = len(predictions[0])
    k = num_classes if k is None else min(k, num_classes)
    in_top_k = [set(_ranked_classes(row, k)) for row in predictions]
    aps = []
    for c in range(num_classes):
        num_positives = sum(1 for y in labels if y[c] > 0)
        if not num_positives:
            continue
        ranked = sorted((-predictions[v][c], v) for v in range(len(predictions)) if c in in_top_k[v])
        hits, total = 0, 0.0
        for rank, (_, v) in enumerate(ranked, start=1):
            if labels[v][c] > 0:
                hits += 1
                total += hits / rank
        aps.append(total / num_positives)
    return sum(aps) / len(aps) if aps else 0.0


def random_case(seed, num_videos, num_classes, decimals=1, label_rate=0.15):
    """Scores rounded to `decimals` (many ties); some videos with no positives, some with many."""
    rng = np.random.default_rng(seed)
    predictions = np.round(rng.random((num_videos, num_classes)), decimals).astype(np.float32)
    labels = (rng.random((num_videos, num_classes)) < label_rate).astype(np.int64)
    labels[rng.random(num_videos) < 0.2] = 0  # videos without positives
    labels[rng.random(num_videos) < 0.1] = 1  # videos with every class positive (> k when C > k)
    # Make positives score a little higher on average, so metrics are not all near chance.
    predictions = np.round(np.clip(predictions + 0.3 * labels * rng.random(labels.shape), 0, 1), decimals)
    return predictions.astype(np.float32), labels


CASES = [(seed, n, c, k) for seed, (n, c, k) in enumerate(
    [(40, 30, 20), (50, 25, 5), (30, 8, 20), (60, 12, 1), (25, 40, 3), (1, 5, 2), (70, 3, 100), (45, 30, 30)])]


# ---------------------------------------------------------------------------------------
# GAP

@pytest.mark.parametrize("seed,num_videos,num_classes,k", CASES)
def test_gap_matches_reference_with_ties(seed, num_videos, num_classes, k):
    predictions, labels = random_case(seed, num_videos, num_classes)
    assert len(np.unique(predictions)) <= 11  # rounded to 1 decimal: ties everywhere
    assert gap_at_k(predictions, labels, k) == pytest.approx(reference_gap(predictions, labels, k), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_gap_matches_reference_continuous_scores_float64_and_bool_labels(seed):
    predictions, labels = random_case(100 + seed, 80, 50, decimals=12)
    predictions = predictions.astype(np.float64) + np.random.default_rng(seed).random(predictions.shape) * 1e-3
    expected = reference_gap(predictions, labels, 20)
    assert gap_at_k(predictions, labels.astype(bool), 20) == pytest.approx(expected, abs=1e-9)
    assert gap_at_k(predictions, labels.astype(np.float32), 20) == pytest.approx(expected, abs=1e-9)


def test_gap_ties_at_top_k_boundary_with_small_blocks(monkeypatch):
    # Force many argpartition blocks; rows with many tied scores exercise the boundary fix.
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 64)
    predictions, labels = random_case(7, 90, 17, decimals=0)  # scores are only 0.0 or 1.0
    for k in (1, 4, 16, 17):
        assert gap_at_k(predictions, labels, k) == pytest.approx(reference_gap(predictions, labels, k), abs=1e-9)


def test_gap_25_positives_ranked_perfectly_is_0_8():
    predictions = np.linspace(1.0, 0.01, 40)[None, :]
    labels = np.zeros((1, 40))
    labels[0, :25] = 1
    assert gap_at_k(predictions, labels, k=20) == pytest.approx(0.8, abs=1e-12)


def test_gap_hand_computed_two_videos():
    predictions = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.3]])
    labels = np.array([[0, 1, 0], [1, 0, 1]])
    # k=2 pool: 0.9(-) 0.8(+) 0.7(-) 0.2(+); class 2 of video 1 (a positive) is outside top 2.
    # precision at the hits: 1/2, 2/4; P = 3.
    assert gap_at_k(predictions, labels, k=2) == pytest.approx((1 / 2 + 2 / 4) / 3, abs=1e-12)


def test_gap_tie_break_is_video_order_then_class_order():
    # One tied pair across videos: the earlier video ranks first.
    predictions = np.array([[0.5], [0.5]])
    assert gap_at_k(predictions, np.array([[0], [1]]), k=1) == pytest.approx(0.5)
    assert gap_at_k(predictions, np.array([[1], [0]]), k=1) == pytest.approx(1.0)
    # Tied classes at a video's top-k boundary: the lower class index is kept.
    predictions = np.array([[0.5, 0.5, 0.1]])
    assert gap_at_k(predictions, np.array([[0, 1, 0]]), k=1) == 0.0
    assert gap_at_k(predictions, np.array([[1, 0, 0]]), k=1) == 1.0


def test_gap_no_positives_is_zero_and_k_above_classes_is_clamped():
    predictions, labels = random_case(3, 20, 6)
    assert gap_at_k(predictions, np.zeros_like(labels), 20) == 0.0
    assert gap_at_k(predictions, labels, 50) == gap_at_k(predictions, labels, 6)
    assert gap_at_k(np.empty((0, 6)), np.empty((0, 6)), 20) == 0.0


def test_gap_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        gap_at_k(np.array([[0.1, np.nan, 0.3]]), np.array([[0, 1, 0]]), k=1)
    with pytest.raises(ValueError, match="shape"):
        gap_at_k(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="k must be"):
        gap_at_k(np.zeros((2, 3)), np.zeros((2, 3)), k=0)


def _reference_top_k(scores, k):
    k = min(k, scores.shape[1])
    classes = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((classes, -scores), axis=1)[:, :k]  # score desc, then class asc
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("decimals", [0, 1, 2, 3, None])
@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("block_elements", [1 << 20, 997])
def test_top_k_matches_full_sort_on_wide_rows(monkeypatch, decimals, k, block_elements):
    # C >= 8k, so the prefiltered path runs (and falls back on heavy ties: decimals=0).
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", block_elements)
    rng = np.random.default_rng(k)
    scores = rng.random((64, 777)).astype(np.float32) ** 3
    if decimals is not None:
        scores = np.round(scores, decimals)
    scores[3] = -np.inf
    scores[4, ::2] = -np.inf
    scores[5] = 0.5
    scores[6, 700:] = 1.0  # the best classes live in the columns outside the groups
    classes, values = top_k(scores, k)
    expected_classes, expected_values = _reference_top_k(scores, k)
    np.testing.assert_array_equal(classes, expected_classes)
    np.testing.assert_array_equal(values, expected_values)


@pytest.mark.parametrize("seed,decimals", [(0, 1), (1, 2), (2, None)])
def test_gap_matches_reference_on_wide_rows(seed, decimals):
    predictions, labels = random_case(200 + seed, 40, 400, decimals=decimals if decimals else 12, label_rate=0.02)
    assert gap_at_k(predictions, labels, 20) == pytest.approx(reference_gap(predictions, labels, 20), abs=1e-9)


@pytest.mark.parametrize("column", [0, 5, 719, 776])  # 777 // 80 groups cover columns < 720
def test_nan_is_rejected_wherever_it_is(column):
    predictions = np.random.default_rng(0).random((3, 777))
    predictions[1, column] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        top_k(predictions, 20)


def test_top_k_order_and_ties():
    classes, scores = top_k(np.array([[0.2, 0.9, 0.2, 0.2, 0.5]], dtype=np.float32), 3)
    np.testing.assert_array_equal(classes, [[1, 4, 0]])
    np.testing.assert_allclose(scores, [[0.9, 0.5, 0.2]])
    classes, _ = top_k(np.array([[0.2, 0.9, 0.2, 0.2, 0.5]]), 4)
    np.testing.assert_array_equal(classes, [[1, 4, 0, 2]])


# ---------------------------------------------------------------------------------------
# Hit@1, PERR, mAP

def test_hit_at_one_hand_case():
    predictions = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    labels = np.array([[1, 0], [1, 0], [0, 1]])  # hit, miss, tie -> class 0 -> miss
    assert hit_at_one(predictions, labels) == pytest.approx(1 / 3)


def test_perr_hand_case():
    predictions = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9], [0.4, 0.3, 0.2, 0.1]])
    labels = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    # video 0: top-2 = {0, 1} -> 1/2; video 1: top-1 = {3} -> 1; video 2 has no positives: skipped.
    assert perr(predictions, labels) == pytest.approx(0.75)
    assert perr(predictions, np.zeros_like(labels)) == 0.0


def test_map_hand_case_full_and_top_k():
    predictions = np.array([[0.9, 0.1], [0.8, 0.1], [0.1, 0.5]])
    labels = np.array([[0, 0], [1, 0], [1, 0]])  # class 1 has no positives: skipped
    # class 0 over all videos: - + + -> (1/2 + 2/3) / 2
    assert mean_average_precision(predictions, labels) == pytest.approx(7 / 12)
    # top-1 per video: class 0 sees videos 0 (-) and 1 (+); video 2's positive is missed.
    assert mean_average_precision(predictions, labels, k=1) == pytest.approx(0.25)
    assert mean_average_precision(predictions, np.zeros_like(labels)) == 0.0


@pytest.mark.parametrize("seed,num_videos,num_classes,k", CASES)
def test_hit_perr_map_match_reference(seed, num_videos, num_classes, k):
    predictions, labels = random_case(seed, num_videos, num_classes)
    assert hit_at_one(predictions, labels) == pytest.approx(reference_hit_at_one(predictions, labels), abs=1e-12)
    assert perr(predictions, labels) == pytest.approx(reference_perr(predictions, labels), abs=1e-12)
    assert mean_average_precision(predictions, labels) == pytest.approx(reference_map(predictions, labels), abs=1e-9)
    assert mean_average_precision(predictions, labels, k=k) == pytest.approx(
        reference_map(predictions, labels, k), abs=1e-9)


def test_full_map_equals_top_k_map_when_k_covers_all_classes(monkeypatch):
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 50)  # several column blocks
    predictions, labels = random_case(11, 60, 9)
    assert mean_average_precision(predictions, labels) == pytest.approx(
        mean_average_precision(predictions, labels, k=9), abs=1e-12)


# ---------------------------------------------------------------------------------------
# Accumulator

def test_accumulator_over_uneven_batches_equals_one_shot():
    predictions, labels = random_case(21, 157, 30)
    accumulator = EvaluationAccumulator(num_classes=30, k=20)
    for start, stop in [(0, 1), (1, 1), (1, 38), (38, 40), (40, 120), (120, 157)]:
        accumulator.add(predictions[start:stop], labels[start:stop])
    result = accumulator.result()
    assert result["num_videos"] == 157
    assert result["gap"] == pytest.approx(gap_at_k(predictions, labels, 20), abs=1e-12)
    assert result["gap"] == pytest.approx(reference_gap(predictions, labels, 20), abs=1e-9)
    assert result["hit_at_1"] == pytest.approx(hit_at_one(predictions, labels), abs=1e-12)
    assert result["perr"] == pytest.approx(perr(predictions, labels), abs=1e-12)
    assert result["map"] == pytest.approx(mean_average_precision(predictions, labels, k=20), abs=1e-12)
    # result() can be called again, and adding more keeps it streaming.
    accumulator.add(predictions[:5], labels[:5])
    again = np.concatenate([predictions, predictions[:5]]), np.concatenate([labels, labels[:5]])
    assert accumulator.result()["gap"] == pytest.approx(gap_at_k(*again, 20), abs=1e-12)


def test_accumulator_perr_with_more_positives_than_k():
    predictions, labels = random_case(5, 40, 12, label_rate=0.6)
    accumulator = EvaluationAccumulator(num_classes=12, k=2)
    accumulator.add(predictions[:13], labels[:13])
    accumulator.add(predictions[13:], labels[13:])
    assert labels.sum(axis=1).max() > 2
    assert accumulator.result()["perr"] == pytest.approx(reference_perr(predictions, labels), abs=1e-12)
    assert accumulator.result()["gap"] == pytest.approx(reference_gap(predictions, labels, 2), abs=1e-9)


def test_accumulator_empty_and_wrong_width():
    accumulator = EvaluationAccumulator(num_classes=4)
    assert accumulator.result() == {"gap": 0.0, "hit_at_1": 0.0, "perr": 0.0, "map": 0.0, "num_videos": 0}
    with pytest.raises(ValueError, match="classes"):
        accumulator.add(np.zeros((2, 5)), np.zeros((2, 5)))


# ---------------------------------------------------------------------------------------
# Helpers and package hygiene

def test_dense_labels():
    dense = dense_labels([[1, 3], [], np.array([0])], 4)
    assert dense.dtype == np.float32
    np.testing.assert_array_equal(dense, [[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert dense_labels([], 3).shape == (0, 3)
    with pytest.raises(ValueError, match="outside"):
        dense_labels([[0], [4]], 4)


def test_metrics_and_predictions_do_not_import_tensorflow_kfp_or_beam():
    code = ("import sys, yt8m.metrics, yt8m.predictions; "
            "bad = [m for m in ('tensorflow', 'kfp', 'apache_beam') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
