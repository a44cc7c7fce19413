"""Tests for yt8m.predictions: Kaggle CSV and the top-k .npz store."""

import sys
import types

import numpy as np
import pytest

from yt8m import predictions as preds
from yt8m.metrics import gap_at_k, top_k
from yt8m.predictions import (KAGGLE_HEADER, densify_topk, load_topk, read_kaggle_csv, save_topk, scores_from_pairs,
                              write_kaggle_csv)


def test_write_kaggle_csv_exact_text(tmp_path):
    path = tmp_path / "sub" / "submission.csv"
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.2]], dtype=np.float32)
    write_kaggle_csv(str(path), ["a", b"b"], scores, k=2)
    assert path.read_text() == ("VideoId,LabelConfidencePairs\n"
                                "a,1 0.900000 2 0.500000\n"
                                "b,0 0.300000 1 0.300000\n")  # tie: lower class first


def test_kaggle_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.random((50, 30)).astype(np.float32)
    ids = [f"vid{i:03d}" for i in range(50)]
    path = str(tmp_path / "submission.csv")
    write_kaggle_csv(path, ids, scores, k=20)
    video_ids, label_ids, read_scores = read_kaggle_csv(path)
    classes, values = top_k(scores, 20)
    assert video_ids == ids
    np.testing.assert_array_equal(np.stack(label_ids), classes)
    np.testing.assert_allclose(np.stack(read_scores), values, atol=6e-7)
    assert all(np.all(np.diff(row) <= 0) for row in read_scores)  # descending
    dense = scores_from_pairs(label_ids, read_scores, 30)
    assert np.count_nonzero(dense, axis=1).tolist() == [20] * 50
    assert gap_at_k(dense, scores > 0.7, 20) == pytest.approx(gap_at_k(scores, scores > 0.7, 20), abs=1e-6)


def test_kaggle_csv_k_above_classes_and_empty_rows(tmp_path):
    path = tmp_path / "s.csv"
    write_kaggle_csv(str(path), ["x"], np.array([[0.2, 0.4]]), k=20)
    assert path.read_text().splitlines()[1] == "x,1 0.400000 0 0.200000"
    path.write_text(KAGGLE_HEADER + "\r\nx,\r\n\r\ny,3 0.5\r\n")
    ids, labels, scores = read_kaggle_csv(str(path))
    assert ids == ["x", "y"] and labels[0].size == 0 and labels[1].tolist() == [3]
    assert scores[1].tolist() == [0.5]


@pytest.mark.parametrize("body,line,message", [
    ("", 1, "expected header"),
    ("VideoId,Labels\nx,1 0.5\n", 1, "expected header"),
    (KAGGLE_HEADER + "\nx,1 0.5 2\n", 2, "odd number of tokens"),
    (KAGGLE_HEADER + "\nx,1 0.5\ny,1.5 0.5\n", 3, "not an integer"),
    (KAGGLE_HEADER + "\nx,1 high\n", 2, "not a number"),
    (KAGGLE_HEADER + "\nx 1 0.5\n", 2, "expected 'VideoId"),
    (KAGGLE_HEADER + "\nx,1 0.5 1 0.4\n", 2, "more than once"),
    (KAGGLE_HEADER + "\nx,-1 0.5\n", 2, "negative label"),
    (KAGGLE_HEADER + "\nx,1 0.5\n\nx,2 0.5\n", 4, "already on line 2"),
])
def test_read_kaggle_csv_malformed(tmp_path, body, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(ValueError, match=message) as error:
        read_kaggle_csv(str(path))
    text = str(error.value)
    assert text.startswith(f"{path}:{line}: ") and "\n" not in text


def test_write_kaggle_csv_rejects_bad_ids_and_shapes(tmp_path):
    with pytest.raises(ValueError, match="comma"):
        write_kaggle_csv(str(tmp_path / "s.csv"), ["a,b"], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="shape"):
        write_kaggle_csv(str(tmp_path / "s.csv"), ["a", "b"], np.zeros((1, 3)))


def test_scores_from_pairs():
    dense = scores_from_pairs([np.array([2, 0]), np.array([], dtype=int)], [np.array([0.5, 0.25]), np.array([])], 3)
    assert dense.dtype == np.float32
    np.testing.assert_array_equal(dense, [[0.25, 0, 0.5], [0, 0, 0]])
    with pytest.raises(ValueError, match="outside"):
        scores_from_pairs([np.array([3])], [np.array([0.1])], 3)
    with pytest.raises(ValueError, match="labels but"):
        scores_from_pairs([np.array([1, 2])], [np.array([0.1])], 3)


def test_topk_store_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    scores = rng.random((40, 25)).astype(np.float32)
    labels = rng.random((40, 25)) < 0.1
    ids = [f"v{i}" for i in range(40)]
    path = str(tmp_path / "oof" / "fold0.npz")
    save_topk(path, ids, scores, k=5)
    loaded = load_topk(path)
    classes, values = top_k(scores, 5)
    assert loaded["video_ids"] == ids and loaded["num_classes"] == 25
    assert loaded["classes"].dtype == np.int32 and loaded["scores"].dtype == np.float32
    np.testing.assert_array_equal(loaded["classes"], classes)
    np.testing.assert_array_equal(loaded["scores"], values)
    dense = densify_topk(loaded["classes"], loaded["scores"], loaded["num_classes"])
    assert np.count_nonzero(dense, axis=1).tolist() == [5] * 40
    np.testing.assert_array_equal(np.take_along_axis(dense, classes, axis=1), values)
    assert gap_at_k(dense, labels, 5) == pytest.approx(gap_at_k(scores, labels, 5), abs=1e-12)


def test_load_topk_rejects_other_npz(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(ValueError, match="missing arrays"):
        load_topk(str(path))


def test_densify_topk_validates():
    with pytest.raises(ValueError, match="class ids"):
        densify_topk(np.array([[0, 5]]), np.array([[0.1, 0.2]]), 5)
    with pytest.raises(ValueError, match="more than once"):
        densify_topk(np.array([[1, 1]]), np.array([[0.1, 0.2]]), 5)


def test_open_routes_gcs_paths_to_gfile(monkeypatch):
    opened = []
    fake_gfile = types.SimpleNamespace(GFile=lambda path, mode: opened.append((path, mode)) or "handle")
    fake_tf = types.SimpleNamespace(io=types.SimpleNamespace(gfile=fake_gfile))
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    assert preds._open("gs://bucket/sub.csv", "w") == "handle"
    assert opened == [("gs://bucket/sub.csv", "w")]


def test_a_missing_full_predictions_file_names_the_file_and_what_should_have_written_it(tmp_path):
    missing = str(tmp_path / "oof_full.npy")
    with pytest.raises(FileNotFoundError, match=r"oof_full\.npy not found: set training\.full_predictions"):
        preds.load_full(missing, missing_hint="set training.full_predictions")
    ids, scores = ["a", "b"], np.array([[0.1, 0.9], [0.5, 0.25]], np.float32)
    preds.save_full(missing, ids, scores)
    loaded = preds.load_full(missing, missing_hint="set training.full_predictions")
    assert loaded["video_ids"] == ids and np.allclose(loaded["scores"], scores, atol=1e-3)
