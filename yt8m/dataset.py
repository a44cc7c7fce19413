"""The preprocessed dataset: ONE owner of its layout, read through ``dataset.json``.

The Beam job (``beam_jobs/preprocess.py``) writes ``dataset.json`` last, with the files it
actually wrote (paths relative to the dataset directory, so a copied or fuse-mounted
dataset still resolves), the folds, the classes, the counts, the transform_fn and a
fingerprint of the source. Consumers open it instead of globbing folders or rebuilding
split names::

    ds = Dataset.open(path)                      # local or gs://
    ds.files("video", ds.train_splits(held_out_fold=2))
    ds.files("frame", [ds.holdout])              # holdout split
    ds.num_videos(ds.fold_names)
    ds.transform_output()                        # tft.TFTransformOutput of OUT/transform_fn

Errors are ``DatasetError`` (a ``ValueError``) with one-line messages naming the file.
"""

from __future__ import annotations

import dataclasses
import json

from yt8m import folds as folds_lib
from yt8m import storage

DATASET_FILE = "dataset.json"
LEVELS = ("frame", "video")


class DatasetError(ValueError):
    """dataset.json is missing, unreadable, or does not hold what is asked for."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    path: str
    info: dict

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str) -> "Dataset":
        """The dataset in directory ``path`` (or ``path`` = its dataset.json)."""
        path = path.rstrip("/") if path.startswith("gs://") else path
        if path.endswith(DATASET_FILE):
            path = path[: -len(DATASET_FILE)].rstrip("/") or "."
        if "://" not in path:
            import os

            path = os.path.abspath(path)
        file = storage.join(path, DATASET_FILE)
        if not storage.gfile.exists(file):
            raise DatasetError(f"{file}: not found (is {path} the output of the preprocessing job, and did it finish?)")
        try:
            info = storage.read_json(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{file}: not valid JSON ({err})") from None
        for key in ("num_classes", "folds", "holdout_fraction", "splits"):
            if key not in info:
                raise DatasetError(f"{file}: missing field {key!r}")
        return cls(path, info)

    # ------------------------------------------------------------------ splits
    @property
    def num_classes(self) -> int:
        return int(self.info["num_classes"])

    @property
    def folds(self) -> int:
        return int(self.info["folds"])

    @property
    def holdout_fraction(self) -> float:
        return float(self.info["holdout_fraction"])

    @property
    def split_names(self) -> list[str]:
        """Every split: the folds, then the holdout if there is one."""
        return list(self.info["splits"])

    @property
    def fold_names(self) -> list[str]:
        return [s for s in self.split_names if s != folds_lib.HOLDOUT]

    @property
    def holdout(self) -> str | None:
        """The holdout split's name, None if the dataset has no holdout."""
        return folds_lib.HOLDOUT if folds_lib.HOLDOUT in self.info["splits"] else None

    def fold_name(self, k: int) -> str:
        names = self.fold_names
        if not 0 <= int(k) < len(names):
            raise DatasetError(f"{self._file}: fold {k} out of range (the dataset has {len(names)} folds)")
        return names[int(k)]

    def train_splits(self, held_out_fold: int | None = None) -> list[str]:
        """The folds to train on: all of them, or all but ``held_out_fold`` (K-fold)."""
        if held_out_fold is None:
            return self.fold_names
        held = self.fold_name(held_out_fold)
        return [s for s in self.fold_names if s != held]

    def _check_splits(self, splits) -> list[str]:
        splits = self.split_names if splits is None else ([splits] if isinstance(splits, str) else list(splits))
        unknown = [s for s in splits if s not in self.info["splits"]]
        if unknown:
            raise DatasetError(f"{self._file}: unknown split {unknown[0]!r}; splits are {self.split_names}")
        return splits

    # ------------------------------------------------------------------ files and counts
    def resolve(self, relative: str) -> str:
        return relative if "://" in relative or relative.startswith("/") else storage.join(self.path, relative)

    def files(self, level: str, splits=None) -> list[str]:
        """The shard files of ``splits`` (default: all) at ``level`` ("frame" or "video"), as written."""
        if level not in LEVELS:
            raise DatasetError(f"level must be one of {LEVELS}, got {level!r}")
        result = []
        for s in self._check_splits(splits):
            result += [self.resolve(p) for p in self.info["splits"][s][f"{level}_files"]]
        return result

    def pattern(self, level: str, splits=None) -> str:
        """``files`` as one comma-separated pattern (for readers that take patterns)."""
        return ",".join(self.files(level, splits))

    def num_videos(self, splits=None) -> int:
        return int(sum(self.info["splits"][s]["num_videos"] for s in self._check_splits(splits)))

    def quarantine_files(self) -> list[str]:
        return [self.resolve(p) for p in self.info.get("quarantine", {}).get("files", [])]

    @property
    def counts(self) -> dict:
        return dict(self.info.get("counts", {}))

    @property
    def source_fingerprint(self) -> dict:
        return dict(self.info.get("source_fingerprint") or {})

    # ------------------------------------------------------------------ transform
    @property
    def transform_path(self) -> str | None:
        rel = self.info.get("transform_fn")
        return self.resolve(rel) if rel else None

    def transform_output(self):
        """``tft.TFTransformOutput`` of the job's transform_fn (imports tensorflow_transform)."""
        if not self.transform_path:
            raise DatasetError(f"{self._file}: no transform_fn (no video was written)")
        import tensorflow_transform as tft

        return tft.TFTransformOutput(self.transform_path)

    def statistics(self) -> dict:
        """The TFT statistics (frame mean/var, label counts, frame-count quantiles ...): see yt8m.transform."""
        from yt8m import transform

        return transform.statistics(self.transform_output())

    @property
    def _file(self) -> str:
        return storage.join(self.path, DATASET_FILE)
