"""The mean-pooled logistic baseline: what a FIRST release must beat (there is no previous one to compare).

The starter code's ``LogisticModel`` (google/youtube-8m ``video_level_models.py``): one sigmoid
layer over the L2-normalised video-level mean features, Adam at the starter's 0.01, trained here on
the run's training splits and scored on its holdout.

Trained to convergence, not for a fixed count: every ``VALIDATION_EVERY``-th training record (file
order, so the same ones every run) is held back, GAP@20 on them is measured after each pass over the
rest (or every ``EVAL_EXAMPLES`` examples when a pass is shorter), and the weights of the best
evaluation are scored on the holdout; training stops after ``PATIENCE`` evaluations without a better
one, or at ``MAX_EXAMPLES`` examples seen (at least one pass). A logistic
stopped after a fixed 30 passes sat 0.11-0.15 GAP below its converged self on four generated
datasets (200 noisy classes: 0.319 vs 0.427; benchmarks/results/video_members.md), so the gate
compared releases with a baseline weaker than a user's own.
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

MAX_EXAMPLES = 1_000_000  # a cap on the work: ~400 passes over 2,500 videos, one pass over >= 1M
EVAL_EXAMPLES = 10_000  # validation GAP after every pass, or every this many examples if a pass is shorter
PATIENCE = 5  # evaluations without a better validation GAP before stopping
VALIDATION_EVERY = 10  # every 10th training record (file order) is validation ...
MAX_VALIDATION = 20_000  # ... up to this many
BATCH_SIZE = 128
VIDEO_BYTES = 4 * (1024 + 128) + 64  # a parsed video-level example in memory, roughly (float32 means, labels)
MAX_CACHE_BYTES = 2 << 30  # training sets up to ~450,000 videos are parsed once and kept in memory
LEARNING_RATE = 0.01  # the starter's video-level logistic runs use Adam 0.01


def evaluation_schedule(num_videos: int) -> tuple[int, int]:
    """(steps between validation GAPs, evaluations allowed) for ``num_videos`` training videos: a pass or
    ``EVAL_EXAMPLES`` examples, whichever is longer; ``MAX_EXAMPLES`` examples in all, at least one pass."""
    steps = max(math.ceil(max(num_videos, 1) / BATCH_SIZE), math.ceil(EVAL_EXAMPLES / BATCH_SIZE))
    return steps, max(1, MAX_EXAMPLES // (steps * BATCH_SIZE))


def _summed_bce(labels, probs):
    """The references' loss: binary cross-entropy summed over classes, averaged over the batch."""
    eps = 10e-6  # WILLOW losses.py
    labels = tf.cast(labels, probs.dtype)
    per_class = -(labels * tf.math.log(probs + eps) + (1 - labels) * tf.math.log(1 - probs + eps))
    return tf.reduce_sum(per_class, axis=1)


def _split(files: list[str], num_classes: int, seed: int, cache: bool):
    """(training batches, repeated and shuffled; validation batches): every ``VALIDATION_EVERY``-th record
    in file order is validation (capped at ``MAX_VALIDATION``)."""
    def stream():
        return readers.video_level_dataset(sorted(files), num_classes, 1024).unbatch().enumerate()

    def strip(_index, example):
        return example

    train = stream().filter(lambda i, _e: i % VALIDATION_EVERY != 0).map(strip)
    if cache:  # parse once, not once a pass (a pass of a few thousand videos is mostly parsing)
        train = train.cache()
    train = (train.shuffle(readers.VIDEO_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
             .repeat().batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE))
    validation = (stream().filter(lambda i, _e: i % VALIDATION_EVERY == 0).map(strip)
                  .take(MAX_VALIDATION).batch(1024).cache())
    return train, validation


def _scores_and_labels(model, batches) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = [], []
    for features, multi_hot in batches:
        scores.append(model(features, training=False).numpy())
        labels.append(multi_hot.numpy())
    return np.concatenate(scores), np.concatenate(labels)


def logistic_baseline_gap(train_files: list[str], holdout_files: list[str], num_classes: int,
                          num_train_videos: int, seed: int = 0) -> float:
    """GAP@20 on ``holdout_files`` (video level) of a logistic trained to convergence on ``train_files``."""
    started = time.time()
    keras.utils.set_random_seed(seed)
    model = registry.build_model("logistic", num_classes, "small")
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE, epsilon=1e-8), loss=_summed_bce)
    train, validation = _split(train_files, num_classes, seed,
                               cache=num_train_videos * VIDEO_BYTES <= MAX_CACHE_BYTES)
    train_videos = num_train_videos - math.ceil(num_train_videos / VALIDATION_EVERY)
    steps, allowed = evaluation_schedule(train_videos)
    best_gap, best, best_weights, done = -1.0, 0, None, 0
    batches = iter(train)
    for done in range(1, allowed + 1):
        for _ in range(steps):
            model.train_on_batch(*next(batches))
        gap = metrics.gap_at_k(*_scores_and_labels(model, validation))
        if gap > best_gap:
            best_gap, best, best_weights = gap, done, model.get_weights()
        elif done - best >= PATIENCE:
            break
    model.set_weights(best_weights)
    gap = metrics.gap_at_k(*_scores_and_labels(model, readers.video_level_dataset(holdout_files, num_classes, 1024)))
    log.info("mean-pooled logistic baseline: holdout GAP@20 %.4f (best validation GAP %.4f at evaluation %d of %d, "
             "at most %d, every %d examples: %d examples seen; %d training videos, %.0fs)", gap, best_gap, best, done,
             allowed, steps * BATCH_SIZE, done * steps * BATCH_SIZE, train_videos, time.time() - started)
    return gap
