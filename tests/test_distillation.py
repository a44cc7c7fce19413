"""Distillation rounds (issue 15): the ensemble's soft labels as the students' teacher, in the library and
through `yt8m run --local` end to end."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml

from yt8m import config as config_lib
from yt8m import distill, distill_round, ensemble, kfold, predictions, storage


def test_a_student_trains_on_the_oof_soft_labels_of_its_teacher_ensemble(tmp_path):
    student = config_lib.model_config_from_dict({"name": "s", "family": "moe", "training": {"distill_weight": 0.3}})
    assert kfold.with_teacher(student, None) is student
    taught = kfold.with_teacher(student, str(tmp_path / "soft"))
    assert taught.training.teacher_predictions == str(tmp_path / "soft" / kfold.TEACHER_FILE)
    assert taught.training.distill_weight == 0.3 and taught.name == "s"


@pytest.mark.parametrize("kind", ["topk", "full"])
def test_the_teacher_table_reads_topk_and_full_soft_labels_as_the_combined_scores(tmp_path, kind):
    ids = [f"v{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    dense = [rng.uniform(0, 1, (6, 8)).astype(np.float32) for _ in range(2)]
    paths = []
    for m, d in enumerate(dense):
        paths.append(str(tmp_path / f"m{m}.npz"))
        predictions.save_topk(paths[-1], ids, d, 4)
    table = ensemble.topk_table(paths, {v: [0] for v in ids})
    combined = np.where(table.classes >= 0, table.scores.mean(axis=0), 0.0)
    # every class's probability from the members' full predictions (rows in the table's video order)
    full = ensemble.full_teacher(table, [(d.astype(np.float16), np.asarray([ids.index(v) for v in table.video_ids]))
                                         for d in dense], [0.5, 0.5])
    report = ensemble.write_soft_labels({"oof": table}, {"oof": combined}, str(tmp_path / "t"), 8, kind, 3,
                                        full={"oof": full})
    teacher = distill.TeacherTable(report["files"]["oof"], 8)
    got, found = teacher.dense(tf.constant(ids[::-1] + ["unknown"]))
    assert found.numpy().tolist() == [True] * 6 + [False] and not got.numpy()[-1].any()
    expected = ((dense[0] + dense[1]) / 2)[::-1]  # the teacher = the average of the members, every class
    if kind == "topk":  # each video's 3 best teacher scores; the rest is what the cut loses
        cut = np.sort(expected, axis=1)[:, -3][:, None]
        expected = np.where(expected >= cut, expected, 0)
        assert report["files"]["oof"].endswith(".npz") and teacher.classes.shape[1] == 3
        np.testing.assert_allclose(got.numpy()[:6], expected, atol=2e-3)  # float16 full teacher, then cut
    else:
        assert report["files"]["oof"].endswith(".npy") and report["oof_bytes"] <= 6 * 8 * 2 + 128
        np.testing.assert_allclose(got.numpy()[:6], expected, atol=1e-3)  # float16
    assert 0.3 < report["oof_mass_outside_top_k"] < 0.7  # the 5 smallest of 8 scores per video are cut
    with pytest.raises(ValueError, match="needs the teacher's every-class scores"):
        ensemble.write_soft_labels({"oof": table}, {"oof": combined}, str(tmp_path / "u"), 8, "full", 3)


def test_distillation_config_is_validated_on_load():
    moe = {"name": "m", "family": "moe"}
    for section, message in (({"rounds": 1}, "distillation.students: rounds is 1, but no student"),
                             ({"rounds": 1, "soft_labels": "dense", "students": [moe]},
                              "distillation.soft_labels: expected one of topk, full"),
                             ({"top_k": 0}, "distillation.top_k: must be >= 1"),
                             ({"distill_weight": 1.5}, "distillation.distill_weight: must be"),
                             ({"keep": "last"}, "distillation.keep: expected one of best, students"),
                             ({"rounds": 1, "students": [{**moe, "training": {"teacher_predictions": "x.npz"}}]},
                              "students\\[0\\].training.teacher_predictions")):
        with pytest.raises(config_lib.ConfigError, match=message):
            config_lib.run_config_from_dict({"models": [moe], "distillation": section}, "run")
    cfg = config_lib.run_config_from_dict({"models": [moe], "distillation": {
        "rounds": 1, "distill_weight": 0.7, "students": [moe, {"name": "n", "family": "moe",
                                                                 "training": {"distill_weight": 0.2}}]}}, "run")
    assert [s.training.distill_weight for s in cfg.distillation.students] == [0.7, 0.2]
    assert config_lib.run_config_from_dict(config_lib.to_dict(cfg)) == cfg  # the pipeline's run_config parameter
    assert config_lib.run_config_from_dict({"models": [moe]}).distillation.rounds == 0  # off by default
    assert config_lib.DistillationConfig().keep == "best" and config_lib.DISTILLATION_KEEP == distill_round.RULES


def _ensemble_dir(path, name: str, holdout_gap: float, soft: str, oof_gap: float = 0.5):
    """A round's outputs as the ensemble step leaves them: the merged model folder and its soft labels folder."""
    storage.gfile.makedirs(str(path / "model" / "saved_model"))
    (path / "model" / "saved_model" / "saved_model.pb").write_text(name)
    report = {"members": [{"name": name}], "combiner": "stacking", "oof_gap": oof_gap, "holdout_gap": 0.0,
              "holdout_gap_compressed": holdout_gap}  # the served graph's GAP is what counts
    storage.write_json(str(path / "model" / "ensemble.json"), report)
    storage.gfile.makedirs(str(path / "soft"))
    (path / "soft" / "oof_teacher.npy").write_text(soft)
    return report


