"""Train one model config: the steps every entry point shares (open the dataset, predict, evaluate,
write the member) and ``train_single``, one config on given TFRecords (the ``yt8m train`` verb).

Where the rest lives: the input pipeline is ``yt8m.readers`` (``training_batches``,
``evaluation_batches``), the optimizer / strategy / precision ``yt8m.model_setup``, the loop
``yt8m.train_loop.Trainer``, resuming ``yt8m.checkpoints``, and the pipeline's K-fold steps
(``train_fold``, ``collect_folds``, ``train_final``, ``train_member``) ``yt8m.kfold``.

Features are the ones the serving graph computes from raw records (``yt8m.export``): a video-level
family trains on the job's video-level shards (the means of the FIRST 300 dequantized frames, from the
dataset's tensorflow-transform graph, ``yt8m.transform``; their z-scores with ``training.video_features:
standardized``), which the serving graph recomputes with the same transform_fn; a frame-level family
sees the reader's frames, at most the first 300 (``export.member_max_frames``).
"""

from __future__ import annotations

import logging
import os

import keras
import numpy as np
import tensorflow as tf

from yt8m import augment, distill, export, metrics, readers, storage, train_loop
from yt8m import config as config_lib
from yt8m import dataset as dataset_lib
from yt8m.models import registry

log = logging.getLogger(__name__)


def open_dataset(dataset_dir: str, num_classes: int | None = None, folds: int | None = None) -> dataset_lib.Dataset:
    """The preprocessed dataset in ``dataset_dir`` (``Dataset.open``); ``num_classes`` / ``folds``, when
    given (e.g. from a pipeline artifact's metadata), must be what its ``dataset.json`` says."""
    ds = dataset_lib.Dataset.open(dataset_dir)
    for what, given, actual in (("num_classes", num_classes, ds.num_classes), ("folds", folds, ds.folds)):
        if given is not None and int(given) != actual:
            raise dataset_lib.DatasetError(f"{ds.path}/{dataset_lib.DATASET_FILE}: {what} is {actual}, "
                                           f"but {int(given)} was given")
    return ds


def dataset_files(ds: dataset_lib.Dataset, level: str, splits: list[str]) -> list[str]:
    """``ds.files(level, splits)``, refusing an empty list with a one-line reason (a split with no videos)."""
    files = ds.files(level, splits)
    if not files:
        raise dataset_lib.DatasetError(f"{ds.path}: no {level}-level files in split(s) {', '.join(splits)} "
                                       f"({ds.num_videos(splits)} videos)")
    return files


def split_files(dataset_dir: str, level: str, splits: list[str]) -> list[str]:
    """Shards of the given splits at ``level`` ("frame" or "video"), as listed in ``dataset.json``.

    Kept for callers outside the library; prefer ``Dataset.open(dir).files(level, splits)``. A split
    name may be a shell pattern over the dataset's split names (``"fold-*"``: every fold).
    """
    import fnmatch

    ds = dataset_lib.Dataset.open(dataset_dir)
    names = []
    for s in splits:
        matched = [n for n in ds.split_names if fnmatch.fnmatchcase(n, s)]
        if not matched:
            raise dataset_lib.DatasetError(f"{ds.path}: no split matches {s!r}; splits are {ds.split_names}")
        names += [n for n in matched if n not in names]
    return dataset_files(ds, level, names)


def check_format(family: str, input_level: str, data_format: str, where: str = "data") -> None:
    if input_level == "frame" and data_format == "video":
        raise ValueError(f"{where}: family {family!r} needs frame-level data, got video-level Examples")



def check_video_features(ds: dataset_lib.Dataset, model_config: config_lib.ModelConfig) -> None:
    """A member trained on standardized video features needs a dataset that has them (``dataset.json``'s
    ``video_features``: what the preprocessing job wrote)."""
    t = model_config.training
    if registry.get_family(model_config.family).input_level != "video" or t.video_features == "mean":
        return
    written = ds.info.get("video_features") or {}
    missing = [key for key in readers.VIDEO_FEATURE_KEYS[t.video_features].values() if key not in written]
    if missing:
        raise dataset_lib.DatasetError(
            f"{ds.path}: {model_config.name} has training.video_features: {t.video_features}, but the dataset has "
            f"no {', '.join(missing)} (preprocess it with `yt8m preprocess --standardized`)")


