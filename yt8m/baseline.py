"""The mean-pooled logistic baseline: what a FIRST release must beat (there is no previous one to compare).

The starter code's ``LogisticModel`` (google/youtube-8m ``video_level_models.py``): one sigmoid
layer over the video-level mean features, trained here on the run's training splits and scored on
its holdout. Cheap (one dense layer), so the gate can afford it: the number of passes over the data
shrinks with its size (``passes_for``), about 200,000 examples seen in total and at least one pass.
"""

from __future__ import annotations

import logging
import math
import time

import keras
import numpy as np
import tensorflow as tf

from yt8m import metrics, readers
from yt8m.models import registry

log = logging.getLogger(__name__)

EXAMPLES_TO_SEE = 200_000
MAX_PASSES = 30
BATCH_SIZE = 128
LEARNING_RATE = 0.01  # the starter's video-level logistic runs use Adam 0.01


def passes_for(num_videos: int) -> int:
    """Passes over ``num_videos`` training videos: ~EXAMPLES_TO_SEE examples, 1 to MAX_PASSES passes."""
    return max(1, min(MAX_PASSES, math.ceil(EXAMPLES_TO_SEE / max(num_videos, 1))))


def _summed_bce(labels, probs):
    """The references' loss: binary cross-entropy summed over classes, averaged over the batch."""
    eps = 10e-6  # WILLOW losses.py
    labels = tf.cast(labels, probs.dtype)
    per_class = -(labels * tf.math.log(probs + eps) + (1 - labels) * tf.math.log(1 - probs + eps))
    return tf.reduce_sum(per_class, axis=1)


def logistic_baseline_gap(train_files: list[str], holdout_files: list[str], num_classes: int,
                          num_train_videos: int, seed: int = 0) -> float:
    """GAP@20 on ``holdout_files`` (video level) of a logistic trained on ``train_files`` (video level)."""
    started = time.time()
    keras.utils.set_random_seed(seed)
    model = registry.build_model("logistic", num_classes, "small")
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE, epsilon=1e-8), loss=_summed_bce)
    passes = passes_for(num_train_videos)
    steps = passes * math.ceil(num_train_videos / BATCH_SIZE)
    train = readers.video_level_dataset(train_files, num_classes, BATCH_SIZE, training=True, repeat=True, seed=seed)
    model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0)
    holdout = readers.video_level_dataset(holdout_files, num_classes, 1024)
    scores, labels = [], []
    for features, multi_hot in holdout:
        scores.append(model(features, training=False).numpy())
        labels.append(multi_hot.numpy())
    gap = metrics.gap_at_k(np.concatenate(scores), np.concatenate(labels))
    log.info("mean-pooled logistic baseline: holdout GAP@20 %.4f (%d passes over %d training videos, %.0fs)",
             gap, passes, num_train_videos, time.time() - started)
    return gap
