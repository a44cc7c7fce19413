"""Prediction files: the Kaggle submission CSV and a compact top-k store (.npz).

Pure numpy; TensorFlow is imported lazily, only to open gs:// paths. Top-k selection and
its tie order (score descending, then class index ascending) come from ``yt8m.metrics``.
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np

from yt8m.metrics import top_k

KAGGLE_HEADER = "VideoId,LabelConfidencePairs"
_ROWS_PER_WRITE = 10_000


def _exists(path: str) -> bool:
    path = os.fspath(path)
    if path.startswith("gs://"):
        import tensorflow as tf  # lazy: only needed for GCS

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def _open(path: str, mode: str = "r"):
    """Open a local path (parent folders created when writing) or a gs:// path (tf.io.gfile)."""
    path = os.fspath(path)
    if path.startswith("gs://"):
        import tensorflow as tf  # lazy: only needed for GCS

        return tf.io.gfile.GFile(path, mode)
    if any(flag in mode for flag in "wax"):
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
    if "b" in mode:
        return open(path, mode)
    return open(path, mode, encoding="utf-8", newline="")


def _video_id_text(video_id) -> str:
    text = video_id.decode("utf-8") if isinstance(video_id, (bytes, np.bytes_)) else str(video_id)
    if not text or any(ch in text for ch in ",\r\n"):
        raise ValueError(f"video id {text!r} is empty or contains a comma or line break")
    return text


def _video_ids_for(video_ids, scores) -> tuple[list[str], np.ndarray]:
    ids = [_video_id_text(v) for v in video_ids]
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != len(ids):
        raise ValueError(f"scores must be [len(video_ids)={len(ids)}, num_classes], got shape {scores.shape}")
    return ids, scores


def write_kaggle_csv(path: str, video_ids: Sequence, scores, k: int = 20) -> None:
    """Write a Kaggle submission: header, then ``id,label score ...`` with each video's top k."""
    ids, scores = _video_ids_for(video_ids, scores)
    classes, values = top_k(scores, k)
    with _open(path, "w") as f:
        f.write(KAGGLE_HEADER + "\n")
        for start in range(0, len(ids), _ROWS_PER_WRITE):
            stop = start + _ROWS_PER_WRITE
            lines = [
                video_id + "," + " ".join(f"{label} {score:.6f}" for label, score in zip(labels, row_scores)) + "\n"
                for video_id, labels, row_scores in zip(ids[start:stop], classes[start:stop].tolist(),
                                                         values[start:stop].tolist())
            ]
            f.write("".join(lines))


def _parse_kaggle_row(line: str, where: str) -> tuple[str, np.ndarray, np.ndarray]:
    video_id, comma, pairs = line.partition(",")
    if not comma or not video_id.strip():
        raise ValueError(f"{where}: expected 'VideoId,label score ...', got {line[:60]!r}")
    tokens = pairs.split()
    if len(tokens) % 2:
        raise ValueError(f"{where}: odd number of tokens ({len(tokens)}) in label/score pairs")
    labels = []
    for token in tokens[0::2]:
        try:
            labels.append(int(token))
        except ValueError:
            raise ValueError(f"{where}: label {token!r} is not an integer") from None
    scores = []
    for token in tokens[1::2]:
        try:
            scores.append(float(token))
        except ValueError:
            raise ValueError(f"{where}: score {token!r} is not a number") from None
    labels_array = np.array(labels, dtype=np.int64)
    if (labels_array < 0).any():
        raise ValueError(f"{where}: negative label {int(labels_array.min())}")
    if np.unique(labels_array).size != labels_array.size:
        raise ValueError(f"{where}: a label appears more than once")
    scores_array = np.array(scores, dtype=np.float32)
    if np.isnan(scores_array).any():
        raise ValueError(f"{where}: score is NaN")
    return video_id.strip(), labels_array.astype(np.int32), scores_array


def read_kaggle_csv(path: str) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Read a Kaggle submission: (video_ids, label_ids int32 arrays, scores float32 arrays).

    Raises a one-line ValueError naming the file and line on a missing header or a
    malformed row (no comma, odd token count, non-integer label, non-numeric score,
    negative or repeated label, repeated video id). Blank lines are skipped.
    """
    video_ids: list[str] = []
    label_ids: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    first_line_of: dict[str, int] = {}
    with _open(path, "r") as f:
        header = f.readline().lstrip("\ufeff").rstrip("\r\n")
        if header.strip() != KAGGLE_HEADER:
            raise ValueError(f"{path}:1: expected header {KAGGLE_HEADER!r}, got {header[:60]!r}")
        for line_number, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            video_id, labels, row_scores = _parse_kaggle_row(line, where)
            if video_id in first_line_of:
                raise ValueError(f"{where}: video id {video_id!r} already on line {first_line_of[video_id]}")
            first_line_of[video_id] = line_number
            video_ids.append(video_id)
            label_ids.append(labels)
            scores.append(row_scores)
    return video_ids, label_ids, scores


def scores_from_pairs(label_ids: Sequence[np.ndarray], scores: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Dense float32 [N, num_classes] from per-video (labels, scores); missing classes are 0."""
    if len(label_ids) != len(scores):
        raise ValueError(f"{len(label_ids)} label lists but {len(scores)} score lists")
    dense = np.zeros((len(label_ids), num_classes), dtype=np.float32)
    if not len(label_ids):
        return dense
    labels = [np.asarray(row, dtype=np.int64).ravel() for row in label_ids]
    values = [np.asarray(row, dtype=np.float32).ravel() for row in scores]
    for video, (row_labels, row_values) in enumerate(zip(labels, values)):
        if row_labels.size != row_values.size:
            raise ValueError(f"video {video}: {row_labels.size} labels but {row_values.size} scores")
    columns = np.concatenate(labels)
    rows = np.repeat(np.arange(len(labels)), [row.size for row in labels])
    if ((columns < 0) | (columns >= num_classes)).any():
        bad = int(np.flatnonzero((columns < 0) | (columns >= num_classes))[0])
        raise ValueError(f"video {rows[bad]}: label {columns[bad]} is outside [0, {num_classes})")
    dense[rows, columns] = np.concatenate(values)
    return dense


