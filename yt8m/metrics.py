"""YouTube-8M evaluation metrics: GAP@k (the leaderboard metric), Hit@1, PERR and mAP.

Pure numpy (no TensorFlow). ``predictions`` are float scores [N, C]; ``labels`` are [N, C]
0/1 (bool, int or float; any value > 0 counts as a positive).

Tie-break rule (deterministic, used by every function here):
  * Within a video, classes are ranked by score descending, then by class index ascending.
    This also decides which of several tied classes make a video's top k.
  * In a pooled list (GAP) or a per-class list (mAP), equal scores are ranked by video
    order (row order; in ``EvaluationAccumulator``, order of arrival), then by class index.
The starter code instead shuffles the pool with a fixed seed and then sorts stably, so its
tie order depends on the pool size. Ties are rare with continuous model scores; with many
ties (constant or heavily rounded scores) the rule matters, and this one is reproducible
by a plain sort on (-score, video, class).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

# Rows per argpartition block: bounds temporary memory to ~_BLOCK_ELEMENTS * 8 bytes.
_BLOCK_ELEMENTS = 1 << 20


def _as_predictions(predictions) -> np.ndarray:
    predictions = np.asarray(predictions)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must be 2-D [videos, classes], got shape {predictions.shape}")
    if predictions.shape[1] == 0:
        raise ValueError("predictions must have at least one class column")
    if not np.issubdtype(predictions.dtype, np.floating):
        predictions = predictions.astype(np.float64)
    return predictions


def _as_pair(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validated (predictions, positive mask) with equal shapes."""
    predictions = _as_predictions(predictions)
    labels = np.asarray(labels)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels shape {labels.shape} != predictions shape {predictions.shape}")
    return predictions, labels > 0


