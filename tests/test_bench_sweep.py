"""benchmarks/bench_sweep.py's own parts: the distillation run config and the extra test split."""

from __future__ import annotations

import glob
import importlib.util
import os

import pytest

from yt8m import config, synth
from yt8m_pipeline import local_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_sweep", os.path.join(ROOT, "benchmarks", "bench_sweep.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_distillation_section_is_added_to_the_default_run_config(bench, tmp_path):
    """The distillation benchmark's config is the default run config plus one round: the members stay local.yaml's
    (one owner), the round is the benchmark file's, and the result is checked like any run config."""
    path = bench.with_distillation(None, os.path.join(ROOT, "benchmarks", "configs", "distill_one_student.yaml"),
                                   str(tmp_path / "run.yaml"))
    cfg = config.load_run_config(path)
    default = config.load_run_config(local_run.default_config_path()).models
    assert [(m.name, m.preset, m.training.examples_to_see) for m in cfg.models] == [
        (m.name, m.preset, m.training.examples_to_see) for m in default]
    assert all(m.training.full_predictions for m in cfg.models)  # full soft labels: the members write every class
    d = cfg.distillation
    assert (d.rounds, d.soft_labels, d.distill_weight, d.keep) == (1, "full", 0.5, "students")
    assert [(s.family, s.training.examples_to_see) for s in d.students] == [("frame_mil", 180_000)]
    (tmp_path / "extra.yaml").write_text("distillation: {rounds: 1}\nmodels: []\n")
    with pytest.raises(SystemExit, match="expected only a 'distillation:' section"):
        bench.with_distillation(None, str(tmp_path / "extra.yaml"), str(tmp_path / "run2.yaml"))
    with pytest.raises(SystemExit, match="missing.yaml: config file not found"):
        bench.with_distillation(None, str(tmp_path / "missing.yaml"), str(tmp_path / "run3.yaml"))
    (tmp_path / "bad.yaml").write_text("distillation: {rounds: -1}\n")
    with pytest.raises(SystemExit, match=r"--distillation .*bad.yaml: .*rounds"):
        bench.with_distillation(None, str(tmp_path / "bad.yaml"), str(tmp_path / "run4.yaml"))


def _files(root: str, split: str) -> dict[str, bytes]:
    return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(os.path.join(root, split, "*")))}


def test_the_extra_test_split_leaves_the_settings_data_unchanged(bench, tmp_path):
    """--extra-test adds videos of the same world without changing a byte of train, validate or test, so a run on
    the setting is the same run with or without it, and the extra videos are new ones."""
    params = synth.SynthParams()
    bench.generate(str(tmp_path / "plain"), 60, 5, params)
    bench.generate(str(tmp_path / "extra"), 60, 5, params, extra_test=25)
    for split in ("train", "validate", "test"):
        assert _files(str(tmp_path / "plain"), split) == _files(str(tmp_path / "extra"), split)
    ids = {split: set(synth.read_clean_labels(str(tmp_path / "extra" / "oracle" / f"{split}_clean_labels.csv")))
           for split in ("train", "validate", "test", bench.EXTRA_TEST)}
    assert len(ids[bench.EXTRA_TEST]) == 25
    assert not ids[bench.EXTRA_TEST] & (ids["train"] | ids["validate"] | ids["test"])


def test_the_distillation_table_reports_each_split_difference(bench):
    row = {"setting": "s", "classes": 3, "videos": 10, "run_seconds": 1.0, "exit_status": 0, "extra_test_videos": 5,
           "published_extra_test_gap": 0.7,
           "distillation": {"kept": "students", "teacher_holdout_gap": 0.80, "students_holdout_gap": 0.81,
                            "students": {"st": 0.78}, "students_test": {"st": 0.69}, "teacher_test_gap": 0.70, "students_test_gap": 0.68,
                            "teacher_extra_test_gap": 0.75, "students_extra_test_gap": 0.752}}
    md = bench.markdown([row], "c")
    assert "| s | 0.800 | st 0.780 / 0.690 | 0.810 | +0.0100 | 0.700 | 0.680 | -0.0200 | 0.750 | 0.752 | +0.0020 | students |" in md
    assert "published (extra test)" in md
