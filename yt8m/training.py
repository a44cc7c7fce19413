"""Train one model config: K fold models for out-of-fold predictions, then the final member.

Reads the preprocessed dataset layout (``DIR/{frame,video}/{fold-k,holdout}/part*``),
writes into ``output_dir``:

- ``oof_predictions.npz`` (top-k sparse, keyed by video id) and ``holdout_predictions.npz``
- ``model.weights.h5`` + ``model_config.yaml`` (the member, rebuilt by the ensembler)
- ``saved_model/`` (this member alone, serving serialized SequenceExamples)
- ``metrics.json`` (OOF and holdout GAP@20, Hit@1, PERR, mAP; examples/s; parameters)
"""

from __future__ import annotations

import logging
import time

import keras
import numpy as np
import tensorflow as tf

from yt8m import config as config_lib
from yt8m import export, metrics, predictions, readers, storage
from yt8m.models import registry

log = logging.getLogger(__name__)


def split_files(dataset_dir: str, level: str, splits: list[str]) -> list[str]:
    """Shards of the given splits (``fold-0``, ``holdout`` ...) at ``level`` ("frame" or "video")."""
    pattern = ",".join(storage.join(dataset_dir, level, s, "part*") for s in splits)
    return storage.expand_pattern(pattern, what=f"{level}-level {'/'.join(splits)}")


def make_dataset(files, input_level: str, num_classes: int, t: config_lib.TrainingConfig, training: bool,
                 include_ids: bool = False) -> tf.data.Dataset:
    batch = t.batch_size if training else t.eval_batch_size
    if input_level == "video":
        return readers.video_level_dataset(files, num_classes, batch, training=training, include_ids=include_ids,
                                           seed=t.seed)
    return readers.frame_level_dataset(files, num_classes, batch, training=training, max_frames=t.max_frames,
                                       num_samples=t.num_samples if training else None, include_ids=include_ids,
                                       seed=t.seed)


def build_compiled_model(model_config: config_lib.ModelConfig, num_classes: int) -> keras.Model:
    t = model_config.training
    keras.utils.set_random_seed(t.seed)
    model = registry.build_model(model_config.family, num_classes, model_config.preset, model_config.overrides)
    schedule = keras.optimizers.schedules.ExponentialDecay(
        t.learning_rate, decay_steps=max(1, t.lr_decay_examples // t.batch_size), decay_rate=t.lr_decay,
        staircase=True)
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=t.clip_gradient_norm),
                  loss=keras.losses.BinaryCrossentropy())
    return model


class _ThroughputLog(keras.callbacks.Callback):
    def __init__(self, label: str, batch_size: int):
        super().__init__()
        self.label, self.batch_size = label, batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.steps = time.time(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        secs = time.time() - self.start
        log.info("%s epoch %d/%d: loss %.5f, %d steps, ~%.0f examples/s", self.label, epoch + 1,
                 self.params.get("epochs", 0), (logs or {}).get("loss", float("nan")), self.steps,
                 self.steps * self.batch_size / max(secs, 1e-9))


def fit(model_config: config_lib.ModelConfig, train_files: list[str], num_classes: int, label: str) -> keras.Model:
    family = registry.get_family(model_config.family)
    model = build_compiled_model(model_config, num_classes)
    ds = make_dataset(train_files, family.input_level, num_classes, model_config.training, training=True)
    model.fit(ds, epochs=model_config.training.epochs, verbose=0,
              callbacks=[_ThroughputLog(label, model_config.training.batch_size)])
    return model


def predict(model: keras.Model, input_level: str, files: list[str], num_classes: int,
            t: config_lib.TrainingConfig) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(video ids, scores [N, C], multi-hot labels [N, C]) over ``files`` in file order."""
    predict_step = tf.function(lambda features: model(features, training=False), reduce_retracing=True)
    ids, scores, labels = [], [], []
    for features, y in make_dataset(files, input_level, num_classes, t, training=False, include_ids=True):
        video_ids = features.pop("video_id")
        scores.append(predict_step(features).numpy())
        labels.append(y.numpy())
        ids.extend(v.decode() for v in video_ids.numpy())
    return ids, np.concatenate(scores), np.concatenate(labels)


def evaluate(scores: np.ndarray, labels: np.ndarray, k: int = 20) -> dict:
    acc = metrics.EvaluationAccumulator(labels.shape[1], k=k)
    acc.add(scores, labels)
    return acc.result()


def train_member(model_config: config_lib.ModelConfig, dataset_dir: str, output_dir: str, num_classes: int,
                 folds: int, top_k: int = 20) -> dict:
    """K-fold training with out-of-fold predictions, then the final member on all folds; see module doc."""
    family = registry.get_family(model_config.family)
    level, t = family.input_level, model_config.training
    fold_names = [f"fold-{k}" for k in range(folds)]
    started = time.time()
    oof_ids, oof_scores, oof_labels = [], [], []
    for k, held in enumerate(fold_names):
        train = split_files(dataset_dir, level, [f for f in fold_names if f != held])
        log.info("%s: fold %d/%d: training on %d shards, predicting %s", model_config.name, k + 1, folds,
                 len(train), held)
        model = fit(model_config, train, num_classes, f"{model_config.name} fold {k}")
        ids, scores, labels = predict(model, level, split_files(dataset_dir, level, [held]), num_classes, t)
        oof_ids += ids
        oof_scores.append(scores)
        oof_labels.append(labels)
    oof_scores, oof_labels = np.concatenate(oof_scores), np.concatenate(oof_labels)
    oof_metrics = evaluate(oof_scores, oof_labels)
    log.info("%s: out-of-fold GAP@20 %.4f over %d videos", model_config.name, oof_metrics["gap"], len(oof_ids))

    log.info("%s: training the final member on all %d folds", model_config.name, folds)
    model = fit(model_config, split_files(dataset_dir, level, fold_names), num_classes, f"{model_config.name} final")
    hold_ids, hold_scores, hold_labels = predict(model, level, split_files(dataset_dir, level, ["holdout"]),
                                                 num_classes, t)
    holdout_metrics = evaluate(hold_scores, hold_labels)
    log.info("%s: holdout GAP@20 %.4f", model_config.name, holdout_metrics["gap"])

    storage.gfile.makedirs(output_dir)
    predictions.save_topk(storage.join(output_dir, "oof_predictions.npz"), oof_ids, oof_scores, top_k)
    predictions.save_topk(storage.join(output_dir, "holdout_predictions.npz"), hold_ids, hold_scores, top_k)
    model.save_weights(storage.join(output_dir, "model.weights.h5"))
    storage.write_text(storage.join(output_dir, "model_config.yaml"), config_lib.dump_yaml(model_config))
    member = export.Member(model_config.name, model, level, config_lib.to_dict(model_config))
    size = export.export_serving_model([member], storage.join(output_dir, "saved_model"),
                                       max_frames=t.max_frames)
    result = {
        "name": model_config.name, "family": model_config.family, "preset": model_config.preset,
        "input_level": level, "parameters": int(model.count_params()), "saved_model_bytes": size,
        "oof": oof_metrics, "holdout": holdout_metrics, "train_seconds": round(time.time() - started, 1),
        "folds": folds, "num_classes": num_classes,
    }
    storage.write_json(storage.join(output_dir, "metrics.json"), result)
    return result