def _check_k(k, num_classes: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return min(int(k), num_classes)


def _top_k_block(block: np.ndarray, k: int) -> np.ndarray:
    """Class indices of each row's top k, ordered by score descending, then class ascending."""
    num_classes = block.shape[1]
    if k == num_classes:
        classes = np.broadcast_to(np.arange(num_classes), block.shape).copy()
    else:
        classes = np.sort(np.argpartition(block, num_classes - k, axis=1)[:, num_classes - k:], axis=1)
    values = np.take_along_axis(block, classes, axis=1)
    if np.isnan(values).any():  # argpartition puts NaN last, so any NaN in a row lands here
        raise ValueError("predictions contain NaN")
    if k < num_classes:
        # Rows where the k-th score is tied with unselected classes: argpartition chose the
        # tied classes arbitrarily; take the lowest class indices among the tied ones instead.
        kth = values.min(axis=1)
        straddling = np.flatnonzero(np.count_nonzero(block >= kth[:, None], axis=1) > k)
        if straddling.size:
            rows = block[straddling]
            threshold = kth[straddling][:, None]
            above = rows > threshold
            tied = rows == threshold
            room = k - np.count_nonzero(above, axis=1)
            take = above | (tied & (np.cumsum(tied, axis=1) <= room[:, None]))
            classes[straddling] = (np.flatnonzero(take) % num_classes).reshape(straddling.size, k)
            values[straddling] = np.take_along_axis(rows, classes[straddling], axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(classes, order, axis=1)


def _top_k_block_prefiltered(block: np.ndarray, k: int) -> np.ndarray:
    """``_top_k_block`` run on each row's candidates only, same result.

    Candidates are the scores >= the k-th largest of the maxima of 4k disjoint column
    groups (group = class index mod 4k): a lower bound on the row's k-th best score, since
    k distinct scores reach it.
    """
    num_rows, num_classes = block.shape
    num_groups = 4 * k
    group_size = num_classes // num_groups
    if group_size < 2:  # too few classes per group for the bound to prune much
        return _top_k_block(block, k)
    covered = num_groups * group_size
    group_max = block[:, :covered].reshape(num_rows, group_size, num_groups).max(axis=1)
    if np.isnan(group_max).any() or np.isnan(block[:, covered:]).any():  # max propagates NaN
        return _top_k_block(block, k)  # raises the NaN error
    bound = np.partition(group_max, num_groups - k, axis=1)[:, num_groups - k]
    candidates = block >= bound[:, None]
    counts = np.count_nonzero(candidates, axis=1)
    width = int(counts.max(initial=0))
    if width > num_classes // 4:  # heavy ties: packing would not pay off
        return _top_k_block(block, k)
    flat = np.flatnonzero(candidates)  # row-major: classes ascending within a row
    rows, columns = np.divmod(flat, num_classes)  # (much faster than a 2-D np.nonzero)
    slots = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    # Packed candidates keep class order; -inf padding sits after them, so it never wins a tie.
    packed_scores = np.full((num_rows, width), -np.inf, dtype=block.dtype)
    packed_scores[rows, slots] = block[rows, columns]
    packed_classes = np.zeros((num_rows, width), dtype=np.int64)
    packed_classes[rows, slots] = columns
    return np.take_along_axis(packed_classes, _top_k_block(packed_scores, k), axis=1)


def top_k(predictions, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k (= min(k, C)) best classes and their scores, [N, k] each, best first.

    Order: score descending, then class index ascending (so ties are deterministic).
    """
    predictions = _as_predictions(predictions)
    num_videos, num_classes = predictions.shape
    k = _check_k(k, num_classes)
    classes = np.empty((num_videos, k), dtype=np.int64)
    rows_per_block = max(1, _BLOCK_ELEMENTS // num_classes)
    for start in range(0, num_videos, rows_per_block):
        stop = min(start + rows_per_block, num_videos)
        classes[start:stop] = _top_k_block_prefiltered(predictions[start:stop], k)
    return classes, np.take_along_axis(predictions, classes, axis=1)


def _pooled_average_precision(scores: np.ndarray, relevant: np.ndarray, num_positives: int) -> float:
    """AP of one list of (score, is_positive), in row-major tie order; recall over num_positives."""
    if num_positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hit_ranks = np.flatnonzero(relevant[order]) + 1  # 1-based rank of each hit
    precision_at_hits = np.arange(1, hit_ranks.size + 1, dtype=np.float64) / hit_ranks
    return float(precision_at_hits.sum() / num_positives)


def _mean_ap_from_pairs(classes: np.ndarray, scores: np.ndarray, relevant: np.ndarray,
                        positives_per_class: np.ndarray) -> float:
    """Mean over classes with positives of the AP of that class's (score, is_positive) pairs.

    Pairs are [N, k] in video order; positives missing from the pairs still count in recall.
    """
    classes, scores, relevant = classes.ravel(), scores.ravel(), relevant.ravel()
    by_score = np.argsort(-scores, kind="stable")
    order = by_score[np.argsort(classes[by_score], kind="stable")]  # class, score desc, video
    classes, relevant = classes[order], relevant[order]
    group_start = np.searchsorted(classes, classes, side="left")
    rank_in_class = np.arange(classes.size) - group_start + 1
    cumulative_hits = np.cumsum(relevant, dtype=np.int64)
    hits_before_class = cumulative_hits[group_start] - relevant[group_start]
    hits_in_class = cumulative_hits - hits_before_class
    precision_at_hits = hits_in_class[relevant] / rank_in_class[relevant]
    ap_sums = np.bincount(classes[relevant], weights=precision_at_hits, minlength=positives_per_class.size)
    has_positives = positives_per_class > 0
    if not has_positives.any():
        return 0.0
    return float(np.mean(ap_sums[has_positives] / positives_per_class[has_positives]))


def _mean_ap_full(predictions: np.ndarray, positive: np.ndarray) -> float:
    """Mean over classes with positives of the AP over all videos (column-wise, blocked)."""
    if np.isnan(predictions).any():
        raise ValueError("predictions contain NaN")
    num_videos, num_classes = predictions.shape
    ap_sums = np.zeros(num_classes, dtype=np.float64)
    ranks = np.arange(1, num_videos + 1, dtype=np.float64)[:, None]
    columns_per_block = max(1, _BLOCK_ELEMENTS // max(1, num_videos))
    for start in range(0, num_classes, columns_per_block):
        stop = min(start + columns_per_block, num_classes)
        order = np.argsort(-predictions[:, start:stop], axis=0, kind="stable")
        relevant = np.take_along_axis(positive[:, start:stop], order, axis=0)
        hits = np.cumsum(relevant, axis=0, dtype=np.int64)
        ap_sums[start:stop] = np.where(relevant, hits / ranks, 0.0).sum(axis=0)
    positives_per_class = positive.sum(axis=0)
    has_positives = positives_per_class > 0
    if not has_positives.any():
        return 0.0
    return float(np.mean(ap_sums[has_positives] / positives_per_class[has_positives]))


def class_average_precision(predictions, labels, classes: Sequence[int]) -> dict[int, float]:
    """AP of each of ``classes`` over all videos (its column ranked by score; 0.0 without positives)."""
    predictions, positive = _as_pair(predictions, labels)
    return {int(c): _pooled_average_precision(predictions[:, c], positive[:, c], int(np.count_nonzero(positive[:, c])))
            for c in classes}


def gap_at_k(predictions, labels, k: int = 20) -> float:
    """Global Average Precision over each video's top k (k = min(k, C)) predictions.

    All N*k (score, is_positive) pairs are pooled and ranked by score; recall is measured
    against ALL positives, including those outside a video's top k. No positives -> 0.0.
    """
    predictions, positive = _as_pair(predictions, labels)
    classes, scores = top_k(predictions, k)
    relevant = np.take_along_axis(positive, classes, axis=1)
    return _pooled_average_precision(scores.ravel(), relevant.ravel(), int(np.count_nonzero(positive)))


def hit_at_one(predictions, labels) -> float:
    """Fraction of videos whose top-scoring class is a positive (averaged over all videos)."""
    predictions, positive = _as_pair(predictions, labels)
    if predictions.shape[0] == 0:
        return 0.0
    classes, _ = top_k(predictions, 1)
    return float(np.take_along_axis(positive, classes, axis=1).mean())


def _perr_sum(ranked_relevant: np.ndarray, num_positives: np.ndarray) -> float:
    """Sum over videos with positives of precision in their top-(#positives) predictions."""
    has_positives = num_positives > 0
    within = np.arange(ranked_relevant.shape[1]) < num_positives[:, None]
    hits = np.count_nonzero(ranked_relevant & within, axis=1)
    return float(np.sum(hits[has_positives] / num_positives[has_positives]))


def perr(predictions, labels) -> float:
    """Precision at equal recall rate: per video, the precision of its top-(#positives)
    predictions, averaged over videos that have positives (none -> 0.0)."""
    predictions, positive = _as_pair(predictions, labels)
    num_positives = np.count_nonzero(positive, axis=1)
    num_scored = int(np.count_nonzero(num_positives))
    if num_scored == 0:
        return 0.0
    classes, _ = top_k(predictions, int(num_positives.max()))
    return _perr_sum(np.take_along_axis(positive, classes, axis=1), num_positives) / num_scored


def mean_average_precision(predictions, labels, k: int | None = None) -> float:
    """Mean over classes of per-class average precision; classes with no positives skipped.

    ``k=None``: each class's AP ranks all N videos. ``k`` given: the starter-code convention,
    where a class only sees the videos that have it in their top k (positives outside
    still count in recall); this is what ``EvaluationAccumulator`` reports.
    No class with positives -> 0.0.
    """
    predictions, positive = _as_pair(predictions, labels)
    if k is None:
        return _mean_ap_full(predictions, positive)
    classes, scores = top_k(predictions, k)
    relevant = np.take_along_axis(positive, classes, axis=1)
    return _mean_ap_from_pairs(classes, scores, relevant, positive.sum(axis=0))


def dense_labels(label_lists: Iterable[Sequence[int]], num_classes: int) -> np.ndarray:
    """Multi-hot float32 [N, num_classes] from per-video lists of class ids."""
    label_lists = [np.asarray(labels, dtype=np.int64).ravel() for labels in label_lists]
    dense = np.zeros((len(label_lists), num_classes), dtype=np.float32)
    if not label_lists:
        return dense
    rows = np.repeat(np.arange(len(label_lists)), [labels.size for labels in label_lists])
    columns = np.concatenate(label_lists)
    out_of_range = (columns < 0) | (columns >= num_classes)
    if out_of_range.any():
        bad = int(np.flatnonzero(out_of_range)[0])
        raise ValueError(f"label {columns[bad]} of video {rows[bad]} is outside [0, {num_classes})")
    dense[rows, columns] = 1.0
    return dense


class EvaluationAccumulator:
    """Streaming GAP@k, Hit@1, PERR and mAP over batches; ``result()`` equals the one-shot
    functions on the concatenated batches (tie order = order of arrival).

    Memory: per video only its top-k classes (int32), scores and hit flags (~9*k bytes for
    float32 scores, 180 B at k=20), plus a per-class positive count. ``map`` is therefore
    the top-k mAP of the starter code, i.e. ``mean_average_precision(..., k=k)``.
    """

    def __init__(self, num_classes: int, k: int = 20):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.k = _check_k(k, self.num_classes)
        self._classes: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._relevant: list[np.ndarray] = []
        self._positives_per_class = np.zeros(self.num_classes, dtype=np.int64)
        self._num_videos = 0
        self._num_hits_at_1 = 0
        self._perr_sum = 0.0
        self._num_videos_with_positives = 0

    def add(self, predictions, labels) -> None:
        """Add one batch of predictions [B, C] and labels [B, C]."""
        predictions, positive = _as_pair(predictions, labels)
        if predictions.shape[1] != self.num_classes:
            raise ValueError(f"batch has {predictions.shape[1]} classes, accumulator expects {self.num_classes}")
        if predictions.shape[0] == 0:
            return
        num_positives = np.count_nonzero(positive, axis=1)
        # One ranking deep enough for GAP (k) and PERR (#positives); its prefixes are exact.
        depth = max(self.k, int(num_positives.max()))
        classes, scores = top_k(predictions, depth)
        relevant = np.take_along_axis(positive, classes, axis=1)
        self._num_videos += predictions.shape[0]
        self._num_hits_at_1 += int(np.count_nonzero(relevant[:, 0]))
        self._perr_sum += _perr_sum(relevant, num_positives)
        self._num_videos_with_positives += int(np.count_nonzero(num_positives))
        self._positives_per_class += positive.sum(axis=0)
        self._classes.append(classes[:, :self.k].astype(np.int32))
        self._scores.append(scores[:, :self.k].copy())
        self._relevant.append(relevant[:, :self.k].copy())

    def _consolidate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(self._classes) != 1:
            if not self._classes:
                empty = np.empty((0, self.k))
                return empty.astype(np.int32), empty, empty.astype(bool)
            self._classes = [np.concatenate(self._classes)]
            self._scores = [np.concatenate(self._scores)]
            self._relevant = [np.concatenate(self._relevant)]
        return self._classes[0], self._scores[0], self._relevant[0]

    def result(self) -> dict:
        """Metrics over everything added so far: gap, hit_at_1, perr, map, num_videos."""
        classes, scores, relevant = self._consolidate()
        num_videos = self._num_videos
        return {
            "gap": _pooled_average_precision(scores.ravel(), relevant.ravel(), int(self._positives_per_class.sum())),
            "hit_at_1": self._num_hits_at_1 / num_videos if num_videos else 0.0,
            "perr": (self._perr_sum / self._num_videos_with_positives if self._num_videos_with_positives else 0.0),
            "map": _mean_ap_from_pairs(classes, scores, relevant, self._positives_per_class),
            "num_videos": num_videos,
        }


def evaluate_submission(pair_classes: Sequence[np.ndarray], pair_scores: Sequence[np.ndarray],
                        submitted_labels: Sequence[Sequence[int]], unsubmitted_labels: Sequence[Sequence[int]],
                        num_classes: int, k: int = 20) -> dict:
    """GAP@k, Hit@1, PERR and top-k mAP of exactly what a sparse submission lists.

    Row ``i`` of a submission is a list of (class, score) pairs for one video, whose true
    classes are ``submitted_labels[i]``; ``unsubmitted_labels`` are the true classes of the
    videos the submission does not list. Each video's pairs are ranked by score descending
    (then class ascending) and its best k enter the pooled GAP list: a class that is not
    listed is not scored (it never enters a top k); a video that is not listed contributes
    only its positives to the denominators (GAP/mAP recall, Hit@1 and PERR counts). An
    empty submission scores 0. For dense [N, C] predictions use ``gap_at_k`` and friends.
    """
    if len(pair_classes) != len(pair_scores) or len(pair_classes) != len(submitted_labels):
        raise ValueError(f"{len(pair_classes)} class lists, {len(pair_scores)} score lists and "
                         f"{len(submitted_labels)} label lists: one each per submitted video")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    num_rows = len(pair_classes)
    lengths = np.array([np.size(c) for c in pair_classes], dtype=np.int64)
    if any(np.size(c) != np.size(s) for c, s in zip(pair_classes, pair_scores)):
        raise ValueError("each submitted video needs as many scores as classes")
    classes = (np.concatenate([np.asarray(c, np.int64).ravel() for c in pair_classes]) if num_rows
               else np.zeros(0, np.int64))
    scores = (np.concatenate([np.asarray(s, np.float64).ravel() for s in pair_scores]) if num_rows
              else np.zeros(0, np.float64))
    if ((classes < 0) | (classes >= num_classes)).any():
        bad = classes[(classes < 0) | (classes >= num_classes)][0]
        raise ValueError(f"submitted class {bad} is outside [0, {num_classes})")
    rows = np.repeat(np.arange(num_rows, dtype=np.int64), lengths)
    # Per row: score descending, then class ascending (the module's tie rule).
    order = np.lexsort((classes, -scores, rows))
    rows, classes, scores = rows[order], classes[order], scores[order]
    row_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if num_rows else np.zeros(0, np.int64)
    rank = np.arange(rows.size) - row_start[rows]  # 0-based rank within the video
    truth = [np.unique(np.asarray(labels, np.int64).ravel()) for labels in submitted_labels]
    truth_counts = np.array([t.size for t in truth], dtype=np.int64)
    truth_keys = (np.concatenate([r * num_classes + t for r, t in enumerate(truth)]) if num_rows
                  else np.zeros(0, np.int64))
    relevant = np.isin(rows * num_classes + classes, truth_keys)
    missing = [np.unique(np.asarray(labels, np.int64).ravel()) for labels in unsubmitted_labels]
    missing_counts = np.array([m.size for m in missing], dtype=np.int64)
    total_positives = int(truth_counts.sum() + missing_counts.sum())
    positives_per_class = np.bincount(np.concatenate(truth + missing + [np.zeros(0, np.int64)]),
                                      minlength=num_classes).astype(np.int64)
    in_top_k = rank < k
    num_videos = num_rows + len(missing)
    hits_at_1 = int(np.count_nonzero(relevant & (rank == 0)))
    within_positives = rank < truth_counts[rows]
    perr_hits = np.bincount(rows[relevant & within_positives], minlength=num_rows)
    videos_with_positives = int(np.count_nonzero(truth_counts) + np.count_nonzero(missing_counts))
    has = truth_counts > 0
    perr_sum = float(np.sum(perr_hits[has] / truth_counts[has]))
    return {
        "gap": _pooled_average_precision(scores[in_top_k], relevant[in_top_k], total_positives),
        "hit_at_1": hits_at_1 / num_videos if num_videos else 0.0,
        "perr": perr_sum / videos_with_positives if videos_with_positives else 0.0,
        "map": _mean_ap_from_pairs(classes[in_top_k], scores[in_top_k], relevant[in_top_k], positives_per_class),
        "num_videos": num_videos,
        "num_submitted": num_rows,
    }
