"""The preprocess component's UI outputs: flat count metrics per split / reason and the HTML report artifact."""

import os

from yt8m import data_report, synth
from yt8m_pipeline.components.preprocess import preprocess_op


class _Artifact:
    def __init__(self, path, uri=None):
        self.path, self.uri, self.metadata = path, uri or path, {}
        self.logged = {}

    def log_metric(self, key, value):
        self.logged[key] = value


def test_count_metrics_flatten_every_split_and_reason():
    total = {"read": 10, "written_total": 8, "quarantined_total": 2, "written": {"fold-0": 5, "holdout": 3},
             "quarantined": {"zero_frames": 2, "missing_id": 0}, "unreadable_bytes": 7,
             "unreadable_files": {"truncated": 1}}
    metrics = data_report.count_metrics(total)
    assert metrics == {"records_read": 10, "records_written_total": 8, "records_quarantined_total": 2,
                       "written_fold-0": 5, "written_holdout": 3, "quarantined_zero_frames": 2,
                       "quarantined_missing_id": 0, "unreadable_bytes": 7, "unreadable_files_truncated": 1}


def test_preprocess_component_asks_the_job_for_standardized_features_and_records_it(tmp_path, monkeypatch):
    from yt8m_pipeline.beam_jobs import preprocess

    asked = {}
    total = {"read": 3, "written_total": 3, "quarantined_total": 0, "written": {"fold-0": 3}, "quarantined": {},
             "unreadable_bytes": 0, "unreadable_files": {}}

    def run_preprocess(input_pattern, output_dir, **kwargs):
        asked.update(kwargs)
        return {"total": total}

    monkeypatch.setattr(preprocess, "run_preprocess", run_preprocess)  # the job itself: tests/test_preprocess.py
    dataset = _Artifact(str(tmp_path / "ds"))
    preprocess_op.python_func(raw_data=_Artifact("gs://b/train*.tfrecord"), data_fingerprint="sha256:x",
                              num_classes=8, folds=2, holdout_fraction=0.2, runner="local", dataset=dataset,
                              counts=_Artifact(str(tmp_path / "m")), report=_Artifact(str(tmp_path / "r.html")),
                              standardized_features=True)
    assert asked["standardized_features"] is True and dataset.metadata["standardized_features"] is True


def test_preprocess_component_logs_the_counts_and_publishes_the_html_report(tmp_path):
    data = tmp_path / "raw"
    synth.generate(str(data), videos=40, classes=8, seed=2, progress=False)
    raw = _Artifact(str(data / "train" / "*.tfrecord"))
    dataset, counts, report = _Artifact(str(tmp_path / "ds")), _Artifact(str(tmp_path / "m")), \
        _Artifact(str(tmp_path / "report.html"))
    preprocess_op.python_func(raw_data=raw, data_fingerprint="sha256:x", num_classes=8, folds=2,
                              holdout_fraction=0.2, runner="local", dataset=dataset, counts=counts, report=report)
    assert counts.logged["records_read"] == dataset.metadata["records_read"] > 0
    assert dataset.metadata["standardized_features"] is False  # not asked: the plain means only
    assert {"written_fold-0", "written_fold-1", "written_holdout", "quarantined_zero_frames",
            "unreadable_bytes"} <= set(counts.logged)
    page = open(report.path).read()
    assert "<svg" in page and os.path.getsize(report.path) > 1000
    assert not data_report.copy_report(str(tmp_path / "nowhere"), str(tmp_path / "none.html"))
    assert "wrote no report.html" in open(tmp_path / "none.html").read()
