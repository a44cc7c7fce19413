"""Stacking: a LightGBM model over candidate classes, trained on the members' out-of-fold predictions.

The 2018 2nd-place team's second level (Samsung AI Moscow, twoleggedeye/youtube8m; YT8M_FACTS.md):
per video, the candidates are the union of every member's top-k classes; each (video, class) candidate
is a row with the features below; a gradient-boosted binary classifier scores it; classes that are no
member's candidate score 0.

Features of a candidate (``FEATURES``): the class id; the class prior (its frequency among the training
videos); per member its score (0 outside its top k) and its rank in its top k (1 = best; k + 1 outside);
the members' mean score and how many members have the class in their top k.

Training (``fit_stacker``): early stopping on the log loss of held-out videos. The stacker's own
out-of-fold GAP is CROSS-FITTED (two halves of the videos by a stable hash of the id: trained on one,
scored on the other), so it is comparable with the members' OOF GAP; the final stacker is trained on all
videos for the mean of the halves' best iteration counts.

In the served graph (``StackerModule``) the trees run as TensorFlow ops: LightGBM's ``dump_model`` trees
flattened into node arrays (feature, threshold, children, leaf value; a leaf points to itself) and
traversed with gathers, ``max_depth`` steps for every tree at once, in float64 like LightGBM; the rows are
the candidates only (each member's ``tf.math.top_k``), scattered back to a dense [batch, classes] output.
Its scores equal ``Booster.predict`` on the same features (checked to 1e-6 in the tests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import numpy as np
import tensorflow as tf

from yt8m import metrics, storage

log = logging.getLogger(__name__)

STACKER_FILE = "stacker.json"
DEFAULT_PARAMS = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
                  "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
                  "verbosity": -1, "num_threads": 0, "deterministic": True, "force_row_wise": True}
MAX_ROUNDS = 500
# Below this many training rows LightGBM runs on one thread: its OpenMP threads meet at a barrier after every
# histogram, and on a busy machine (two kfp.local tasks, a test worker beside another) a descheduled thread stalls
# every barrier: 46 s instead of 1.1 s for six small fits in the test suite. On one idle thread a 20,000-row fit is
# as fast as on two (0.30 s vs 0.35 s, 100 rounds, 12 features); from ~200,000 rows the threads pay (2.5 s vs 2.1 s).
SINGLE_THREAD_ROWS = 100_000
EARLY_STOPPING_ROUNDS = 30


def feature_names(num_members: int) -> list[str]:
    names = ["class_id", "class_prior"]
    for m in range(num_members):
        names += [f"score_{m}", f"rank_{m}"]
    return names + ["mean_score", "members_with_class"]


# ------------------------------------------------------------------------------------------ features

def member_ranks(scores: np.ndarray, present: np.ndarray, k: int) -> np.ndarray:
    """Rank of each score among the SAME member's top-k scores of the video (1 + how many are strictly
    greater), k + 1 where the class is not in its top k. ``scores``/``present``: [M, N, U]."""
    masked = np.where(present, scores, -np.inf)
    greater = np.zeros(scores.shape, np.int64)
    m, n, u = scores.shape
    block = max(1, 20_000_000 // max(m * u * u, 1))  # bounded memory for the pairwise comparison
    for start in range(0, n, block):
        part = masked[:, start:start + block]
        greater[:, start:start + block] = (part[:, :, None, :] > part[:, :, :, None]).sum(axis=3)
    return np.where(present, 1 + greater, k + 1).astype(np.float64)


def candidate_features(classes: np.ndarray, scores: np.ndarray, present: np.ndarray, prior: np.ndarray,
                       k: int) -> np.ndarray:
    """[R, F] float64 features of the candidates ``classes >= 0`` of a [N, U] candidate table (row-major)."""
    valid = classes >= 0
    ranks = member_ranks(scores, present, k)
    cls = np.where(valid, classes, 0)
    columns = [cls.astype(np.float64), prior[cls].astype(np.float64)]
    for m in range(scores.shape[0]):
        columns += [np.where(present[m], scores[m], 0.0).astype(np.float64), ranks[m]]
    columns += [np.where(present, scores, 0.0).astype(np.float64).mean(axis=0), present.sum(axis=0).astype(np.float64)]
    return np.stack([c[valid] for c in columns], axis=1)


def class_prior(labels: dict[str, list[int]], num_classes: int) -> np.ndarray:
    """Fraction of the videos carrying each class."""
    counts = np.zeros(num_classes, np.float64)
    for label_list in labels.values():
        counts[np.unique(np.asarray(label_list, np.int64))] += 1
    return counts / max(len(labels), 1)


def table_gap(classes: np.ndarray, relevant: np.ndarray, scores: np.ndarray, num_positives: int, k: int) -> float:
    """GAP@k of [N, U] candidate scores (pads ``classes < 0`` never ranked); ``ensemble.TopKTable.gap`` uses it."""
    comb = np.where(classes >= 0, scores, -np.inf)
    top = np.argsort(-comb, axis=1, kind="stable")[:, :min(k, comb.shape[1])]
    s = np.take_along_axis(comb, top, axis=1)
    rel = np.take_along_axis(relevant, top, axis=1) & np.isfinite(s)
    return metrics._pooled_average_precision(np.where(np.isfinite(s), s, -1.0).ravel(), rel.ravel(), num_positives)


def _stable_half(video_id: str) -> int:
    return hashlib.sha256(video_id.encode()).digest()[0] & 1


# ------------------------------------------------------------------------------------------ the model

@dataclasses.dataclass
class Stacker:
    model: str  # LightGBM's model_to_string()
    num_members: int
    k: int
    prior: np.ndarray  # [C]
    report: dict = dataclasses.field(default_factory=dict)
    # The cross-fitted [N, U] scores of the table it was fitted on (not saved): its honest OOF predictions,
    # e.g. the soft labels of the next distillation round.
    oof_scores: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def booster(self):
        import lightgbm

        return lightgbm.Booster(model_str=self.model)

    def predict(self, classes: np.ndarray, scores: np.ndarray, present: np.ndarray) -> np.ndarray:
        """[N, U] stacked scores of a candidate table (0 at pads)."""
        out = np.zeros(classes.shape, np.float64)
        features = candidate_features(classes, scores, present, self.prior, self.k)
        if features.size:
            out[classes >= 0] = self.booster().predict(features)
        return out

    def save(self, directory: str) -> str:
        path = storage.join(directory, STACKER_FILE)
        storage.write_json(path, {"model": self.model, "num_members": self.num_members, "k": self.k,
                                  "prior": self.prior.tolist(), "report": self.report})
        return path

    @classmethod
    def load(cls, directory: str) -> "Stacker":
        raw = storage.read_json(storage.join(directory, STACKER_FILE))
        return cls(raw["model"], int(raw["num_members"]), int(raw["k"]), np.asarray(raw["prior"], np.float64),
                   raw.get("report", {}))


def lightgbm_threads(rows: int, requested: int = 0) -> int:
    """LightGBM's ``num_threads`` for a fit on ``rows`` rows: 1 below ``SINGLE_THREAD_ROWS``, else ``requested``
    (0: OpenMP's default, every core)."""
    return 1 if rows < SINGLE_THREAD_ROWS else requested


def _train(features, targets, valid_features, valid_targets, params: dict, rounds: int | None,
           max_rounds: int = MAX_ROUNDS, early_stopping_rounds: int = EARLY_STOPPING_ROUNDS):
    import lightgbm

    params = {**params, "num_threads": lightgbm_threads(len(features), params.get("num_threads", 0))}
    train = lightgbm.Dataset(features, targets, feature_name=None, free_raw_data=False)
    if rounds is not None:
        return lightgbm.train(params, train, num_boost_round=rounds)
    valid = lightgbm.Dataset(valid_features, valid_targets, reference=train)
    return lightgbm.train(params, train, num_boost_round=max_rounds, valid_sets=[valid],
                          callbacks=[lightgbm.early_stopping(early_stopping_rounds, verbose=False)])


def fit_stacker(video_ids: list[str], classes: np.ndarray, scores: np.ndarray, present: np.ndarray,
                relevant: np.ndarray, num_positives: int, prior: np.ndarray, k: int = 20, seed: int = 0,
                params: dict | None = None, max_rounds: int = MAX_ROUNDS,
                early_stopping_rounds: int = EARLY_STOPPING_ROUNDS) -> Stacker:
    """Fit on a candidate table (members' OOF predictions; see the module doc); report the cross-fitted GAP.
    ``params`` override ``DEFAULT_PARAMS``; ``max_rounds`` caps the early-stopped halves' boosting rounds, which
    stop after ``early_stopping_rounds`` without progress on the other half."""
    params = {**DEFAULT_PARAMS, **(params or {}), "seed": seed}
    halves = np.asarray([_stable_half(v) for v in video_ids])
    if len(set(halves.tolist())) < 2:
        raise ValueError(f"stacking needs videos in both halves of the OOF predictions; got {len(video_ids)} videos")
    cross_fitted = np.zeros(classes.shape, np.float64)
    best = []
    for h in (0, 1):
        fit_rows, eval_rows = halves != h, halves == h

        def part(rows):
            return (candidate_features(classes[rows], scores[:, rows], present[:, rows], prior, k),
                    relevant[rows][classes[rows] >= 0].astype(np.float64))

        (xf, yf), (xe, ye) = part(fit_rows), part(eval_rows)
        booster = _train(xf, yf, xe, ye, params, None, max_rounds, early_stopping_rounds)
        best.append(max(1, booster.best_iteration or booster.current_iteration()))
        block = np.zeros(classes[eval_rows].shape, np.float64)
        block[classes[eval_rows] >= 0] = booster.predict(xe, num_iteration=best[-1])
        cross_fitted[eval_rows] = block
    rounds = int(round(np.mean(best)))
    x_all = candidate_features(classes, scores, present, prior, k)
    final = _train(x_all, relevant[classes >= 0].astype(np.float64), None, None, params, rounds)
    report = {"cross_fitted_oof_gap": table_gap(classes, relevant, cross_fitted, num_positives, k),
              "rounds": rounds, "best_iterations_per_half": best, "candidates": int(x_all.shape[0]),
              "features": feature_names(scores.shape[0]), "params": params}
    log.info("stacker: cross-fitted OOF GAP@20 %.4f (%d rounds, %d candidates, %d members)",
             report["cross_fitted_oof_gap"], rounds, x_all.shape[0], scores.shape[0])
    return Stacker(final.model_to_string(), scores.shape[0], k, prior.astype(np.float64), report, cross_fitted)


# ------------------------------------------------------------------------------------------ in the graph

def flatten_trees(dumped: dict) -> dict[str, np.ndarray]:
    """LightGBM ``dump_model()`` -> node arrays of all trees: feature, threshold, left, right, value, roots."""
    feature, threshold, left, right, value, roots = [], [], [], [], [], []
    depth = 0

    def add(node, level) -> int:
        nonlocal depth
        index = len(feature)
        feature.append(0), threshold.append(np.inf), left.append(index), right.append(index), value.append(0.0)
        if "leaf_value" in node:
            value[index] = float(node["leaf_value"])
            depth = max(depth, level)
            return index
        if node.get("decision_type") != "<=" or str(node.get("missing_type")) not in ("None", "NaN"):
            raise ValueError(f"unsupported LightGBM split {node.get('decision_type')} / {node.get('missing_type')}: "
                             "the in-graph stacker handles numerical '<=' splits without zero-as-missing")
        feature[index], threshold[index] = int(node["split_feature"]), float(node["threshold"])
        left[index] = add(node["left_child"], level + 1)
        right[index] = add(node["right_child"], level + 1)
        return index

    for tree in dumped["tree_info"]:
        roots.append(add(tree["tree_structure"], 0))
    return {"feature": np.asarray(feature, np.int32), "threshold": np.asarray(threshold, np.float64),
            "left": np.asarray(left, np.int32), "right": np.asarray(right, np.int32),
            "value": np.asarray(value, np.float64), "roots": np.asarray(roots, np.int32),
            "depth": np.asarray(depth, np.int32)}


class StackerModule(tf.Module):
    """The stacker as TensorFlow ops: member score tensors [B, C] in, stacked scores [B, C] out."""

    def __init__(self, stacker: Stacker, name: str = "stacker"):
        super().__init__(name=name)
        nodes = flatten_trees(stacker.booster().dump_model())
        self.depth = int(nodes["depth"])
        self.k = stacker.k
        self.num_members = stacker.num_members
        self.feature = tf.constant(nodes["feature"])
        self.threshold = tf.constant(nodes["threshold"])
        self.left = tf.constant(nodes["left"])
        self.right = tf.constant(nodes["right"])
        self.value = tf.constant(nodes["value"])
        self.roots = tf.constant(nodes["roots"])
        self.prior = tf.constant(stacker.prior, tf.float64)

    def features(self, member_scores: list):
        """(candidate features [R, F] float64, candidate (batch, class) indices [R, 2])."""
        if len(member_scores) != self.num_members:
            raise ValueError(f"the stacker was fitted on {self.num_members} members, got {len(member_scores)}")
        dense_scores, dense_ranks, present = [], [], []
        for s in member_scores:
            s = tf.cast(s, tf.float32)
            values, indices = tf.math.top_k(s, k=self.k)
            rank = 1 + tf.reduce_sum(tf.cast(values[:, None, :] > values[:, :, None], tf.int32), axis=2)
            shape = tf.shape(s)
            rows = tf.broadcast_to(tf.range(shape[0])[:, None], tf.shape(indices))
            where = tf.stack([rows, indices], axis=-1)
            hit = tf.scatter_nd(where, tf.ones_like(indices, tf.bool), shape)
            present.append(hit)
            dense_scores.append(tf.where(hit, tf.cast(s, tf.float64), 0.0))
            dense_ranks.append(tf.where(hit, tf.cast(tf.scatter_nd(where, rank, shape), tf.float64),
                                        float(self.k + 1)))
        candidate = tf.where(tf.reduce_any(tf.stack(present), axis=0))  # [R, 2] (batch, class), row-major
        cls = candidate[:, 1]
        columns = [tf.cast(cls, tf.float64), tf.gather(self.prior, cls)]
        for s, r in zip(dense_scores, dense_ranks):
            columns += [tf.gather_nd(s, candidate), tf.gather_nd(r, candidate)]
        columns += [tf.add_n(columns[2::2]) / float(self.num_members),
                    tf.add_n([tf.cast(tf.gather_nd(p, candidate), tf.float64) for p in present])]
        return tf.stack(columns, axis=1), candidate

    def raw_score(self, features):
        """Sum of the trees' leaf values for each row of ``features`` [R, F]."""
        rows = tf.shape(features)[0]
        node = tf.broadcast_to(self.roots[None, :], [rows, tf.shape(self.roots)[0]])
        row_index = tf.broadcast_to(tf.range(rows)[:, None], tf.shape(node))
        for _ in range(self.depth):
            x = tf.gather_nd(features, tf.stack([row_index, tf.gather(self.feature, node)], axis=-1))
            node = tf.where(x <= tf.gather(self.threshold, node), tf.gather(self.left, node), tf.gather(self.right, node))
        return tf.reduce_sum(tf.gather(self.value, node), axis=1)

    def __call__(self, member_scores: list):
        features, candidate = self.features(member_scores)
        probs = tf.sigmoid(self.raw_score(features))
        shape = tf.shape(member_scores[0], out_type=tf.int64)
        return tf.cast(tf.scatter_nd(candidate, probs, shape), tf.float32)


def stacker_summary(stacker: Stacker) -> str:
    return json.dumps({k: v for k, v in stacker.report.items() if k != "params"})
