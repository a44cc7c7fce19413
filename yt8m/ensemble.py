"""Ensemble trained members on their out-of-fold predictions and merge the plan into ONE SavedModel.

Combiners (``COMBINERS``): two weighted averages of the members' probabilities (the served graph is the
export's weighted-average combiner, ``export.ServingModule``, with the weights below) and a stacker:

- ``average``: uniform weights (the plain probability average the 2018 winners used).
- ``weighted``: non-negative weights summing to 1 fitted to maximize the out-of-fold GAP@20
  (``fit_weights``: deterministic coordinate ascent on the simplex, moving mass between pairs of
  members in steps 0.2, 0.1, 0.05, 0.02, 0.01 from the uniform start, so it never ends below the plain
  average on OOF; it can over-fit OOF a little, which the holdout GAP beside it shows).
- ``stacking``: a LightGBM model over candidate classes (``yt8m.stacking``: the union of the members'
  top-k, k = the prediction files' width; features class id, prior, each member's score and rank),
  fitted on the OOF table (at most ``STACK_MAX_VIDEOS``, evenly strided) with early stopping; its reported
  OOF GAP is cross-fitted (two halves of the videos; the videos left out of the fit are scored by the final
  stacker), so it sits beside the members' OOF GAP. The planner scores every subset it evaluates with
  a stacker too (``plan_scorer``: fitted on at most ``PLAN_STACK_VIDEOS`` evenly strided OOF videos, its
  cross-fitted OOF GAP; cached per subset, so the all-members stacker of the combiners' report and the
  planned one are not fitted twice); the stacker of the planned members (on up to ``STACK_MAX_VIDEOS``)
  is saved as ``stacker.json`` beside ``saved_model/`` and served as TensorFlow ops
  (``stacking.StackerModule``); the served scores are checked against the stacker computed outside the
  graph on the holdout videos whose candidate sets agree.

Soft labels (``write_soft_labels``, issue 15's distillation): the chosen combiner's OOF and holdout scores,
``topk``: each video's top k as ``predictions.save_topk`` files (``teacher/{oof,holdout}_teacher.npz``), or
``full``: EVERY class's teacher probability (``full_teacher``, from the members' every-class predictions,
``training.full_predictions``) as float16 ``predictions.save_full`` files (``teacher/{oof,holdout}_teacher.npy``,
2 bytes per class: 7,724 bytes per video at 3,862 classes); students train on the OOF file
(``training.teacher_predictions``).

GAP is computed on the members' top-k prediction files (``predictions.save_topk``) without densifying:
``TopKTable`` holds, per video, the union of the members' top-k classes and every member's score there
(0 outside its top k, exactly what the dense average would see); ``TopKTable.gap`` equals
``metrics.gap_at_k`` of the dense weighted average. Memory: M x N x U float32 scores (U = the widest
union, at most M x k): ~20 GB for 7 members x 5.5M OOF videos at k = 20 (the dense [N, 3,862] it
replaces was ~85 GB per member); the ensemble task has 64 GB at full scale.

``build_ensemble``: every member's OOF / holdout GAP, each combiner's OOF / holdout GAP, the size-budget
plan (``yt8m.planner``: which members at which precision, its GAP-vs-size frontier as ``frontier.png``
and ``plan.json``), the merged graph of the plan, the per-tensor size report, and the holdout GAP of the
SERVED graph before (float32) and after compression, with the served scores checked against the
combiner computed outside the graph. The plan reserves bytes for the graph itself (signatures,
transform_fn); when the merged export is over the budget, the planner runs once more with the graph's
measured size as the reserve. Everything lands in ``ensemble.json``.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from yt8m import compression as compression_lib
from yt8m import config as config_lib
from yt8m import export, kfold, metrics, planner, predictions, stacking, storage

log = logging.getLogger(__name__)

COMBINERS = ("average", "weighted", "stacking")
WEIGHTED_COMBINERS = ("average", "weighted")  # served as a weighted sum; the planner's combiners
TEACHER_DIR = "teacher"
SOFT_LABELS = ("topk", "full")
_FIT_STEPS = (0.2, 0.1, 0.05, 0.02, 0.01)
_FIT_MAX_ROUNDS = 50
FIT_MAX_VIDEOS = 200_000  # weights are fitted on an evenly strided sample of at most this many OOF videos
STACK_MAX_VIDEOS = 500_000  # the stacker likewise (``fit_stacking``)
PLAN_STACK_VIDEOS = 50_000  # the planner's stackers, one per evaluated subset (``plan_scorer``), are cheaper:
PLAN_STACK_PARAMS = {"learning_rate": 0.15}  # 3x the final stacker's learning rate ...
PLAN_STACK_ROUNDS = 100  # ... and at most 100 rounds per half


@dataclasses.dataclass
class TopKTable:
    """Members' top-k predictions of the same videos, on the union of their classes per video.

    ``classes`` int32 [N, U] (ascending per row, -1 pads), ``scores`` float32 [M, N, U] (0 where a class is
    outside that member's top k), ``relevant`` bool [N, U], ``positives`` int [N] every label of each video.
    """

    video_ids: list[str]
    classes: np.ndarray
    scores: np.ndarray
    relevant: np.ndarray
    positives: np.ndarray
    k: int = 20
    width: int = 20  # the prediction files' top-k (the narrowest file's)

    @property
    def num_members(self) -> int:
        return self.scores.shape[0]

    @property
    def num_positives(self) -> int:
        return int(self.positives.sum())

    def present(self) -> np.ndarray:
        """bool [M, N, U]: the class is in that member's top k (its score there is not 0)."""
        return (self.scores != 0) & (self.classes >= 0)[None]

    def combined(self, weights) -> np.ndarray:
        """[N, U] weighted sum of the members' scores (pads at -inf)."""
        w = np.asarray(weights, np.float64)
        if w.shape != (self.num_members,):
            raise ValueError(f"{w.size} weights for {self.num_members} members")
        total = np.tensordot(w.astype(np.float32), self.scores, axes=1)
        return np.where(self.classes >= 0, total, -np.inf)

    def gap(self, weights) -> float:
        """GAP@k of the weighted sum (ties: score descending, then class ascending; pooled in video order)."""
        return stacking.table_gap(self.classes, self.relevant, self.combined(weights), self.num_positives, self.k)

    def subset(self, members: list[int]) -> "TopKTable":
        return dataclasses.replace(self, scores=self.scores[list(members)])

    def sample(self, max_videos: int) -> "TopKTable":
        """At most ``max_videos`` evenly strided videos (deterministic); the table itself when it is smaller."""
        n = len(self.video_ids)
        if n <= max_videos:
            return self
        rows = np.linspace(0, n - 1, max_videos).astype(np.int64)
        return TopKTable([self.video_ids[i] for i in rows], self.classes[rows], self.scores[:, rows],
                         self.relevant[rows], self.positives[rows], self.k, self.width)


def topk_table(paths: list[str], labels: dict[str, list[int]], k: int = 20) -> TopKTable:
    """Align several ``save_topk`` files on the first one's videos (every file must hold all of them)."""
    loaded = [predictions.load_topk(p) for p in paths]
    ids = [str(v) for v in loaded[0]["video_ids"]]
    num_classes = int(loaded[0]["num_classes"])
    n = len(ids)
    rows, cls, member_rows = [], [], []
    for path, pred in zip(paths, loaded):
        if int(pred["num_classes"]) != num_classes:
            raise ValueError(f"{path}: {pred['num_classes']} classes, {paths[0]} has {num_classes}")
        order = {str(v): i for i, v in enumerate(pred["video_ids"])}
        missing = [v for v in ids if v not in order]
        if missing:
            raise ValueError(f"prediction files disagree on videos (e.g. {missing[0]!r} is not in all of {paths})")
        idx = np.asarray([order[v] for v in ids], np.int64)
        c = np.asarray(pred["classes"][idx], np.int64)
        member_rows.append((c, np.asarray(pred["scores"][idx], np.float32)))
        rows.append(np.repeat(np.arange(n), c.shape[1]))
        cls.append(c.ravel())
    keys = np.unique(np.concatenate(rows) * num_classes + np.concatenate(cls))
    key_rows = keys // num_classes
    row_start = np.searchsorted(key_rows, np.arange(n))
    col = np.arange(keys.size) - row_start[key_rows]
    width = int(col.max()) + 1 if keys.size else 1
    classes = np.full((n, width), -1, np.int32)
    classes[key_rows, col] = keys % num_classes
    scores = np.zeros((len(paths), n, width), np.float32)
    for m, (c, s) in enumerate(member_rows):
        r = np.repeat(np.arange(n), c.shape[1])
        pos = np.searchsorted(keys, r * num_classes + c.ravel())
        scores[m, r, pos - row_start[r]] = s.ravel()
    missing = [v for v in ids if v not in labels]
    if missing:
        raise ValueError(f"no labels for video {missing[0]!r} of {paths[0]}")
    truth = [np.unique(np.asarray(labels[v], np.int64)) for v in ids]
    label_keys = np.concatenate([i * num_classes + t for i, t in enumerate(truth)] + [np.zeros(0, np.int64)])
    relevant = np.zeros((n, width), bool)
    relevant[key_rows, col] = np.isin(keys, label_keys)
    width_k = min(int(p["classes"].shape[1]) for p in loaded)
    return TopKTable(ids, classes, scores, relevant, np.asarray([t.size for t in truth], np.int64), k, width_k)


def fit_weights(table: TopKTable, max_videos: int = FIT_MAX_VIDEOS) -> tuple[np.ndarray, float]:
    """Non-negative weights summing to 1 maximizing ``table.gap`` (see the module doc); (weights, GAP on the
    whole table). Fitted on ``table.sample(max_videos)``: each step evaluates GAP O(members^2) times."""
    full, table = table, table.sample(max_videos)
    m = table.num_members
    w = np.full(m, 1.0 / m)
    best = table.gap(w)
    for step in _FIT_STEPS:
        for _ in range(_FIT_MAX_ROUNDS):
            improved = False
            for i in range(m):
                for j in range(m):
                    if i == j or w[j] <= 0:
                        continue
                    cand = w.copy()
                    moved = min(step, cand[j])
                    cand[i] += moved
                    cand[j] -= moved
                    gap = table.gap(cand)
                    if gap > best + 1e-12:
                        w, best, improved = cand, gap, True
            if not improved:
                break
    w = w / w.sum()
    return w, (best if full is table else full.gap(w))


def combiner_weights(table: TopKTable, combiner: str) -> tuple[np.ndarray, float]:
    """(weights, OOF GAP) of a weighted-average ``combiner`` on ``table`` (``stacking``: ``fit_stacking``)."""
    if combiner == "average":
        w = np.full(table.num_members, 1.0 / table.num_members)
        return w, table.gap(w)
    if combiner == "weighted":
        return fit_weights(table)
    raise ValueError(f"combiner: expected one of {', '.join(WEIGHTED_COMBINERS)}, got {combiner!r}")


def fit_stacking(table: TopKTable, labels: dict[str, list[int]], num_classes: int, seed: int = 0,
                 max_videos: int = STACK_MAX_VIDEOS, params: dict | None = None,
                 max_rounds: int = stacking.MAX_ROUNDS,
                 early_stopping_rounds: int = stacking.EARLY_STOPPING_ROUNDS) -> stacking.Stacker:
    """A LightGBM stacker fitted on an OOF ``table`` (k: the files' top-k width; prior: the labels').

    Fitted on ``table.sample(max_videos)`` (full scale: ~40 candidates per video, so 5.5M OOF videos would be
    ~220M LightGBM rows). ``oof_scores`` then covers every video with an out-of-sample score: cross-fitted
    for the sampled videos, the final stacker's for the others; ``report["oof_gap"]`` is their GAP@20 (equal
    to ``cross_fitted_oof_gap``, which is on the sample, when nothing was left out)."""
    sample = table.sample(max_videos)
    stacker = stacking.fit_stacker(sample.video_ids, sample.classes, sample.scores, sample.present(), sample.relevant,
                                   sample.num_positives, stacking.class_prior(labels, num_classes), k=table.width,
                                   seed=seed, params=params, max_rounds=max_rounds,
                                   early_stopping_rounds=early_stopping_rounds)
    if sample is not table:
        rows = np.linspace(0, len(table.video_ids) - 1, max_videos).astype(np.int64)  # TopKTable.sample's rows
        scores = stacked_scores(stacker, table)
        scores[rows] = stacker.oof_scores
        stacker.oof_scores = scores
    stacker.report["oof_gap"] = union_gap(table, stacker.oof_scores)
    stacker.report["fitted_videos"] = len(sample.video_ids)
    return stacker


class StackerCache:
    """Stackers fitted on subsets of ``table``'s members, by (members, videos fitted): a subset is fitted once
    for the planner and reused for the report and the export when the sample sizes agree."""

    def __init__(self, table: TopKTable, labels: dict[str, list[int]], num_classes: int,
                 settings: config_lib.StackingConfig = config_lib.StackingConfig()):
        self.table, self.labels, self.num_classes, self.settings = table, labels, num_classes, settings
        self.fitted: dict[tuple, stacking.Stacker] = {}

    def get(self, members, max_videos: int = STACK_MAX_VIDEOS, cheap: bool = False) -> stacking.Stacker:
        """The stacker of ``members``: the run config's ``ensemble.stacking`` settings, or (``cheap``) the
        planner's (``PLAN_STACK_PARAMS``/``_ROUNDS``)."""
        key = (tuple(members), min(len(self.table.video_ids), max_videos), cheap)
        if key not in self.fitted:
            s = self.settings
            extra = ({"params": PLAN_STACK_PARAMS, "max_rounds": PLAN_STACK_ROUNDS} if cheap else
                     {"params": {"learning_rate": s.learning_rate}, "max_rounds": s.max_rounds,
                      "early_stopping_rounds": s.early_stopping_rounds})
            self.fitted[key] = fit_stacking(self.table.subset(list(members)), self.labels, self.num_classes,
                                            max_videos=max_videos, **extra)
        return self.fitted[key]


def plan_scorer(cache: StackerCache, max_videos: int = PLAN_STACK_VIDEOS):
    """The planner's ``score`` for the ``stacking`` combiner: (uniform weights, the cross-fitted OOF GAP of a
    cheap stacker fitted on the subset: at most ``max_videos`` videos, ``PLAN_STACK_PARAMS``, at most
    ``PLAN_STACK_ROUNDS`` rounds); and its ``scoring`` description for ``plan.json``."""

    def score(members):
        stacker = cache.get(members, max_videos, cheap=True)
        return np.full(len(members), 1.0 / len(members)), stacker.report["oof_gap"]

    n = len(cache.table.video_ids)
    return score, (f"stacking: a LightGBM stacker per evaluated subset, cross-fitted OOF GAP@20 "
                   f"({min(n, max_videos):,} of {n:,} OOF videos, learning rate "
                   f"{PLAN_STACK_PARAMS['learning_rate']}, <= {PLAN_STACK_ROUNDS} rounds; the served stacker "
                   f"is refitted on the chosen members with the full settings)")


def stacked_scores(stacker: stacking.Stacker, table: TopKTable) -> np.ndarray:
    """[N, U] stacked scores of ``table``'s candidates (0 at pads)."""
    return stacker.predict(table.classes, table.scores, table.present())


def union_gap(table: TopKTable, scores: np.ndarray) -> float:
    """GAP@k of [N, U] scores on ``table``'s candidates (as ``TopKTable.gap`` of a weighted sum)."""
    return stacking.table_gap(table.classes, table.relevant, scores, table.num_positives, table.k)


def _candidate_dense(table: TopKTable, scores: np.ndarray, start: int, stop: int, num_classes: int) -> np.ndarray:
    """Dense float32 [rows, C] of [N, U] candidate scores (0 outside the candidates), rows start..stop."""
    cls, sc = table.classes[start:stop], scores[start:stop]
    dense = np.zeros((cls.shape[0], num_classes), np.float32)
    rows, cols = np.nonzero(cls >= 0)
    dense[rows, cls[rows, cols]] = sc[rows, cols]
    return dense


def full_member_scores(member_dirs: list[str], split: str, video_ids: list[str]) -> list[np.ndarray]:
    """Each member's every-class probabilities (``kfold.OOF_FULL_FILE`` / ``HOLDOUT_FULL_FILE``, float16,
    memory-mapped) with rows in ``video_ids`` order (an index array per member: ``(scores, rows)``)."""
    name = kfold.OOF_FULL_FILE if split == "oof" else kfold.HOLDOUT_FULL_FILE
    out = []
    for d in member_dirs:
        path = storage.join(d, name)
        data = predictions.load_full(path, missing_hint="full soft labels need every class's predictions of the "
                                     "members (training.full_predictions, set by distillation.soft_labels: full)")
        order = {v: i for i, v in enumerate(data["video_ids"])}
        missing = [v for v in video_ids if v not in order]
        if missing:
            raise ValueError(f"{path}: no full predictions for video {missing[0]!r}")
        out.append((data["scores"], np.asarray([order[v] for v in video_ids], np.int64)))
    return out


def full_teacher(table: TopKTable, member_full: list, weights, stacked: np.ndarray | None = None,
                 chunk: int = 4096) -> np.ndarray:
    """The teacher's probability of EVERY class for every video of ``table`` (float16 [N, C]): the weighted
    sum of the members' full probabilities (exactly what the served weighted graph outputs); with a stacker
    (``stacked``: its [N, U] candidate scores) the stacker's scores on the candidates and the members' plain
    average elsewhere (the served stacker outputs 0 there)."""
    n, c = len(table.video_ids), int(member_full[0][0].shape[1])
    w = np.full(len(member_full), 1.0 / len(member_full)) if stacked is not None else np.asarray(weights, np.float64)
    out = np.zeros((n, c), predictions.FULL_DTYPE)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        dense = np.zeros((stop - start, c), np.float32)
        for wm, (scores, rows) in zip(w, member_full):
            dense += np.float32(wm) * np.asarray(scores[rows[start:stop]], np.float32)
        if stacked is not None:
            cls = table.classes[start:stop]
            r, k = np.nonzero(cls >= 0)
            dense[r, cls[r, k]] = stacked[start:stop][r, k]
        out[start:stop] = dense
    return out


def write_soft_labels(tables: dict, scores: dict, teacher_dir: str, num_classes: int, soft_labels: str,
                      top_k: int, full: dict | None = None, chunk: int = 4096) -> dict:
    """The combiner's OOF and holdout scores as teacher files in ``teacher_dir``: ``{split}_teacher.npz`` (each
    video's top k, ``topk``) or ``{split}_teacher.npy`` (every class, float16, ``full``: needs ``full``, the
    ``full_teacher`` of each split). What the top-k cut loses, measured against the full teacher when given
    (else against the candidates' scores): the share of the teacher's probability mass outside each video's top
    k, and the mean per-video BCE between the full and the cut soft labels (the distillation term's target
    error). Chunked: memory is O(chunk x classes) beyond the files themselves."""
    if soft_labels not in SOFT_LABELS:
        raise ValueError(f"soft_labels: expected one of {', '.join(SOFT_LABELS)}, got {soft_labels!r}")
    if soft_labels == "full" and not full:
        raise ValueError("soft_labels full: needs the teacher's every-class scores (full_teacher)")
    storage.gfile.makedirs(teacher_dir)
    width = min(int(top_k), num_classes)
    report = {"soft_labels": soft_labels, "top_k": int(top_k), "files": {},
              "measured_against": "every class (members' full predictions)" if full else "the members' top-k union",
              "bytes_per_video_full": 2 * num_classes}
    eps = 1e-6
    for split, table in tables.items():
        n = len(table.video_ids)
        mass = outside = bce = 0.0
        top_c, top_s = [], []
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            dense = (np.asarray(full[split][start:stop], np.float32) if full else
                     _candidate_dense(table, scores[split], start, stop, num_classes))
            c, v = metrics.top_k(dense, width)
            cut = np.zeros_like(dense)
            np.put_along_axis(cut, c, v, axis=1)
            mass += float(dense.sum())
            outside += float((dense - cut).sum())
            p, q = np.clip(dense, eps, 1 - eps), np.clip(cut, eps, 1 - eps)
            bce += float((-(p * np.log(q) + (1 - p) * np.log(1 - q)) + (p * np.log(p) + (1 - p) * np.log(1 - p))).sum())
            top_c.append(c.astype(np.int32))
            top_s.append(v.astype(np.float32))
        report[f"{split}_mass_outside_top_k"] = outside / mass if mass else 0.0
        report[f"{split}_top_k_excess_bce_per_video"] = bce / n if n else 0.0
        if soft_labels == "full":
            path = storage.join(teacher_dir, f"{split}_teacher.npy")
            report[f"{split}_bytes"] = predictions.save_full(path, table.video_ids, full[split])
        else:
            path = storage.join(teacher_dir, f"{split}_teacher.npz")
            classes = np.concatenate(top_c) if top_c else np.zeros((0, width), np.int32)
            values = np.concatenate(top_s) if top_s else np.zeros((0, width), np.float32)
            kfold.save_topk_arrays(path, table.video_ids, classes, values, num_classes)
        report["files"][split] = path
    log.info("soft labels (%s, top %d): %.2f%% of the OOF teacher's mass (%s) is outside its top %d (excess BCE %.4f "
             "per video when cut)", soft_labels, top_k, 100 * report["oof_mass_outside_top_k"],
             report["measured_against"], top_k, report["oof_top_k_excess_bce_per_video"])
    return report


def _served_holdout(export_dir: str, holdout_data, num_classes: int) -> tuple[list[str], np.ndarray, dict]:
    from yt8m import scoring

    ids, scores, labels = scoring.score_files(export_dir, holdout_data)
    acc = metrics.EvaluationAccumulator(num_classes)
    acc.add(scores, metrics.dense_labels(labels, num_classes))
    return ids, scores, acc.result()


def _served_vs_combiner(ids: list[str], served: np.ndarray, table: TopKTable, weights) -> dict:
    """Max |served - combiner| where every member's score is known (classes in all members' top k)."""
    order = {v: i for i, v in enumerate(ids)}
    common = [i for i, v in enumerate(table.video_ids) if v in order]
    if not common:
        return {"compared": 0, "max_abs_diff": None}
    rows = np.asarray(common)
    known = (table.scores[:, rows] > 0).all(axis=0) & (table.classes[rows] >= 0)
    outside = np.tensordot(np.asarray(weights, np.float32), table.scores[:, rows], axes=1)
    served_rows = served[[order[table.video_ids[i]] for i in common]]
    inside = np.take_along_axis(served_rows, np.maximum(table.classes[rows], 0), axis=1)
    diff = np.abs(inside - outside)[known]
    return {"compared": int(diff.size), "max_abs_diff": float(diff.max()) if diff.size else None}


def _served_vs_stacker(ids: list[str], served: np.ndarray, table: TopKTable, stacker: stacking.Stacker) -> dict:
    """Max |served - stacker| on the holdout videos whose served candidates (non-zero classes) are exactly
    the table's (the members' top-k sets agree between the graph and the prediction files)."""
    order = {v: i for i, v in enumerate(ids)}
    common = [i for i, v in enumerate(table.video_ids) if v in order]
    if not common:
        return {"compared": 0, "max_abs_diff": None, "videos": 0, "videos_with_other_candidates": 0}
    rows = np.asarray(common)
    part = TopKTable([table.video_ids[i] for i in rows], table.classes[rows], table.scores[:, rows],
                     table.relevant[rows], table.positives[rows], table.k, table.width)
    outside = stacked_scores(stacker, part)
    served_rows = served[[order[v] for v in part.video_ids]]
    valid = part.classes >= 0
    inside = np.take_along_axis(served_rows, np.maximum(part.classes, 0), axis=1)
    agree = ((served_rows != 0).sum(axis=1) == valid.sum(axis=1)) & ((inside != 0) | ~valid).all(axis=1)
    diff = np.abs(inside - outside)[valid & agree[:, None]]
    return {"compared": int(diff.size), "max_abs_diff": float(diff.max()) if diff.size else None,
            "videos": int(agree.size), "videos_with_other_candidates": int((~agree).sum())}


def build_ensemble(member_dirs: list[str], output_dir: str, num_classes: int, holdout_labels: dict[str, list[int]],
                   oof_labels: dict[str, list[int]], quantize_min_elements: int | None = 17_000,
                   transform_dir: str | None = None, *, combiner: str = "average", compression: str = "uint8",
                   size_budget_bytes: int = 1 << 30, holdout_data=None, soft_labels: str = "",
                   soft_label_top_k: int = 20, soft_label_dir: str | None = None,
                   teacher_report: dict | None = None,
                   stacking_settings: config_lib.StackingConfig = config_lib.StackingConfig()) -> dict:
    """Plan, merge and report: see the module doc. Writes ``output_dir/{saved_model/, ensemble.json,
    plan.json, frontier.png}``.

    ``transform_dir``: the dataset's transform_fn (``Dataset.transform_path``), applied in the merged graph
    to compute the video-level members' features from raw records (``yt8m.export``). ``holdout_data``: the
    holdout's frame-level files; when given, the served graph is scored on them before and after
    compression (else only the members' prediction files are used). ``soft_labels`` (``topk`` | ``full``;
    empty: none): write the chosen combiner's scores as teacher files (``write_soft_labels``) into
    ``soft_label_dir`` (default ``output_dir/teacher``).
    ``teacher_report``: the ``ensemble.json`` of the ensemble these members were distilled from; its GAPs
    are reported beside the members' and the combiners' (``report["teacher"]``). ``stacking_settings``: the
    stacker's learning rate, rounds and early stopping (the run config's ``ensemble.stacking``)."""
    if combiner not in COMBINERS:
        raise ValueError(f"combiner: expected one of {', '.join(COMBINERS)}, got {combiner!r}")
    compression_lib.check_method(compression)
    threshold = compression_lib.DEFAULT_MIN_ELEMENTS if quantize_min_elements is None else quantize_min_elements
    members, reports = [], []
    for d in member_dirs:
        cfg = config_lib.load_model_config(storage.join(d, "model_config.yaml"))
        members.append(export.member_from_weights(cfg.name, config_lib.to_dict(cfg),
                                                   storage.join(d, "model.weights.h5"), num_classes))
        reports.append(storage.read_json(storage.join(d, "metrics.json")))
    names = [m.name for m in members]
    tables = {"oof": topk_table([storage.join(d, "oof_predictions.npz") for d in member_dirs], oof_labels),
              "holdout": topk_table([storage.join(d, "holdout_predictions.npz") for d in member_dirs],
                                    holdout_labels)}
    sizes = {m.name: {method: compression_lib.report_bytes(export.size_report(m, method, threshold))
                      for method in compression_lib.METHODS} for m in members}
    report = {"members": [], "combiner": combiner, "compression": compression, "quantize_min_elements": threshold,
              "size_budget_bytes": int(size_budget_bytes)}
    for i, (d, r) in enumerate(zip(member_dirs, reports)):
        onehot = np.eye(len(members))[i]
        report["members"].append({"name": r["name"], "family": r["family"], "oof_gap": tables["oof"].gap(onehot),
                                  "holdout_gap": tables["holdout"].gap(onehot), "parameters": r["parameters"],
                                  "saved_model_bytes": r["saved_model_bytes"], "tensor_bytes": sizes[r["name"]],
                                  "dir": d})
    report["combiners"] = {}
    stackers = StackerCache(tables["oof"], oof_labels, num_classes, stacking_settings)
    for name in COMBINERS:
        if name == "stacking":
            stacker = stackers.get(range(len(names)))
            oof_gap = stacker.report["oof_gap"]
            report["combiners"][name] = {"oof_gap": oof_gap, "oof_gap_kind": "cross-fitted (two halves)",
                                         "fitted_videos": stacker.report["fitted_videos"],
                                         "holdout_gap": union_gap(tables["holdout"],
                                                                  stacked_scores(stacker, tables["holdout"])),
                                         "rounds": stacker.report["rounds"], "k": stacker.k,
                                         "candidates": stacker.report["candidates"]}
        else:
            w, oof_gap = combiner_weights(tables["oof"], name)
            report["combiners"][name] = {"weights": dict(zip(names, w.tolist())), "oof_gap": oof_gap,
                                         "holdout_gap": tables["holdout"].gap(w)}
        log.info("combiner %s over all %d members: OOF GAP@20 %.4f, holdout %.4f (members OOF: %s)", name,
                 len(members), oof_gap, report["combiners"][name]["holdout_gap"],
                 ", ".join(f"{m['name']} {m['oof_gap']:.4f}" for m in report["members"]))

    merged_dir = storage.join(output_dir, "saved_model")
    reserve = None
    score, scoring = plan_scorer(stackers) if combiner == "stacking" else (None, "")
    for attempt in range(2):
        plan = planner.plan(tables["oof"], names, sizes, size_budget_bytes, combiner, compression, reserve,
                            score=score, scoring=scoring)
        chosen = [names.index(n) for n in plan.chosen.members]
        chosen_members = [members[i] for i in chosen]
        weights, methods = list(plan.chosen.weights), list(plan.chosen.precisions)
        stacker = stackers.get(chosen) if combiner == "stacking" else None
        saved_bytes = export.export_serving_model(chosen_members, merged_dir, weights, threshold,
                                                  transform_dir=transform_dir, compression=methods, stacker=stacker)
        # The graph's own bytes (signatures, transform_fn, codebooks), measured on the export: when the plan
        # reserved too few, plan once more with the measured reserve (+10%).
        graph_bytes = saved_bytes - plan.chosen.size_bytes
        if attempt or saved_bytes <= size_budget_bytes:
            break
        reserve = int(graph_bytes * 1.1)
        log.info("the graph is %.2f MB, more than the planner's reserve (%.2f MB): planning again with %.2f MB",
                 graph_bytes / 1e6, plan.reserve_bytes / 1e6, reserve / 1e6)
        storage.gfile.rmtree(merged_dir)
    planner.write_plan(plan, output_dir)
    report["plan"] = {"members": plan.chosen.members, "precisions": methods, "weights": weights,
                      "planned_tensor_bytes": plan.chosen.size_bytes, "reserve_bytes": plan.reserve_bytes,
                      "measured_graph_bytes": graph_bytes, "method": plan.search, "combiner": plan.combiner,
                      "scoring": plan.scoring}
    report["weights"] = weights
    chosen_tables = {split: t.subset(chosen) for split, t in tables.items()}
    if stacker is not None:
        stacker.save(output_dir)
        combined = {"oof": stacker.oof_scores, "holdout": stacked_scores(stacker, chosen_tables["holdout"])}
        report["oof_gap"] = stacker.report["oof_gap"]
        report["stacker"] = {k: v for k, v in stacker.report.items() if k != "params"}
    else:
        combined = {split: np.where(t.classes >= 0, np.tensordot(np.asarray(weights, np.float32), t.scores, axes=1),
                                    0.0) for split, t in chosen_tables.items()}
        report["oof_gap"] = plan.chosen.oof_gap
    report["holdout_gap"] = union_gap(chosen_tables["holdout"], combined["holdout"])
    if soft_labels:
        chosen_dirs = [member_dirs[i] for i in chosen]
        have_full = all(storage.gfile.exists(storage.join(d, kfold.OOF_FULL_FILE)) for d in chosen_dirs)
        full = ({split: full_teacher(t, full_member_scores(chosen_dirs, split, t.video_ids), weights,
                                     combined[split] if stacker is not None else None)
                 for split, t in chosen_tables.items()} if have_full or soft_labels == "full" else None)
        report["soft_labels"] = write_soft_labels(chosen_tables, combined,
                                                  soft_label_dir or storage.join(output_dir, TEACHER_DIR),
                                                  num_classes, soft_labels, soft_label_top_k, full=full)
    if teacher_report:
        report["teacher"] = {"members": {m["name"]: {"oof_gap": m["oof_gap"], "holdout_gap": m["holdout_gap"]}
                                         for m in teacher_report.get("members", [])},
                             "combiner": teacher_report.get("combiner"), "oof_gap": teacher_report.get("oof_gap"),
                             "holdout_gap": teacher_report.get("holdout_gap")}
        log.info("students vs their teacher (%s ensemble, holdout GAP@20 %.4f): %s; student ensemble %.4f",
                 report["teacher"]["combiner"], report["teacher"]["holdout_gap"] or 0.0,
                 ", ".join(f"{m['name']} {m['holdout_gap']:.4f}" for m in report["members"]), report["holdout_gap"])
    log.info("plan: %s at %s, weights %s: OOF GAP@20 %.4f, holdout %.4f, %.1f MB of tensors (budget %.1f MB)",
             plan.chosen.members, methods, [round(w, 3) for w in weights], report["oof_gap"], report["holdout_gap"],
             plan.chosen.size_bytes / 1e6, size_budget_bytes / 1e6)
    report["tensors"] = [dict(row, member=m.name) for m, method in zip(chosen_members, methods)
                         for row in export.size_report(m, method, threshold)]
    report["tensor_bytes"] = compression_lib.report_bytes(report["tensors"])
    report["tensor_fp32_bytes"] = int(sum(r["fp32_bytes"] for r in report["tensors"]))
    report["tensor_compression_ratio"] = report["tensor_fp32_bytes"] / max(report["tensor_bytes"], 1)
    fp32_dir = storage.join(output_dir, "unquantized_saved_model")
    report["fp32_bytes"] = export.export_serving_model(chosen_members, fp32_dir, weights, threshold,
                                                       transform_dir=transform_dir, compression="none",
                                                       stacker=stacker)
    if holdout_data:
        ids, served, result = _served_holdout(fp32_dir, holdout_data, num_classes)
        report["served_fp32_holdout"] = result
        report["served_vs_combiner"] = (_served_vs_stacker(ids, served, chosen_tables["holdout"], stacker)
                                        if stacker is not None else
                                        _served_vs_combiner(ids, served, chosen_tables["holdout"], weights))
    storage.gfile.rmtree(fp32_dir)  # measured for the report only
    report["saved_model_bytes"] = saved_bytes
    report["compression_ratio"] = report["fp32_bytes"] / report["saved_model_bytes"]
    report["within_size_budget"] = report["saved_model_bytes"] <= size_budget_bytes
    if not report["within_size_budget"]:
        log.warning("the merged graph is %s bytes, over the size budget %s (the planner reserved %s bytes for the "
                    "graph)", f"{report['saved_model_bytes']:,}", f"{size_budget_bytes:,}", f"{plan.reserve_bytes:,}")
    if holdout_data:
        _, _, result = _served_holdout(merged_dir, holdout_data, num_classes)
        report["served_compressed_holdout"] = result
        report["holdout_gap_fp32"] = report["served_fp32_holdout"]["gap"]
        report["holdout_gap_compressed"] = result["gap"]
        report["compression_gap_loss"] = report["holdout_gap_fp32"] - report["holdout_gap_compressed"]
        log.info("served holdout GAP@20: %.5f float32 -> %.5f compressed (%s); served vs combiner max |diff| %s",
                 report["holdout_gap_fp32"], report["holdout_gap_compressed"], methods,
                 report["served_vs_combiner"]["max_abs_diff"])
    log.info("merged graph: %.1f MB (%.2fx smaller than fp32 %.1f MB)", report["saved_model_bytes"] / 1e6,
             report["compression_ratio"], report["fp32_bytes"] / 1e6)
    storage.write_json(storage.join(output_dir, "ensemble.json"), report)
    return report
