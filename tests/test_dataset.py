"""yt8m.dataset.Dataset: the one reader of dataset.json (the job's own output is checked in test_preprocess)."""

import json
import os

import pytest

from yt8m.dataset import Dataset, DatasetError


def _write(tmp_path, **override):
    info = {"num_classes": 10, "folds": 3, "holdout_fraction": 0.1,
            "splits": {s: {"num_videos": i + 1, "frame_files": [f"frame/{s}/part-0.tfrecord"],
                           "video_files": [f"video/{s}/part-0.tfrecord", f"video/{s}/part-1.tfrecord"]}
                       for i, s in enumerate(["fold-0", "fold-1", "fold-2", "holdout"])},
            "transform_fn": "transform_fn", "counts": {"read": 12}, "source_fingerprint": {"digest": "sha256:x"},
            "quarantine": {"files": ["quarantine/part-0.tfrecord"]}}
    info.update(override)
    (tmp_path / "dataset.json").write_text(json.dumps(info))
    return str(tmp_path)


def test_splits_files_and_counts(tmp_path):
    ds = Dataset.open(_write(tmp_path))
    assert ds.fold_names == ["fold-0", "fold-1", "fold-2"] and ds.holdout == "holdout"
    assert ds.train_splits() == ds.fold_names and ds.train_splits(held_out_fold=1) == ["fold-0", "fold-2"]
    assert ds.files("frame", ["fold-1"]) == [os.path.join(str(tmp_path), "frame/fold-1/part-0.tfrecord")]
    assert len(ds.files("video", ds.train_splits(0))) == 4 and len(ds.files("video")) == 8
    assert ds.pattern("frame", "holdout").endswith("frame/holdout/part-0.tfrecord")
    assert ds.num_videos(ds.fold_names) == 6 and ds.num_videos() == 10
    assert ds.transform_path == os.path.join(str(tmp_path), "transform_fn")
    assert ds.counts == {"read": 12} and ds.source_fingerprint["digest"] == "sha256:x"
    assert ds.quarantine_files() == [os.path.join(str(tmp_path), "quarantine/part-0.tfrecord")]
    assert Dataset.open(os.path.join(str(tmp_path), "dataset.json")).path == ds.path


def test_no_holdout(tmp_path):
    ds = Dataset.open(_write(tmp_path, splits={"fold-0": {"num_videos": 1, "frame_files": [], "video_files": []}}))
    assert ds.holdout is None and ds.fold_names == ["fold-0"]


def test_errors_are_one_line_and_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="dataset.json: not found"):
        Dataset.open(str(tmp_path / "nowhere"))
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        Dataset.open(str(tmp_path))
    ds = Dataset.open(_write(tmp_path))
    for call, message in [(lambda: ds.files("frame", ["train"]), "unknown split 'train'"),
                          (lambda: ds.files("pixels"), "level must be"),
                          (lambda: ds.train_splits(held_out_fold=3), "fold 3 out of range")]:
        with pytest.raises(DatasetError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    (tmp_path / "dataset.json").write_text(json.dumps({"num_classes": 3}))
    with pytest.raises(DatasetError, match="missing field 'folds'"):
        Dataset.open(str(tmp_path))
