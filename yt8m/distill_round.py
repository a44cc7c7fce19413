"""What a distillation round passes on (issue 15): its students' ensemble, or its teacher when that is better.

Round n's students train on the soft labels of round n-1's ensemble (their teacher) and are ensembled in turn.
Under the ``best`` rule (``config.DistillationConfig.keep``, the default) the students' ensemble replaces its
teacher only when its holdout GAP@20 (of the served graph, as the gate measures it) is higher; otherwise the
round passes the teacher on unchanged: its merged model (what the gate checks and publishing ships when this
is the last round) and its soft labels (the next round's teacher). The ``students`` rule always passes the
students on (the 2018 1st place team's published graph was its students; a run without the rule published
its students 0.035 under their stacker teacher, README "Distillation").

Holdout, not out-of-fold: the students' OOF GAP is inflated. A student's fold-k model learns from the
teacher's OOF scores of the other folds, which come from teacher models that trained on fold k's labels. On
`make run`'s data (seed 8, two students) the students' stacked ensemble scored 0.805 OOF and 0.766 on the
holdout, its teacher 0.680 and 0.753. The price of choosing on the holdout: the gate's holdout GAP of the
chosen graph is slightly optimistic (the better of two noisy estimates).

Either way ``ensemble.json`` gets a ``distillation`` record: the round, the rule, which ensemble was kept and
both ensembles' GAPs; a kept teacher's folder also holds the students' report as ``students_ensemble.json``.
"""

from __future__ import annotations

import logging

from yt8m import storage

log = logging.getLogger(__name__)

RULES = ("best", "students")  # config.DISTILLATION_KEEP
ENSEMBLE_REPORT = "ensemble.json"
STUDENTS_REPORT = "students_ensemble.json"


def served_holdout_gap(report: dict) -> float:
    """An ensemble's holdout GAP@20 as the gate measures it: of the served (compressed) graph when the ensemble
    step scored it, else of its combiner."""
    served = report.get("holdout_gap_compressed")
    return float(served if served is not None else report["holdout_gap"])


def keeps_teacher(students: dict, teacher: dict, rule: str) -> bool:
    """Whether a round keeps its teacher: under ``best``, when the students' ensemble's served holdout GAP@20 is
    lower (``served_holdout_gap``)."""
    if rule not in RULES:
        raise ValueError(f"distillation rule: expected one of {', '.join(RULES)}, got {rule!r}")
    return rule == "best" and served_holdout_gap(students) < served_holdout_gap(teacher)


def record(students: dict, teacher: dict, round_number: int, rule: str, kept: str) -> dict:
    """The ``distillation`` entry of the round's ``ensemble.json``."""
    return {"round": round_number, "rule": rule, "kept": kept, "compared": "served holdout GAP@20",
            "students": [m["name"] for m in students.get("members", [])],
            "students_combiner": students.get("combiner"), "students_oof_gap": students["oof_gap"],
            "students_holdout_gap": served_holdout_gap(students),
            "teacher_combiner": teacher.get("combiner"), "teacher_oof_gap": teacher["oof_gap"],
            "teacher_holdout_gap": served_holdout_gap(teacher)}


def teacher_report(teacher_dir: str) -> dict:
    """The previous round's ensemble report (``ensemble.json`` in its merged-model folder)."""
    return storage.read_json(storage.join(teacher_dir, ENSEMBLE_REPORT))


def finish_round(output_dir: str, students: dict, teacher_dir: str, round_number: int, rule: str = "best",
                 soft_label_dir: str | None = None, teacher_soft_label_dir: str | None = None,
                 teacher: dict | None = None) -> dict:
    """Decide round ``round_number`` and leave what it passes on in ``output_dir`` (and ``soft_label_dir``).

    ``output_dir`` holds the students' ensemble (``ensemble.build_ensemble``'s output, report ``students``);
    ``teacher_dir`` the previous round's (its ``ensemble.json`` is the teacher's report). Returns the report
    now in ``output_dir/ensemble.json``: the students' or the teacher's, with the ``distillation`` record.
    ``teacher``: the teacher's report when the caller has already read it.
    """
    if teacher is None:
        teacher = teacher_report(teacher_dir)
    if not keeps_teacher(students, teacher, rule):
        report = dict(students, distillation=record(students, teacher, round_number, rule, "students"))
        storage.write_json(storage.join(output_dir, ENSEMBLE_REPORT), report)
        log.info("distillation round %d: the students' ensemble (served holdout GAP@20 %.4f, OOF %.4f) replaces its "
                 "teacher (holdout %.4f, OOF %.4f)", round_number, served_holdout_gap(students), students["oof_gap"],
                 served_holdout_gap(teacher), teacher["oof_gap"])
        return report
    storage.gfile.rmtree(output_dir)
    storage.copy_tree(teacher_dir, output_dir)
    storage.write_json(storage.join(output_dir, STUDENTS_REPORT), students)
    report = dict(teacher, distillation=record(students, teacher, round_number, rule, "teacher"))
    storage.write_json(storage.join(output_dir, ENSEMBLE_REPORT), report)
    if soft_label_dir is not None and teacher_soft_label_dir is not None:
        if storage.gfile.exists(soft_label_dir):
            storage.gfile.rmtree(soft_label_dir)
        storage.copy_tree(teacher_soft_label_dir, soft_label_dir)
    log.warning("distillation round %d: KEPT THE TEACHER: the students' ensemble (served holdout GAP@20 %.4f, OOF "
                "%.4f) is under its teacher (holdout %.4f, OOF %.4f); the round passes the teacher on (rule %r)",
                round_number, served_holdout_gap(students), students["oof_gap"], served_holdout_gap(teacher),
                teacher["oof_gap"], rule)
    return report
