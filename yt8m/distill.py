"""Soft labels / distillation: teacher scores looked up by video id, and the mixed BCE loss.

The teacher file is a ``predictions.save_topk`` npz (top-k classes and scores per video id,
e.g. a member's or a stacker's out-of-fold predictions). It stays sparse in memory
(``[N, k]`` classes and scores: 6.1M videos x 20 ~ 1 GB instead of ``[N, 3862]``): a
``tf.lookup.StaticHashTable`` maps a video id to its row, the batch's rows are gathered and
scattered into a dense ``[B, C]`` target inside the input pipeline. Or it is a full teacher
(``predictions.save_full`` .npy, every class, float16: 7,724 bytes per video at 3,862 classes, 47 GB for
6.1M videos): memory-mapped, the batch's rows read by ``tf.numpy_function`` (only the rows touched are
paged in; a gs:// file is read whole into memory, so give a local or /gcs/ fuse path at scale). Videos the
teacher does not know keep their hard labels as the teacher target (so their loss is plain BCE).

Loss (YT8M_FACTS.md, "Distillation"): ``l * BCE(p, teacher) + (1 - l) * BCE(p, labels)``, each BCE on
the references' scale: summed over classes (``bce``).
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from yt8m import predictions, storage

log = logging.getLogger(__name__)


# WILLOW losses.py CrossEntropyLoss (antoine77340/Youtube-8M-WILLOW, commit 8a0e700):
#   epsilon = 10e-6; loss = -(y*log(p + epsilon) + (1-y)*log(1 - p + epsilon))  (their alpha = 0.5 and
#   the factor 2 cancel), then tf.reduce_mean(tf.reduce_sum(loss, 1)): SUM over classes, mean over the
#   batch. google/youtube-8m losses.py is the same with epsilon = 10e-8.
BCE_EPSILON = 10e-6


def bce(targets, probs):
    """Per-example binary cross-entropy, SUMMED over classes, on probabilities (WILLOW/starter
    ``CrossEntropyLoss``, epsilon 1e-5 inside the logs, no clipping); the trainer averages it over
    the batch with ``tf.nn.compute_average_loss``, which gives the references' ``reduce_mean``."""
    probs = tf.convert_to_tensor(probs)
    targets = tf.cast(targets, probs.dtype)
    per_class = targets * tf.math.log(probs + BCE_EPSILON) + (1.0 - targets) * tf.math.log(1.0 - probs + BCE_EPSILON)
    return -tf.reduce_sum(per_class, axis=-1)


def distillation_loss(labels, teacher, probs, weight: float):
    """Per-example ``weight * BCE(probs, teacher) + (1 - weight) * BCE(probs, labels)`` (each ``bce``:
    summed over classes, so a distilled loss is on the same scale as a plain one)."""
    return weight * bce(teacher, probs) + (1.0 - weight) * bce(labels, probs)


def resolve_teacher_path(path: str, data_dir: str | None) -> str:
    """``path`` as given if it exists (absolute, gs:// or relative to the working directory), else beside the data."""
    if storage.gfile.exists(path) or path.startswith("gs://") or data_dir is None:
        return path
    beside = storage.join(data_dir, path)
    return beside if storage.gfile.exists(beside) else path


class TeacherTable:
    """Teacher top-k scores by video id; ``targets(ids, labels)`` -> dense ``[B, C]`` float32."""

    def __init__(self, path: str, num_classes: int):
        if not storage.gfile.exists(path):
            raise FileNotFoundError(f"teacher predictions {path!r} not found")
        self.full = predictions.is_full(path)
        data = predictions.load_full(path) if self.full else predictions.load_topk(path)
        if data["num_classes"] != num_classes:
            raise ValueError(f"teacher predictions {path} have {data['num_classes']} classes, the model "
                             f"{num_classes}")
        self.path, self.num_classes = path, num_classes
        self.size = len(data["video_ids"])
        if len(set(data["video_ids"])) != self.size:
            raise ValueError(f"teacher predictions {path}: repeated video ids")
        if self.full:
            self.dense_scores = data["scores"]  # float16 [N, C], memory-mapped
            self.classes = self.scores = None
        else:
            self.classes = tf.constant(data["classes"].astype(np.int32))
            self.scores = tf.constant(data["scores"].astype(np.float32))
        keys = tf.constant(data["video_ids"] or [""], tf.string)
        values = tf.range(max(self.size, 1), dtype=tf.int64) if self.size else tf.constant([-1], tf.int64)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)
        log.info("teacher predictions %s: %d videos, %s", path, self.size,
                 "every class (float16)" if self.full else f"top {int(self.classes.shape[1])}")

    def rows(self, ids):
        """Row of each video id in the teacher file, -1 if absent."""
        return self.table.lookup(ids)

    def dense(self, ids):
        """``(scores [B, C], found [B])``: the teacher's scores (0 outside its top k, all 0 if absent)."""
        rows = self.rows(ids)
        found = rows >= 0
        safe = tf.where(found, rows, 0)
        if self.full:
            table = self.dense_scores

            def read(r):
                return np.asarray(table[np.sort(r)][np.argsort(np.argsort(r))], np.float32) if len(r) else \
                    np.zeros((0, self.num_classes), np.float32)

            dense = tf.numpy_function(read, [safe], tf.float32, stateful=False)
            dense = tf.ensure_shape(dense, [None, self.num_classes]) * tf.cast(found, tf.float32)[:, None]
            return dense, found
        classes = tf.gather(self.classes, safe)  # [B, k]
        scores = tf.gather(self.scores, safe) * tf.cast(found, tf.float32)[:, None]
        batch = tf.shape(classes)[0]
        k = tf.shape(classes)[1]
        row_index = tf.repeat(tf.range(batch), k)
        indices = tf.stack([row_index, tf.reshape(classes, [-1])], axis=1)
        dense = tf.scatter_nd(indices, tf.reshape(scores, [-1]), tf.stack([batch, self.num_classes]))
        return dense, found

    def targets(self, ids, labels):
        """Teacher scores where the teacher knows the video, else the hard ``labels``."""
        dense, found = self.dense(ids)
        return tf.where(found[:, None], dense, labels)
