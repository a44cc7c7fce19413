"""K-fold training of a model config, as the pipeline runs it: each fold's out-of-fold predictions
(``train_fold``), gathered (``collect_folds``), then the final member on all folds (``train_final``);
``train_member`` is the composition in one process.

The dataset is read through its ONE owner, ``Dataset.open(DIR)`` (``dataset.json``), never a glob.
``train_fold`` writes ``oof_predictions.npz`` (top-k, keyed by video id) + ``fold_metrics.json``;
``train_final`` writes the member into ``output_dir``:

- ``oof_predictions.npz`` (the K folds' top-k, gathered) and ``holdout_predictions.npz``
- ``model.weights.h5`` + ``model_config.yaml`` (the member, rebuilt by the ensembler)
- ``saved_model/`` (this member alone, serving serialized SequenceExamples)
- ``metrics.json`` (OOF and holdout GAP@20, Hit@1, PERR, mAP; examples/s; parameters)
- ``tensorboard/<fold-k|final>/`` (checkpoints live in ``checkpoints/`` while it runs)
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np

from yt8m import config as config_lib
from yt8m import dataset as dataset_lib
from yt8m import metrics, predictions, readers, storage, train_loop, training
from yt8m.models import registry

log = logging.getLogger(__name__)

# The pipeline trains each (config, fold) and each final member as a task of its own:
#   train_fold   (one per config and fold)  -> FOLD_DIR/{oof_predictions.npz, fold_metrics.json}
#   collect_folds (one)                     -> ROOT/<config name>/fold-<k>/ (the same two files)
#   train_final  (one per config)           -> the member (see the module doc), its OOF gathered from ROOT
# train_member runs the same three steps in one process (the composition, used by tests and tools).

OOF_FILE = "oof_predictions.npz"
FOLD_METRICS_FILE = "fold_metrics.json"
# With training.full_predictions: every class's probability too (predictions.save_full, float16)
OOF_FULL_FILE = "oof_full.npy"
HOLDOUT_FULL_FILE = "holdout_full.npy"
TEACHER_FILE = "oof_teacher.npz"  # in an ensemble's soft labels (``ensemble.write_soft_labels``): top k ...
FULL_TEACHER_FILE = "oof_teacher.npy"  # ... or every class (soft_labels full)


def with_teacher(model_config: config_lib.ModelConfig, soft_labels_dir: str | None) -> config_lib.ModelConfig:
    """A distillation student: ``model_config`` trained on the OOF soft labels in ``soft_labels_dir`` (the
    previous ensemble's teacher files), with its own ``distill_weight``; unchanged without a teacher."""
    if not soft_labels_dir:
        return model_config
    import dataclasses

    teacher = storage.join(soft_labels_dir, TEACHER_FILE)
    if storage.gfile.exists(storage.join(soft_labels_dir, FULL_TEACHER_FILE)):
        teacher = storage.join(soft_labels_dir, FULL_TEACHER_FILE)
    return dataclasses.replace(model_config,
                               training=dataclasses.replace(model_config.training, teacher_predictions=teacher))


def train_fold(model_config: config_lib.ModelConfig, dataset_dir: str, output_dir: str, num_classes: int | None,
               folds: int | None, fold: int, top_k: int = 20, checkpoint_dir: str | None = None,
               tensorboard_dir: str | None = None) -> dict:
    """Train on every fold but ``fold`` and predict ``fold``: its out-of-fold predictions.

    The dataset is read through ``Dataset.open(dataset_dir)``; ``num_classes`` and ``folds`` (None:
    from its ``dataset.json``) are checked against it.

    Writes ``output_dir/oof_predictions.npz`` (top-k, keyed by video id) and ``fold_metrics.json``
    (config name, fold, GAP@20 / Hit@1 / PERR / mAP of the held-out fold, training summary).
    Checkpoints go to ``checkpoint_dir`` (default ``output_dir/checkpoints``, removed when done):
    a killed or retried task with the same output resumes from them.
    """
    ds = training.open_dataset(dataset_dir, num_classes, folds)
    num_classes, folds = ds.num_classes, ds.folds
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in [0, {folds}), got {fold}")
    training.check_video_features(ds, model_config)
    level, t = registry.get_family(model_config.family).input_level, model_config.training
    held, splits = ds.fold_name(fold), ds.train_splits(held_out_fold=fold)
    started = time.time()
    own_checkpoints = checkpoint_dir is None
    checkpoint_dir = checkpoint_dir or storage.join(output_dir, "checkpoints")
    train = training.dataset_files(ds, level, splits)
    log.info("%s: fold %d/%d: training on %d shards, predicting %s", model_config.name, fold + 1, folds, len(train),
             held)
    trainer = train_loop.Trainer(model_config, num_classes, checkpoint_dir,
                      tensorboard_dir or storage.join(output_dir, "tensorboard"), f"{model_config.name} fold {fold}")
    summary = trainer.fit(train, teacher=training.load_teacher(t, ds.path, num_classes),
                          records=ds.num_videos(splits))
    ids, scores, labels = training.predict(trainer.inference_model(), level,
                                           training.dataset_files(ds, level, [held]), num_classes, t)
    fold_metrics = training.evaluate(scores, labels)
    log.info("%s: fold %d GAP@20 %.4f on its %d held-out videos", model_config.name, fold, fold_metrics["gap"],
             len(ids))
    storage.gfile.makedirs(output_dir)
    predictions.save_topk(storage.join(output_dir, OOF_FILE), ids, scores, top_k)
    if t.full_predictions:
        predictions.save_full(storage.join(output_dir, OOF_FULL_FILE), ids, scores)
    result = {"name": model_config.name, "family": model_config.family, "fold": fold, "folds": folds,
              "held_out": held, "num_classes": num_classes, "metrics": fold_metrics,
              "train_seconds": round(time.time() - started, 1), "training": summary}
    storage.write_json(storage.join(output_dir, FOLD_METRICS_FILE), result)
    if own_checkpoints and storage.gfile.exists(checkpoint_dir):
        storage.gfile.rmtree(checkpoint_dir)
    return result


def collected_fold_dir(collected_dir: str, name: str, fold: int) -> str:
    """Where ``collect_folds`` puts config ``name``'s fold ``fold``."""
    return storage.join(collected_dir, name, f"fold-{fold}")


def member_fold_dirs(collected_dir: str, name: str) -> list[str]:
    """Config ``name``'s fold directories in a ``collect_folds`` output (``train_final`` checks they are all there)."""
    return sorted(storage.gfile.glob(storage.join(collected_dir, name, "fold-*")))


def collect_folds(fold_dirs: list[str], collected_dir: str) -> dict[str, list[int]]:
    """Gather the ``train_fold`` outputs of every config into ONE directory (the pipeline's
    hand-over from the fold tasks to the final-member tasks); return ``{config name: folds}``."""
    found: dict[str, list[int]] = {}
    for fold_dir in fold_dirs:
        info = storage.read_json(storage.join(fold_dir, FOLD_METRICS_FILE))
        name, fold = info["name"], int(info["fold"])
        if fold in found.setdefault(name, []):
            raise ValueError(f"two out-of-fold results for {name} fold {fold} (second: {fold_dir})")
        found[name].append(fold)
        target = collected_fold_dir(collected_dir, name, fold)
        storage.gfile.makedirs(target)
        optional = [f for f in (OOF_FULL_FILE, predictions.full_ids_path(OOF_FULL_FILE))  # training.full_predictions
                    if storage.gfile.exists(storage.join(fold_dir, f))]
        for file_name in [OOF_FILE, FOLD_METRICS_FILE, *optional]:
            storage.gfile.copy(storage.join(fold_dir, file_name), storage.join(target, file_name), overwrite=True)
    log.info("collected out-of-fold predictions: %s",
             ", ".join(f"{name} folds {sorted(ks)}" for name, ks in sorted(found.items())))
    return {name: sorted(ks) for name, ks in found.items()}


def save_topk_arrays(path: str, video_ids: list[str], classes: np.ndarray, scores: np.ndarray,
                      num_classes: int) -> None:
    """Already-sparse top-k rows in ``predictions.save_topk``'s format (``predictions.load_topk`` reads it)."""
    buffer = io.BytesIO()  # zip needs a seekable file: build it in memory, write it in one call (local or gs://)
    np.savez_compressed(buffer, video_ids=np.array(video_ids, dtype=str), classes=classes.astype(np.int32),
                        scores=scores.astype(np.float32), num_classes=np.int64(num_classes))
    with storage.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _merge_fold_predictions(model_config: config_lib.ModelConfig, fold_dirs: list[str], folds: int,
                            num_classes: int) -> tuple[dict, list[dict]]:
    """The K fold outputs of one config, checked (its name, every fold once) and concatenated in fold order."""
    infos = [(storage.read_json(storage.join(d, FOLD_METRICS_FILE)), d) for d in fold_dirs]
    others = sorted({i["name"] for i, _ in infos} - {model_config.name})
    if others:
        raise ValueError(f"{model_config.name}: out-of-fold results of other configs given: {', '.join(others)}")
    got = sorted(int(i["fold"]) for i, _ in infos)
    if got != list(range(folds)):
        missing = sorted(set(range(folds)) - set(got))
        raise ValueError(f"{model_config.name}: expected out-of-fold results for folds 0..{folds - 1} once each, "
                         f"got {got}" + (f" (missing {missing})" if missing else ""))
    infos.sort(key=lambda pair: int(pair[0]["fold"]))
    parts = [predictions.load_topk(storage.join(d, OOF_FILE)) for _, d in infos]
    bad = [p["num_classes"] for p in parts if p["num_classes"] != num_classes]
    if bad:
        raise ValueError(f"{model_config.name}: out-of-fold predictions have {bad[0]} classes, expected {num_classes}")
    merged = {"video_ids": [v for p in parts for v in p["video_ids"]],
              "classes": np.concatenate([p["classes"] for p in parts]),
              "scores": np.concatenate([p["scores"] for p in parts]), "num_classes": num_classes}
    return merged, [dict(i["metrics"], fold=int(i["fold"])) for i, _ in infos]


def _save_full_predictions(fold_dirs: list[str], oof_ids: list[str], output_dir: str, hold_ids, hold_scores) -> None:
    """The member's every-class OOF (its folds' ``OOF_FULL_FILE``s, in ``oof_ids`` order) and holdout probabilities."""
    parts = [predictions.load_full(storage.join(d, OOF_FULL_FILE), missing_hint="training.full_predictions is "
                                   "set, but this fold was trained without it") for d in fold_dirs]
    position = {v: i for i, v in enumerate(oof_ids)}
    scores = np.zeros((len(oof_ids), hold_scores.shape[1]), predictions.FULL_DTYPE)
    filled = 0
    for part in parts:
        rows = np.asarray([position[v] for v in part["video_ids"]], np.int64)
        scores[rows] = part["scores"]
        filled += rows.size
    if filled != len(oof_ids):
        raise ValueError(f"the folds' full predictions hold {filled} videos, their top-k files {len(oof_ids)}")
    predictions.save_full(storage.join(output_dir, OOF_FULL_FILE), oof_ids, scores)
    predictions.save_full(storage.join(output_dir, HOLDOUT_FULL_FILE), hold_ids, hold_scores)


def _topk_metrics(topk: dict, labels: dict[str, list[int]], num_classes: int, chunk: int = 8192) -> dict:
    """GAP@20 & co. of top-k predictions, densified chunk by chunk (exact for GAP@20 when k >= 20)."""
    acc = metrics.EvaluationAccumulator(num_classes)
    ids = topk["video_ids"]
    for start in range(0, len(ids), chunk):
        stop = start + chunk
        dense = predictions.densify_topk(topk["classes"][start:stop], topk["scores"][start:stop], num_classes)
        acc.add(dense, metrics.dense_labels([labels.get(v, []) for v in ids[start:stop]], num_classes))
    return acc.result()


def train_final(model_config: config_lib.ModelConfig, dataset_dir: str, output_dir: str, num_classes: int | None,
                folds: int | None, fold_dirs: list[str], top_k: int = 20, checkpoint_dir: str | None = None,
                tensorboard_dir: str | None = None) -> dict:
    """The member: gather its K folds' out-of-fold predictions (``fold_dirs``: ``train_fold`` outputs),
    train the final model on all folds, predict the holdout, export; see the module doc for the files.

    The folds are checked before any training (every fold of this config, once). ``metrics.json``'s
    ``oof`` is measured on the gathered top-k predictions (what the ensembler reads; GAP@20 exact for
    top_k >= 20), ``oof_folds`` holds each fold's metrics on its full scores.
    """
    ds = training.open_dataset(dataset_dir, num_classes, folds)
    num_classes, folds = ds.num_classes, ds.folds
    if ds.holdout is None:
        raise dataset_lib.DatasetError(f"{ds.path}: the dataset has no holdout split (holdout_fraction 0); the "
                                       "final member is evaluated on it")
    training.check_video_features(ds, model_config)
    level, t = registry.get_family(model_config.family).input_level, model_config.training
    names = ds.fold_names
    started = time.time()
    oof, fold_metrics = _merge_fold_predictions(model_config, fold_dirs, folds, num_classes)
    oof_metrics = _topk_metrics(oof, readers.read_id_labels(training.dataset_files(ds, "video", names)),
                                num_classes)
    log.info("%s: out-of-fold GAP@20 %.4f over %d videos", model_config.name, oof_metrics["gap"],
             len(oof["video_ids"]))

    log.info("%s: training the final member on all %d folds", model_config.name, folds)
    own_checkpoints = checkpoint_dir is None
    checkpoint_dir = checkpoint_dir or storage.join(output_dir, "checkpoints")
    trainer = train_loop.Trainer(model_config, num_classes, checkpoint_dir,
                      tensorboard_dir or storage.join(output_dir, "tensorboard", "final"), f"{model_config.name} final")
    summary = trainer.fit(training.dataset_files(ds, level, names),
                          teacher=training.load_teacher(t, ds.path, num_classes), records=ds.num_videos(names))
    model = trainer.inference_model()
    hold_ids, hold_scores, hold_labels = training.predict(model, level, training.dataset_files(ds, level, [ds.holdout]),
                                                 num_classes, t)
    holdout_metrics = training.evaluate(hold_scores, hold_labels)
    log.info("%s: holdout GAP@20 %.4f", model_config.name, holdout_metrics["gap"])

    storage.gfile.makedirs(output_dir)
    save_topk_arrays(storage.join(output_dir, OOF_FILE), oof["video_ids"], oof["classes"][:, :top_k],
                      oof["scores"][:, :top_k], num_classes)
    predictions.save_topk(storage.join(output_dir, "holdout_predictions.npz"), hold_ids, hold_scores, top_k)
    if t.full_predictions:
        _save_full_predictions(fold_dirs, oof["video_ids"], output_dir, hold_ids, hold_scores)
    size = training.write_member(model_config, model, level, output_dir, t.max_frames, ds.transform_path)
    result = {
        "name": model_config.name, "family": model_config.family, "preset": model_config.preset,
        "input_level": level, "parameters": int(model.count_params()), "saved_model_bytes": size,
        "oof": oof_metrics, "oof_folds": fold_metrics, "holdout": holdout_metrics,
        "train_seconds": round(time.time() - started, 1), "folds": folds, "num_classes": num_classes,
        "training": summary,
    }
    storage.write_json(storage.join(output_dir, "metrics.json"), result)
    # The member is complete: its checkpoints (weights + optimizer state, ~3x the model) are not part of it.
    if own_checkpoints and storage.gfile.exists(checkpoint_dir):
        storage.gfile.rmtree(checkpoint_dir)
    return result


def train_member(model_config: config_lib.ModelConfig, dataset_dir: str, output_dir: str,
                 num_classes: int | None = None, folds: int | None = None, top_k: int = 20) -> dict:
    """K-fold training with out-of-fold predictions, then the final member on all folds; see module doc.

    The composition of ``train_fold`` (each fold) and ``train_final`` in one process: the pipeline
    runs the same steps as separate tasks.
    """
    ds = training.open_dataset(dataset_dir, num_classes, folds)
    num_classes, folds = ds.num_classes, ds.folds
    ckpt_root, tb_root = storage.join(output_dir, "checkpoints"), storage.join(output_dir, "tensorboard")
    folds_root = storage.join(output_dir, "folds")
    fold_dirs = []
    for k, held in enumerate(ds.fold_names):
        fold_dirs.append(storage.join(folds_root, held))
        train_fold(model_config, dataset_dir, fold_dirs[-1], num_classes, folds, k, top_k,
                   checkpoint_dir=storage.join(ckpt_root, held), tensorboard_dir=storage.join(tb_root, held))
    result = train_final(model_config, dataset_dir, output_dir, num_classes, folds, fold_dirs, top_k,
                         checkpoint_dir=storage.join(ckpt_root, "final"),
                         tensorboard_dir=storage.join(tb_root, "final"))
    # Gathered into the member's oof_predictions.npz; the checkpoints are not part of the member either.
    for done in (folds_root, ckpt_root):
        if storage.gfile.exists(done):
            storage.gfile.rmtree(done)
    return result