@pytest.mark.parametrize("students_holdout, rule, kept", [(0.70, "best", "teacher"), (0.76, "best", "students"),
                                                          (0.75, "best", "students"), (0.70, "students", "students")])
def test_a_round_passes_on_its_students_only_when_they_beat_their_teacher_on_the_holdout(tmp_path, students_holdout,
                                                                                         rule, kept):
    teacher = _ensemble_dir(tmp_path / "round0", "members", 0.75, "teacher labels", oof_gap=0.6)
    # the students' OOF GAP is inflated (yt8m/distill_round.py): it never decides
    students = _ensemble_dir(tmp_path / "round1", "students", students_holdout, "student labels", oof_gap=0.9)
    out, soft = str(tmp_path / "round1" / "model"), str(tmp_path / "round1" / "soft")
    report = distill_round.finish_round(out, students, str(tmp_path / "round0" / "model"), 1, rule, soft,
                                        str(tmp_path / "round0" / "soft"))
    assert report["distillation"] == {
        "round": 1, "rule": rule, "kept": kept, "compared": "served holdout GAP@20", "students": ["students"],
        "students_combiner": "stacking", "students_oof_gap": 0.9, "students_holdout_gap": students_holdout,
        "teacher_combiner": "stacking", "teacher_oof_gap": 0.6, "teacher_holdout_gap": 0.75}
    assert storage.read_json(os.path.join(out, "ensemble.json")) == report
    winner = "members" if kept == "teacher" else "students"
    assert report["members"] == [{"name": winner}]
    assert open(os.path.join(out, "saved_model", "saved_model.pb")).read() == winner  # the model the gate checks
    assert open(os.path.join(soft, "oof_teacher.npy")).read() == (  # the next round's teacher
        "teacher labels" if kept == "teacher" else "student labels")
    students_report = os.path.join(out, distill_round.STUDENTS_REPORT)
    assert (storage.read_json(students_report) == students) if kept == "teacher" else not os.path.exists(
        students_report)


def test_an_unknown_round_rule_is_refused():
    with pytest.raises(ValueError, match="distillation rule: expected one of best, students, got 'last'"):
        distill_round.keeps_teacher({"oof_gap": 0.5}, {"oof_gap": 0.6}, "last")