def predict(model: keras.Model, input_level: str, files: list[str], num_classes: int,
            t: config_lib.TrainingConfig, data_format: str | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(video ids, scores [N, C], multi-hot labels [N, C]) over ``files`` in file order.

    A frame-level member with ``t.tta`` scores the mean over the 6 test-time variants of each video
    (``augment.tta_variants``), exactly as its serving graph does (``export.ServingModule``)."""
    if t.tta and input_level == "frame":
        def step(features):
            rgb, audio, n = augment.tta_variants(features["rgb"], features["audio"], features["num_frames"])
            probs = model({**features, "rgb": rgb, "audio": audio, "num_frames": n}, training=False)
            return export.tta_mean(probs, num_classes)
    else:
        def step(features):
            return model(features, training=False)
    predict_step = tf.function(step, reduce_retracing=True)
    ids, scores, labels = [], [], []
    for features, y in readers.evaluation_batches(files, data_format or input_level, input_level, num_classes, t):
        video_ids = features.pop("video_id")
        scores.append(np.asarray(predict_step(features), np.float32))
        labels.append(y.numpy())
        ids.extend(v.decode() for v in video_ids.numpy())
    if not ids:
        return [], np.zeros((0, num_classes), np.float32), np.zeros((0, num_classes), np.float32)
    return ids, np.concatenate(scores), np.concatenate(labels)


def evaluate(scores: np.ndarray, labels: np.ndarray, k: int = 20) -> dict:
    acc = metrics.EvaluationAccumulator(labels.shape[1], k=k)
    acc.add(scores, labels)
    return acc.result()


def load_teacher(t: config_lib.TrainingConfig, data_dir: str | None, num_classes: int):
    if not t.teacher_predictions:
        return None
    return distill.TeacherTable(distill.resolve_teacher_path(t.teacher_predictions, data_dir), num_classes)


def write_member(model_config, model, level: str, output_dir: str, max_frames: int,
                 transform_dir: str | None = None, compression: str = "none") -> int:
    """The member's files; its serving graph computes video-level features with the dataset's transform_fn
    (``transform_dir``) when there is one, so it serves exactly what it trained on."""
    storage.gfile.makedirs(output_dir)
    model.save_weights(storage.join(output_dir, "model.weights.h5"))
    storage.write_text(storage.join(output_dir, "model_config.yaml"), config_lib.dump_yaml(model_config))
    member = export.Member(model_config.name, model, level, config_lib.to_dict(model_config))
    return export.export_serving_model([member], storage.join(output_dir, "saved_model"), max_frames=max_frames,
                                       transform_dir=transform_dir, compression=compression)


def train_single(model_config: config_lib.ModelConfig, train_data, output_dir: str, num_classes: int,
                 eval_data=None, restart: bool = False, compression: str = "uint8") -> dict:
    """Train one config on ``train_data`` (a pattern or file list; frame-level SequenceExamples, or
    video-level Examples for video-level families) and export it into ``output_dir``, its tensors above
    17,000 elements stored with ``compression`` (``yt8m.compression``; uint8 by default, so a published-size
    NetVLAD exported alone stays under 1 GB).

    Writes ``saved_model/``, ``model.weights.h5``, ``model_config.yaml``, ``metrics.json``,
    ``tensorboard/`` and ``checkpoints/`` (kept: running the same call again resumes from them,
    and a finished run is only re-exported; checkpoints of another run, i.e. other data files, classes
    or model config, are refused with ``ResumeMismatchError`` unless ``restart`` discards them).
    Video-level families on frame-level data see the
    frames mean-pooled in the input pipeline, exactly as the serving graph does.
    """
    family = registry.get_family(model_config.family)
    level, t = family.input_level, model_config.training
    if level == "video" and t.video_features != "mean":
        raise ValueError(f"{model_config.name}: training.video_features: {t.video_features} needs a preprocessed "
                         "dataset (its transform_fn serves the z-scores); train it through the pipeline")
    files = storage.expand_pattern(train_data, "training data") if isinstance(train_data, str) else list(train_data)
    data_format = readers.detect_format(files)
    check_format(model_config.family, level, data_format, "training data")
    eval_files = eval_format = None
    if eval_data:
        eval_files = (storage.expand_pattern(eval_data, "evaluation data") if isinstance(eval_data, str)
                      else list(eval_data))
        eval_format = readers.detect_format(eval_files)
        check_format(model_config.family, level, eval_format, "evaluation data")
    teacher = load_teacher(t, os.path.dirname(files[0]), num_classes)
    checkpoint_dir = storage.join(output_dir, "checkpoints")
    if restart and storage.gfile.exists(checkpoint_dir):
        log.info("%s: --restart: discarding the checkpoints in %s", model_config.name, checkpoint_dir)
        storage.gfile.rmtree(checkpoint_dir)
    log.info("%s: %s family %s (%s preset) on %d %s-level file(s), %d classes", model_config.name, level,
             model_config.family, model_config.preset, len(files), data_format, num_classes)
    trainer = train_loop.Trainer(model_config, num_classes, checkpoint_dir, storage.join(output_dir, "tensorboard"))
    summary = trainer.fit(files, data_format, teacher)
    model = trainer.inference_model()
    result = {
        "name": model_config.name, "family": model_config.family, "preset": model_config.preset,
        "input_level": level, "data_format": data_format, "num_classes": num_classes,
        "parameters": int(model.count_params()), **summary,
    }
    if eval_files:
        _ids, scores, labels = predict(model, level, eval_files, num_classes, t, eval_format)
        result["eval"] = evaluate(scores, labels)
        log.info("%s: evaluation GAP@20 %.4f over %d videos", model_config.name, result["eval"]["gap"],
                 len(_ids))
    result["saved_model_bytes"] = write_member(model_config, model, level, output_dir, t.max_frames,
                                               compression=compression)
    storage.write_json(storage.join(output_dir, "metrics.json"), result)
    return result