def save_topk(path: str, video_ids: Sequence, scores, k: int) -> None:
    """Save each video's top k (classes int32 [N,k], scores float32 [N,k]) as a compressed .npz."""
    ids, scores = _video_ids_for(video_ids, scores)
    classes, values = top_k(scores, k)
    with _open(path, "wb") as f:
        np.savez_compressed(
            f,
            video_ids=np.array(ids, dtype=str),
            classes=classes.astype(np.int32),
            scores=values.astype(np.float32),
            num_classes=np.int64(scores.shape[1]),
        )


def load_topk(path: str) -> dict:
    """Load a ``save_topk`` file: {video_ids: list[str], classes, scores, num_classes: int}."""
    with _open(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()), allow_pickle=False)
        missing = {"video_ids", "classes", "scores", "num_classes"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a top-k file, missing arrays {sorted(missing)}")
        result = {
            "video_ids": [str(v) for v in data["video_ids"]],
            "classes": data["classes"],
            "scores": data["scores"],
            "num_classes": int(data["num_classes"]),
        }
    n = len(result["video_ids"])
    if result["classes"].shape != result["scores"].shape or result["classes"].shape[:1] != (n,):
        raise ValueError(f"{path}: inconsistent shapes: {n} ids, classes {result['classes'].shape}, "
                         f"scores {result['scores'].shape}")
    return result


def densify_topk(classes, scores, num_classes: int) -> np.ndarray:
    """Dense float32 [N, num_classes] from top-k classes/scores [N, k]; other classes are 0."""
    classes = np.asarray(classes)
    scores = np.asarray(scores, dtype=np.float32)
    if classes.ndim != 2 or classes.shape != scores.shape:
        raise ValueError(f"classes {classes.shape} and scores {scores.shape} must be equal 2-D shapes")
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"class ids must be in [0, {num_classes}), got [{classes.min()}, {classes.max()}]")
    sorted_classes = np.sort(classes, axis=1)
    if (sorted_classes[:, 1:] == sorted_classes[:, :-1]).any():
        raise ValueError("a class appears more than once in a video's top k")
    dense = np.zeros((classes.shape[0], num_classes), dtype=np.float32)
    np.put_along_axis(dense, classes.astype(np.int64), scores, axis=1)
    return dense


# Every class's probability per video (the "full" soft labels of distillation; the 1st-place team kept them all):
# ``NAME.npy`` float16 [N, C] (2 bytes per class: 7,724 bytes per video at 3,862 classes, 47 GB for 6.1M videos)
# + ``NAME.ids.txt`` (one video id per line, the rows' order). Uncompressed on purpose: a local (or gcsfuse,
# /gcs/...) file is memory-mapped, so a reader holds only the rows it touches.
FULL_DTYPE = np.float16


def full_ids_path(path: str) -> str:
    if not os.fspath(path).endswith(".npy"):
        raise ValueError(f"full predictions are a .npy file, got {path!r}")
    return os.fspath(path)[:-4] + ".ids.txt"


def save_full(path: str, video_ids: Sequence, scores) -> int:
    """Save every class's score (float16 [N, C]) keyed by video id (``full_ids_path``); returns the bytes written."""
    ids, scores = _video_ids_for(video_ids, scores)
    body = io.BytesIO()
    np.save(body, np.asarray(scores, dtype=FULL_DTYPE))
    with _open(path, "wb") as f:
        f.write(body.getvalue())
    with _open(full_ids_path(path), "w") as f:
        f.write("".join(v + "\n" for v in ids))
    return len(body.getvalue())


def is_full(path: str) -> bool:
    return os.fspath(path).endswith(".npy")


def load_full(path: str, mmap: bool = True, missing_hint: str = "") -> dict:
    """Load a ``save_full`` file: {video_ids, scores (float16 [N, C]; memory-mapped when local), num_classes}.
    A missing file is a FileNotFoundError naming it, followed by ``missing_hint`` (what should have written it)."""
    if missing_hint and not _exists(path):
        raise FileNotFoundError(f"{path} not found: {missing_hint}")
    with _open(full_ids_path(path), "r") as f:
        ids = f.read().splitlines()
    if mmap and not os.fspath(path).startswith("gs://"):
        scores = np.load(path, mmap_mode="r")
    else:
        with _open(path, "rb") as f:
            scores = np.load(io.BytesIO(f.read()))
    if scores.ndim != 2 or scores.shape[0] != len(ids):
        raise ValueError(f"{path}: {len(ids)} video ids for scores of shape {scores.shape}")
    return {"video_ids": ids, "scores": scores, "num_classes": int(scores.shape[1])}