@pytest.mark.slow
def test_one_round_of_distillation_runs_end_to_end_and_reports_the_student_next_to_its_teacher(tmp_path):
    config = tmp_path / "distill.yaml"
    config.write_text(yaml.safe_dump({
        "synth": {"videos": 400, "classes": 12, "seed": 3},
        "data": {"num_classes": 12, "folds": 2, "holdout_fraction": 0.2},
        "models": [{"name": "moe", "family": "moe", "training": {"epochs": 2, "batch_size": 32}}],
        "ensemble": {"combiner": "stacking"},
        "distillation": {"rounds": 1, "soft_labels": "topk", "top_k": 20,
                         "students": [{"name": "student", "family": "moe",
                                       "training": {"epochs": 2, "batch_size": 32, "seed": 1}}]},
        "gate": {"min_gap": 0.0, "compare_with_previous": False},
    }))
    workdir = tmp_path / "w"
    run = subprocess.run([sys.executable, "-P", "-m", "yt8m_pipeline.cli", "run", "--local", "--config", str(config),
                          "--workdir", str(workdir)], capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [teacher_json] = glob.glob(str(workdir / "**" / "ensemble-op" / "merged_model" / "ensemble.json"), recursive=True)
    [round_json] = glob.glob(str(workdir / "**" / "ensemble-op-2" / "merged_model" / "ensemble.json"), recursive=True)
    teacher, passed_on = json.load(open(teacher_json)), json.load(open(round_json))
    # distillation.keep best (the default): the round passes on the students' ensemble only when its served
    # holdout GAP is higher than the teacher's; a kept teacher's folder holds the students' report beside its own
    served = distill_round.served_holdout_gap
    assert passed_on["distillation"]["teacher_holdout_gap"] == served(teacher) == teacher["holdout_gap_compressed"]
    kept = "teacher" if passed_on["distillation"]["students_holdout_gap"] < served(teacher) else "students"
    assert passed_on["distillation"]["kept"] == kept and passed_on["distillation"]["rule"] == "best"
    students_json = os.path.join(os.path.dirname(round_json), distill_round.STUDENTS_REPORT)
    student = json.load(open(students_json)) if kept == "teacher" else passed_on
    assert os.path.exists(students_json) == (kept == "teacher")
    assert served(passed_on) == max(served(teacher), served(student))
    assert [m["name"] for m in teacher["members"]] == ["moe"] and [m["name"] for m in student["members"]] == ["student"]
    # the students' ensemble reports its teacher (the members' stacked ensemble) beside itself
    assert student["teacher"]["holdout_gap"] == teacher["holdout_gap"] and student["teacher"]["combiner"] == "stacking"
    assert 0 < student["holdout_gap"] <= 1 and "stacking" in student["combiners"]
    # the student was trained on the teacher's OOF soft labels
    soft = teacher["soft_labels"]["files"]["oof"]
    assert os.path.exists(soft) and predictions.load_topk(soft)["classes"].shape[1] == 12  # top 20 of 12 classes
    [student_dir] = [m["dir"] for m in student["members"]]
    student_cfg = config_lib.load_model_config(storage.join(student_dir, "model_config.yaml"))
    assert student_cfg.training.teacher_predictions == storage.join(os.path.dirname(soft), kfold.TEACHER_FILE)
    # the gate and publish took what the round passed on
    published = run.stdout.strip().splitlines()[-1]
    manifest = storage.read_json(os.path.join(published, "manifest.json"))
    print(json.dumps({"teacher": {k: teacher[k] for k in ("oof_gap", "holdout_gap")},
                      "teacher_combiners": teacher["combiners"], "teacher_members": teacher["members"],
                      "student": {k: student[k] for k in ("oof_gap", "holdout_gap")},
                      "student_members": student["members"], "soft_labels": teacher["soft_labels"],
                      "distillation": passed_on["distillation"], "manifest_keys": sorted(manifest)}, default=str))
    assert manifest["ensemble"]["distillation"] == passed_on["distillation"]
    assert manifest["ensemble"]["members"] == passed_on["members"]
