"""Tests for yt8m.folds: stable, balanced, process-independent split assignment."""

import os
import subprocess
import sys
from collections import Counter

import pytest

from yt8m import folds

# Pinned values: if these change, every previously written split changes too.
GOLDEN = {"abCD": "fold-4", "Xy12": "fold-1", "video-0": "holdout", "v1_5": "fold-3"}


def test_golden_assignments_never_change():
    assert {vid: folds.assign_split(vid, 5, 0.1) for vid in GOLDEN} == GOLDEN


def test_str_and_bytes_ids_agree_and_repeat():
    for vid in ["abCD", "Xy12", "ünïcode-id", ""]:
        a = folds.assign_split(vid, 5, 0.1)
        assert a == folds.assign_split(vid.encode("utf-8"), 5, 0.1)
        assert a == folds.assign_split(vid, 5, 0.1)


def test_same_split_in_other_processes_with_other_hash_seeds():
    ids = [f"vid{i:04d}" for i in range(200)]
    here = [folds.assign_split(v, 5, 0.1) for v in ids]
    code = ("import sys; from yt8m import folds; "
            "print(','.join(folds.assign_split(f'vid{i:04d}', 5, 0.1) for i in range(200)))")
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip().split(",") == here


def test_balanced_folds_and_holdout_fraction():
    n = 60_000
    counts = Counter(folds.assign_split(f"id-{i}", 5, 0.1) for i in range(n))
    assert set(counts) == set(folds.split_names(5, 0.1))
    assert abs(counts["holdout"] / n - 0.1) < 0.006
    for k in range(5):
        assert abs(counts[f"fold-{k}"] / n - 0.18) < 0.008


def test_no_holdout_and_single_fold():
    counts = Counter(folds.assign_split(f"id-{i}", 4, 0.0) for i in range(20_000))
    assert set(counts) == {"fold-0", "fold-1", "fold-2", "fold-3"}
    assert "holdout" not in folds.split_names(4, 0.0)
    assert all(folds.assign_split(f"id-{i}", 1, 0.0) == "fold-0" for i in range(100))


def test_split_names_and_fold_index():
    assert folds.split_names(3, 0.2) == ["fold-0", "fold-1", "fold-2", "holdout"]
    assert folds.split_names(2, 0.0) == ["fold-0", "fold-1"]
    assert folds.fold_index("fold-2") == 2
    assert folds.fold_index("holdout") is None
    with pytest.raises(ValueError):
        folds.fold_index("train")


@pytest.mark.parametrize("k, h", [(0, 0.1), (-1, 0.1), (2.5, 0.1), (True, 0.1), (5, 1.0), (5, -0.1), (5, 1.5)])
def test_invalid_arguments(k, h):
    with pytest.raises(ValueError):
        folds.assign_split("abCD", k, h)
    with pytest.raises(ValueError):
        folds.split_names(k, h)


def test_unit_hash_range():
    values = [folds.stable_unit_hash(f"x{i}") for i in range(1000)]
    assert all(0.0 <= v < 1.0 for v in values)
