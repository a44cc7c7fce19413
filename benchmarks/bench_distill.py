"""A distilled student next to its teacher (issue 15, "the distilled student is within 0.005 GAP of its teacher").

    python benchmarks/bench_distill.py [--settings c50-v2500,c100-v2500-noisy] [--work-dir DIR]
                                       [--out-dir benchmarks/results] [--students NAME,...]
    python benchmarks/bench_distill.py --teacher default --settings c100-v4000 \
                                       --students fcm-local-w0.5-full,fcm-local-w0.8-full --out-name distill_default

``--teacher video`` (the default): two video-level members (moe, resnet_like), trainable in seconds.
``--teacher default``: the members and combiner of the default local run (``yt8m_pipeline/configs/local.yaml``,
what ``make run`` trains: the logistic and frame_mil; before the eleventh session frame_conv_max), on ``c100-v4000``,
the data ``make run`` generates.

Per generator setting (``yt8m.synth``): generate, preprocess with the pipeline's Beam job
(``run_preprocess``, 2 folds + holdout), then the PRODUCTION library calls of the components:

1. teacher members: ``kfold.train_member`` (the fold tasks' OOF + the final member, as ``train_op`` /
   ``train_final_op``);
2. the teacher: ``ensemble.build_ensemble`` (the ensemble component) with the configured combiner,
   writing its OOF/holdout scores as soft labels, once ``topk`` (top 20) and once ``full``;
3. students: ``kfold.with_teacher`` + ``kfold.train_member`` on those soft labels (what the
   distillation round's tasks run), and the same student config WITHOUT a teacher (the control).

Reported per setting: every teacher member's and the teacher ensemble's holdout GAP@20, each
student's holdout GAP@20, its difference to the teacher and whether it is within 0.005. The teacher's
holdout GAP is the combiner's on the members' top-20 holdout predictions (``ensemble.json``), each
student's is its final member's on its dense holdout scores (``metrics.json``): both GAP@20 on the
same holdout videos. Writes ``distill.json`` / ``distill.md`` into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WITHIN = 0.005
SCALE = 1.0  # --examples-scale: every training's examples_to_see times this (a quick check of the harness)
FOLDS, HOLDOUT = 2, 0.2

# name -> (videos, classes, data seed, SynthParams overrides)
SETTINGS = {
    "c50-v2500": (2500, 50, 21, {}),
    "c100-v2500-noisy": (2500, 100, 22, {"miss_prob": 0.2, "spurious_prob": 0.2}),
    "smoke": (400, 12, 3, {}),
    "c100-v4000": (4000, 100, 7, {}),  # make run's data (local.yaml synth: 4,000 videos, 100 classes, seed 7)
}

VIDEO = {"batch_size": 128, "learning_rate": 0.01, "full_predictions": True}  # full: every class kept
# The teacher's members (video-level families: trainable in seconds on 2 cores) and its combiner.
EXAMPLES = 20_000
TEACHER_MEMBERS = [
    {"name": "moe", "family": "moe", "training": {**VIDEO, "examples_to_see": EXAMPLES}},
    {"name": "resnet", "family": "resnet_like", "training": {**VIDEO, "learning_rate": 0.003,
                                                             "examples_to_see": EXAMPLES}},
]
TEACHER_COMBINER = "weighted"


def default_run_teacher() -> tuple[list[dict], str]:
    """The default local run's members (every class kept in their predictions, as the pipeline does for full soft
    labels) and its combiner."""
    from yt8m import config as config_lib
    from yt8m_pipeline import local_run

    cfg = config_lib.load_run_config(local_run.default_config_path())
    members = [{**m, "training": {**m["training"], "full_predictions": True}} for m in config_lib.to_dict(cfg)["models"]]
    return members, cfg.ensemble.combiner


FCM_LOCAL = {"name": "frame_conv_max", "family": "frame_conv_max", "preset": "local"}
MIL_LOCAL = {"name": "frame_mil", "family": "frame_mil", "preset": "local"}

# name -> (student config, soft labels) ; each student also trains without a teacher (the control).
STUDENTS = {
    "moe-w0.5-top20": ({"name": "moe", "family": "moe", "training": {**VIDEO, "examples_to_see": EXAMPLES,
                                                                       "distill_weight": 0.5}}, "topk"),
    "moe-w0.5-full": ({"name": "moe", "family": "moe", "training": {**VIDEO, "examples_to_see": EXAMPLES,
                                                                      "distill_weight": 0.5}}, "full"),
    "moe-w0.8-full": ({"name": "moe", "family": "moe", "training": {**VIDEO, "examples_to_see": EXAMPLES,
                                                                      "distill_weight": 0.8}}, "full"),
    "resnet-w0.8-full": ({"name": "resnet", "family": "resnet_like",
                          "training": {**VIDEO, "learning_rate": 0.003, "examples_to_see": EXAMPLES,
                                       "distill_weight": 0.8}}, "full"),
    # students of the default run's teacher: its frame-level member (recipe: 60,000 examples, Adam 1e-3, batch 32)
    **{f"fcm-local-w{w}-full": ({**FCM_LOCAL, "training": {"examples_to_see": 60_000, "distill_weight": w}}, "full")
       for w in (0.5, 0.8)},
    # ... trained twice as long; with the mean-pooled frames beside its trunk (mean_skip: a path to mimic the
    # teacher's logistic member)
    **{f"fcm-local-{n // 1000}k-w0.5-full": ({**FCM_LOCAL, "training": {"examples_to_see": n, "distill_weight": 0.5}},
                                            "full") for n in (120_000, 240_000)},
    "fcm-local-meanskip-w0.5-full": ({**FCM_LOCAL, "overrides": {"mean_skip": True},
                                      "training": {"examples_to_see": 60_000, "distill_weight": 0.5}}, "full"),
    # students of the default run's teacher since the eleventh session: its frame-level member frame_mil
    # (recipe: 90,000 examples, Adam 1e-3, batch 32), at the recipe's length and twice it
    **{f"mil-local-{n // 1000}k-w0.5-full": ({**MIL_LOCAL, "training": {"examples_to_see": n, "distill_weight": 0.5}},
                                            "full") for n in (90_000, 180_000)},
}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def prepare_data(name: str, work: str) -> str:
    from beam_jobs.preprocess import run_preprocess
    from yt8m import synth

    videos, classes, seed, overrides = SETTINGS[name]
    ds_dir = os.path.join(work, name, "dataset")
    if os.path.exists(os.path.join(ds_dir, "dataset.json")):
        return ds_dir
    raw = os.path.join(work, name, "raw")
    synth.generate(raw, videos=videos, classes=classes, seed=seed, splits=(("train", 1.0),), progress=False,
                   params=synth.SynthParams(**overrides))
    run_preprocess(os.path.join(raw, "train", "*.tfrecord"), ds_dir, classes, FOLDS, HOLDOUT, runner="local",
                   write_report=False, standardized_features=True)  # the default run's logistic trains on them
    return ds_dir


REPORT_ONLY = False  # --report-only: read what a run left in --work-dir, train nothing
SKIP_CONTROLS = False  # --skip-controls: no teacher-less control for a student unless a teacher member is one


def train(spec: dict, ds_dir: str, out: str, teacher_dir: str | None = None) -> dict | None:
    from yt8m import config as config_lib
    from yt8m import kfold

    if os.path.exists(os.path.join(out, "metrics.json")):
        return json.load(open(os.path.join(out, "metrics.json")))
    if REPORT_ONLY:
        return None
    if SCALE != 1:
        spec = {**spec, "training": {**spec["training"],
                                     "examples_to_see": int(spec["training"]["examples_to_see"] * SCALE)}}
    cfg = kfold.with_teacher(config_lib.model_config_from_dict(spec), teacher_dir)
    return kfold.train_member(cfg, ds_dir, out)


def run_setting(name: str, work: str, students: list[str], teacher_kind: str = "video") -> dict:
    from yt8m import ensemble, readers, training

    started = time.time()
    ds_dir = prepare_data(name, work)
    ds = training.open_dataset(ds_dir)
    labels = {split: readers.read_id_labels(training.dataset_files(ds, "video", names))
              for split, names in (("oof", ds.fold_names), ("holdout", [ds.holdout]))}
    members, combiner = default_run_teacher() if teacher_kind == "default" else (TEACHER_MEMBERS, TEACHER_COMBINER)
    member_dirs = []
    for spec in members:
        member_dirs.append(os.path.join(work, name, f"{teacher_kind}-members", spec["name"]))
        train(spec, ds_dir, member_dirs[-1])
    teachers = {}
    for kind in ("topk", "full"):
        out = os.path.join(work, name, f"{teacher_kind}-teacher-{kind}")
        if REPORT_ONLY or os.path.exists(os.path.join(out, "ensemble.json")):
            teachers[kind] = {"dir": os.path.join(out, "soft_labels"),
                              "report": json.load(open(os.path.join(out, "ensemble.json")))}
            continue
        shutil.rmtree(out, ignore_errors=True)
        report = ensemble.build_ensemble(member_dirs, out, ds.num_classes, labels["holdout"], labels["oof"],
                                         transform_dir=ds.transform_path, combiner=combiner,
                                         compression="none", soft_labels=kind, soft_label_top_k=20,
                                         soft_label_dir=os.path.join(out, "soft_labels"))
        teachers[kind] = {"dir": os.path.join(out, "soft_labels"), "report": report}
    teacher = teachers["topk"]["report"]
    row = {"setting": name, "videos": SETTINGS[name][0], "classes": SETTINGS[name][1],
           "synth_overrides": SETTINGS[name][3], "holdout_videos": ds.num_videos([ds.holdout]),
           "teacher": {"kind": teacher_kind, "combiner": combiner, "holdout_gap": teacher["holdout_gap"],
                       "oof_gap": teacher["oof_gap"], "weights": teacher["weights"],
                       "members": {m["name"]: m["holdout_gap"] for m in teacher["members"]},
                       "soft_labels": {k: {key: v["report"]["soft_labels"][key]
                                           for key in v["report"]["soft_labels"] if key != "files"}
                                       for k, v in teachers.items()}},
           "students": {}}
    print(f"[{name}] teacher ({combiner} of {', '.join(row['teacher']['members'])}) holdout GAP@20 "
          f"{teacher['holdout_gap']:.4f}; members " +
          ", ".join(f"{k} {v:.4f}" for k, v in row["teacher"]["members"].items()), flush=True)
    controls = {}
    for student in students:
        spec, kind = STUDENTS[student]
        taught = train(spec, ds_dir, os.path.join(work, name, f"{teacher_kind}-students", student),
                       teachers[kind]["dir"])
        if taught is None:
            continue
        control_key = json.dumps({**spec, "training": {k: v for k, v in spec["training"].items()
                                                       if k != "distill_weight"}}, sort_keys=True)
        same_as_member = [d for m, d in zip(members, member_dirs)
                          if (m["family"], m["preset"], m.get("overrides") or {}, m["training"]["examples_to_see"])
                          == (spec["family"], spec.get("preset"), spec.get("overrides") or {},
                              spec["training"]["examples_to_see"])]
        if control_key not in controls and same_as_member and teacher_kind == "default":
            # the student's config is a teacher member's (the recipe's length): that member is the control
            controls[control_key] = json.load(open(os.path.join(same_as_member[0], "metrics.json")))["holdout"]["gap"]
        if control_key not in controls and SKIP_CONTROLS:
            controls[control_key] = float("nan")
        if control_key not in controls:
            control_dir = os.path.join(work, name, "controls", f"{student}-control")
            control = train(spec, ds_dir, control_dir)
            controls[control_key] = control["holdout"]["gap"] if control else float("nan")
        gap = taught["holdout"]["gap"]
        result = {"family": spec["family"], "soft_labels": kind, "distill_weight": spec["training"]["distill_weight"],
                  "examples_to_see": int(spec["training"]["examples_to_see"] * SCALE), "holdout_gap": gap,
                  "minus_teacher": gap - teacher["holdout_gap"], "within_0.005": gap >= teacher["holdout_gap"] - WITHIN,
                  "without_teacher_holdout_gap": controls[control_key], "final_member_seconds": taught["train_seconds"],
                  "final_examples_per_second": taught["training"]["examples_per_second"]}
        row["students"][student] = result
        print(f"[{name}] student {student}: holdout GAP@20 {gap:.4f} ({result['minus_teacher']:+.4f} vs teacher "
              f"{teacher['holdout_gap']:.4f}; within 0.005: {result['within_0.005']}); without a teacher "
              f"{controls[control_key]:.4f}; load {_load()}", flush=True)
    row["seconds"] = None if REPORT_ONLY else round(time.time() - started, 1)
    return row


def write_markdown(rows: list[dict], path: str) -> None:
    lines = ["# A distilled student next to its teacher (`benchmarks/bench_distill.py`)", "",
             f"Generated data, {FOLDS} folds + {int(HOLDOUT * 100)}% holdout; the teacher is the "
             "ensemble of the members below (build_ensemble, the combiner named per setting), students train on its OOF soft labels "
             "(kfold.train_member with the teacher; distill_weight w). Holdout GAP@20; 'without' is the same "
             "student config trained without a teacher. Machine: "
             f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs (the seconds are indicative "
             "only; distill.md: load average 11-19, distill_default.md: 2.8-9.6, distill_mil.md: 1.5-7.0).", ""]
    for row in rows:
        t = row["teacher"]
        lines += [f"## {row['setting']} ({row['videos']} videos, {row['classes']} classes, "
                  f"{row['holdout_videos']} holdout videos, synth {row['synth_overrides'] or 'defaults'})", "",
                  f"Teacher: {t['combiner']} ensemble **{t['holdout_gap']:.4f}** holdout, {t['oof_gap']:.4f} OOF "
                  "(the OOF soft labels: fold models trained on the other folds only; weights "
                  f"{[round(w, 2) for w in t['weights']]}); members " +
                  ", ".join(f"{k} {v:.4f}" for k, v in t["members"].items()) + ". Top-20 soft labels leave "
                  f"{100 * t['soft_labels']['topk']['oof_mass_outside_top_k']:.2f}% of the OOF teacher's mass out.", "",
                  "| student | soft labels | w | examples | holdout GAP@20 | minus teacher | within 0.005 | "
                  "without teacher | final member s (examples/s) |", "|---|---|---|---|---|---|---|---|---|"]
        for name, s in row["students"].items():
            lines.append(f"| {name} | {s['soft_labels']} | {s['distill_weight']} | {s['examples_to_see']:,} | "
                         f"{s['holdout_gap']:.4f} | {s['minus_teacher']:+.4f} | {'yes' if s['within_0.005'] else 'no'}"
                         f" | {s['without_teacher_holdout_gap']:.4f} | {s['final_member_seconds']} "
                         f"({s['final_examples_per_second']}) |")
        lines += ["", f"Setting wall time {row['seconds']} s." if row["seconds"] else "", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="c50-v2500,c100-v2500-noisy")
    parser.add_argument("--students", default=",".join(STUDENTS))
    parser.add_argument("--examples-scale", type=float, default=1.0, help="scale every examples_to_see (smoke)")
    parser.add_argument("--report-only", action="store_true",
                        help="only read the teachers and students a run left in --work-dir (nothing is trained)")
    parser.add_argument("--work-dir", help="keep data and models here (reused when present); default a temp dir")
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--skip-controls", action="store_true",
                        help="train no teacher-less control per student (a teacher member with its config still is one)")
    parser.add_argument("--out-name", default="distill", help="writes OUT_NAME.json and OUT_NAME.md")
    parser.add_argument("--teacher", choices=("video", "default"), default="video",
                        help="video: moe + resnet_like (weighted); default: the default local run's members and "
                             "combiner (yt8m_pipeline/configs/local.yaml)")
    args = parser.parse_args(argv)
    global SCALE, REPORT_ONLY, SKIP_CONTROLS
    SCALE, REPORT_ONLY, SKIP_CONTROLS = args.examples_scale, args.report_only, args.skip_controls
    work = args.work_dir or tempfile.mkdtemp(prefix="bench-distill-")
    rows = []
    for name in args.settings.split(","):
        rows.append(run_setting(name, work, args.students.split(","), args.teacher))
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, f"{args.out_name}.json"), "w") as f:
            json.dump(rows, f, indent=1)
        write_markdown(rows, os.path.join(args.out_dir, f"{args.out_name}.md"))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    print(os.path.join(args.out_dir, f"{args.out_name}.md"), f"(load average now {_load()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
