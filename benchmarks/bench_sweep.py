"""The default local run across generator settings (issue 14: defaults that hold up off the generator).

    python benchmarks/bench_sweep.py [--settings NAME,...] [--config PATH] [--work-dir DIR]
                                     [--out-dir benchmarks/results]

For each generator setting below (classes 25 to 400, 2,500 to 10,000 videos, label noise, evidence
kinds, audio-only classes) it generates a YT8M-format dataset (``yt8m.synth``; train and test splits),
then runs the PRODUCTION path, ``yt8m run --local --data TRAIN --test-data TEST --num-classes C``
with the default run config (or ``--config``), as a user would, and reads what the run wrote:

- the published model's holdout GAP@20 (the gate's) and its TEST-split GAP@20 (``yt8m evaluate`` of
  the Kaggle CSV the publish step wrote);
- each member's holdout GAP@20 and every combiner's (average, weighted, stacking: the ensemble step
  fits and scores all of them whichever it serves) OOF and holdout GAP@20 (``ensemble.json``);
- the mean-pooled logistic baseline's holdout GAP@20 (the gate's first-release reference,
  ``yt8m.baseline``, trained on the same folds);
- the oracle: the clean labels (before label noise) scored against the noisy holdout labels, the
  ceiling any model can reach; and each GAP as a fraction of it;
- the wall time of the run;
- with ``--distillation YAML`` (a file whose ``distillation:`` section is added to the run config): the last
  round's record (``ensemble.json``: which ensemble it kept, the teacher's and the students' served holdout
  GAP@20), each student network's own GAP@20, and the test-split GAP@20 of the teacher's graph, of the round's
  graph and of each student network alone (``yt8m predict`` + ``yt8m evaluate``).

Writes ``sweep.json`` and ``sweep.md`` into ``--out-dir``. About 4-8 minutes per setting on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from yt8m import dataset, metrics, readers, storage, synth  # noqa: E402

# Frame-local evidence (eighth session): short (5-15% of the frames), strong (amplitude 6.0) positive segments, no
# decoys, 200 classes with label noise 0.2 and 30-400 frames: the kind of data where a frame-level model clearly
# beats mean pooling (the converged logistic at ~0.70 of the oracle, the default run's frame-level member above it),
# unlike the decoy settings above, where the two tie at 200-400 classes. "c200-v2600-burst" has ~2,100 training
# videos, the size of issue 14's held-out data; "c200-v3750-burst" 3,000 (issue 14's time limit is for 3,000).
_BURST = {"miss_prob": 0.2, "spurious_prob": 0.2, "long_frames": (301, 400), "segment_fraction": (0.05, 0.15),
          "decoys_per_video": 0.0, "evidence_amplitude": 6.0}
# Calibrated to issue 14's description of its held-out data (eleventh session): the burst evidence with a flatter
# class prior (Zipf exponent 0.5: rare classes have more positives) and label noise 0.15 gives the converged logistic
# 0.517 and the oracle 0.836 on 2,080 training videos in the screen (bench_family_gap --screen, fresh work
# directory, eleventh and thirteenth sessions; the twelfth's 0.513 / 0.815: the same data read in another order,
# see synth.oracle_scores; the pipeline's sweep run: 0.512 and 0.826), against 0.53 and 0.81 on the held-out data. Not calibrated on a third figure: the zoo's
# netvlad at the settings (64 + 32 clusters, hidden 256, 15 epochs) scores 0.378 here, 0.65 there. Searching
# for it, label noise 0.15 with decoys (1-2 per video) or shorter segments left the logistic at 0.31-0.38.
_FLAT_BURST = {**_BURST, "miss_prob": 0.15, "spurious_prob": 0.15, "zipf_exponent": 0.5}
# Classes as co-occurrences of shared concepts (fourteenth session; synth "Concepts"): 128 rgb + 16 audio concepts, each
# class two of them in separate segments, flatburst's prior, noise, lengths and burst segments otherwise. Neither the
# frame mean nor a per-frame detector sees a class here; frame_conv_max's detectors, max over frames and trunk can
# (screen: logistic 0.393, frame_mil 0.352, frame_conv_max 0.478, netvlad 0.29-0.30).
_CONCEPTS = {**_FLAT_BURST, "concept_pool": 128}
# A class looks different in different scenes (sixteenth session; synth "Scenes"): two modes per class, each an object
# in a scene (32 rgb scenes and 64 objects, shared by the classes' modes), one cross-pair decoy per video on average
# (a mode's scene with another mode's object), two class-free background scenes; flatburst otherwise. A union of
# conjunctions inside frames: the frame mean and a per-frame linear score rate a cross pair like a mode; a residual
# per scene (NetVLAD's encoding) or a per-frame non-linear detector does not.
_SCENES = {**_FLAT_BURST, "scene_pool": 32, "decoys_per_video": 1.0}

# name -> (videos generated (80% train, 10% validate, 10% test), classes, SynthParams overrides)
SETTINGS = {
    "c25-v2500": (2500, 25, {}),
    "smoke": (500, 12, {}),  # a few seconds of data: checks this harness, not the defaults
    "c100-v4000": (4000, 100, {}),
    "c200-v3750-noisy": (3750, 200, {"miss_prob": 0.2, "spurious_prob": 0.2, "long_frames": (301, 400)}),
    "c400-v5000": (5000, 400, {}),
    "c100-v4000-audio30-nodecoys": (4000, 100, {"audio_only_fraction": 0.3, "decoys_per_video": 0.0}),
    "c100-v10000": (10000, 100, {}),
    "c200-v2600-burst": (2600, 200, _BURST),
    "c200-v3750-burst": (3750, 200, _BURST),
    "c200-v2600-flatburst": (2600, 200, _FLAT_BURST),
    "c200-v2600-concepts": (2600, 200, _CONCEPTS),
    "c200-v2600-scenes": (2600, 200, _SCENES),
    # Probes (twelfth session) for the held-out data's netvlad (see _FLAT_BURST): evidence frames more distinct
    # (amplitude 12 / 20 on 3-8% / 2-5% of the frames); netvlad at the settings 0.446 at a20.
    "c200-v2600-flatburst-a12-s3-8": (2600, 200, {**_FLAT_BURST, "evidence_amplitude": 12.0,
                                                  "segment_fraction": (0.03, 0.08)}),
    "c200-v2600-flatburst-a20-s2-5": (2600, 200, {**_FLAT_BURST, "evidence_amplitude": 20.0,
                                                  "segment_fraction": (0.02, 0.05)}),
}


def yt8m_cli() -> list[str]:
    return [sys.executable, "-m", "yt8m_pipeline.cli"]


def _run(cmd: list[str], log_path: str) -> subprocess.CompletedProcess:
    with open(log_path, "w") as log:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)


EXTRA_TEST = "extra_test"  # the --extra-test split's folder in the generated data


def _evaluate(csv: str, data: str, classes: int, split: str = "test") -> float | None:
    """GAP@20 of a Kaggle predictions CSV on a generated split, through ``yt8m evaluate``."""
    pattern = os.path.join(data, split, "*.tfrecord")
    out = subprocess.run(yt8m_cli() + ["evaluate", "--predictions", csv, "--data", pattern,
                                       "--num-classes", str(classes), "--json"], capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout)["gap"] if out.returncode == 0 else None


def _test_gap(model_dir: str, data: str, classes: int, out_csv: str, split: str = "test") -> float | None:
    """A model's GAP@20 on a generated split (``test``, or the ``--extra-test`` one), through ``yt8m predict``
    and ``yt8m evaluate``."""
    pattern = os.path.join(data, split, "*.tfrecord")
    pred = subprocess.run(yt8m_cli() + ["predict", "--model", model_dir, "--data", pattern, "--out", out_csv],
                          capture_output=True, text=True, cwd=ROOT)
    return _evaluate(out_csv, data, classes, split) if pred.returncode == 0 else None


def _distillation(workdir: str, data: str, classes: int, extra_test: bool = False) -> dict | None:
    """The last distillation round of a run: its ``distillation`` record, each student network's holdout GAP@20 and
    the test-split (and extra-test) GAP@20 of the teacher's graph, the round's graph and each student network alone
    (None for a run without rounds)."""
    root = os.path.join(workdir, "pipeline_root", "*", "*")
    rounds = sorted(glob.glob(os.path.join(root, "ensemble-op-*", "merged_model")),
                    key=lambda d: int(d.split(os.sep)[-2].rsplit("-", 1)[1]))
    if not rounds:
        return None
    last, [teacher] = rounds[-1], glob.glob(os.path.join(root, "ensemble-op", "merged_model"))
    ens = storage.read_json(os.path.join(last, "ensemble.json"))
    record = ens.get("distillation", {})
    students_report = os.path.join(last, "students_ensemble.json")
    students = storage.read_json(students_report) if os.path.exists(students_report) else ens
    out = {"round": record.get("round"), "kept": record.get("kept"),
           "teacher_holdout_gap": record.get("teacher_holdout_gap"),
           "students_holdout_gap": record.get("students_holdout_gap"),
           "students": {m["name"]: m.get("holdout_gap") for m in students.get("members", [])}}
    # each student network alone: its final model's own SavedModel
    alone = {}
    for model in glob.glob(os.path.join(root, "*", "train-final-op-*", "model")):
        name = storage.read_json(os.path.join(model, "metrics.json"))["name"]
        if name in out["students"]:
            alone[name] = os.path.join(model, "saved_model")
    for split in ["test"] + ([EXTRA_TEST] if extra_test else []):
        out[f"teacher_{split}_gap"] = _test_gap(teacher, data, classes, os.path.join(workdir, f"teacher_{split}.csv"),
                                                split)
        if record.get("kept") == "students":  # a kept teacher's folder is the teacher's graph (the students' is gone)
            out[f"students_{split}_gap"] = _test_gap(last, data, classes,
                                                     os.path.join(workdir, f"students_{split}.csv"), split)
        out[f"students_{split}"] = {name: _test_gap(saved, data, classes, os.path.join(workdir, f"{name}_{split}.csv"),
                                                    split) for name, saved in alone.items()}
    return out


def with_distillation(config: str | None, distillation: str, out_path: str) -> str:
    """Write the run config ``config`` (default: the packaged local.yaml) with ``distillation``'s ``distillation:``
    section to ``out_path``, checked by the run config's own validation; return ``out_path``."""
    import yaml

    from yt8m import config as config_lib
    from yt8m_pipeline import local_run

    try:
        merged = config_lib.load_yaml(config or local_run.default_config_path())
        extra = config_lib.load_yaml(distillation)
        if not isinstance(extra, dict) or set(extra) != {"distillation"}:
            found = sorted(extra) if isinstance(extra, dict) else type(extra).__name__
            raise SystemExit(f"--distillation {distillation}: expected only a 'distillation:' section, got {found}")
        merged["distillation"] = extra["distillation"]
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        with open(out_path, "w") as f:
            yaml.safe_dump(merged, f, sort_keys=False)
        config_lib.load_run_config(out_path)
    except config_lib.ConfigError as exc:
        raise SystemExit(f"--distillation {distillation}: {exc}") from None
    return out_path


def generate(data: str, videos: int, classes: int, params, extra_test: int = 0) -> None:
    """The setting's data (seed 11; train, validate and test as ``synth.DEFAULT_SPLITS`` cut ``videos``), plus
    ``extra_test`` more videos of the same world in ``EXTRA_TEST``: the generator renders video i from its own
    seeded stream, so the first three splits are the same files with or without it."""
    splits = synth.split_counts(videos, synth.DEFAULT_SPLITS) + ([(EXTRA_TEST, extra_test)] if extra_test else [])
    synth.generate(data, videos=videos + extra_test, classes=classes, seed=11, splits=splits, params=params,
                   progress=False)


def _one(name: str, work: str, config: str | None, extra_test: int = 0) -> dict:
    videos, classes, overrides = SETTINGS[name]
    params = dataclasses.replace(synth.DEFAULT_PARAMS, **overrides)
    data = os.path.join(work, name, "data")
    generate(data, videos, classes, params, extra_test)
    workdir = os.path.join(work, name, "run")
    cmd = yt8m_cli() + ["run", "--local", "--data", os.path.join(data, "train", "*.tfrecord"),
                        "--test-data", os.path.join(data, "test", "*.tfrecord"), "--num-classes", str(classes),
                        "--workdir", workdir] + (["--config", config] if config else [])
    started = time.time()
    proc = _run(cmd, os.path.join(work, name, "run.stderr.log"))
    seconds = time.time() - started
    row = {"setting": name, "videos": videos, "classes": classes, "synth_overrides": overrides,
           "run_seconds": round(seconds, 1), "exit_status": proc.returncode}
    merged = glob.glob(os.path.join(workdir, "pipeline_root", "*", "*", "ensemble-op", "merged_model"))
    gate_out = glob.glob(os.path.join(workdir, "pipeline_root", "*", "*", "gate-op", "executor_output.json"))
    datasets = glob.glob(os.path.join(workdir, "pipeline_root", "*", "*", "preprocess-op", "dataset"))
    if merged:
        ens = storage.read_json(os.path.join(merged[0], "ensemble.json"))
        row["members"] = {m["name"]: m.get("holdout_gap") for m in ens.get("members", [])}
        row["ensemble_holdout_gap"] = ens.get("holdout_gap")
        # every combiner is fitted and scored in each run, whichever one the run config serves
        row["combiners"] = {name: {"oof_gap": c.get("oof_gap"), "holdout_gap": c.get("holdout_gap")}
                            for name, c in ens.get("combiners", {}).items()}
    if gate_out:
        gate_metrics = json.load(open(gate_out[0])).get("artifacts", {}).get("metrics", {})
        values = gate_metrics.get("artifacts", [{}])[0].get("metadata", {}) if gate_metrics else {}
        row["published_holdout_gap"] = values.get("gap")
        row["logistic_holdout_gap"] = values.get("reference_gap")
        row["gate_passed"] = bool(values.get("passed"))
    if datasets:
        ds = dataset.Dataset.open(datasets[0])
        holdout = readers.read_id_labels(ds.files("video", [ds.holdout]))
        train = readers.read_id_labels(ds.files("video", ds.fold_names))
        ids = list(holdout)
        labels = metrics.dense_labels([holdout[v] for v in ids], classes)
        prior = metrics.dense_labels(list(train.values()), classes).mean(axis=0)
        clean = synth.read_clean_labels(os.path.join(data, "oracle", "train_clean_labels.csv"))
        row["oracle_holdout_gap"] = metrics.gap_at_k(synth.oracle_scores(ids, clean, prior), labels)
    published = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else ""
    csv = os.path.join(published, "test_predictions.csv")
    if published and os.path.exists(csv):
        test_gap = _evaluate(csv, data, classes)
        if test_gap is not None:
            row["published_test_gap"] = test_gap
        if extra_test:
            row["extra_test_videos"] = extra_test
            row["published_extra_test_gap"] = _test_gap(published, data, classes,
                                                        os.path.join(workdir, "published_extra.csv"), EXTRA_TEST)
    oracle = row.get("oracle_holdout_gap")
    if oracle:
        for key in ("published_holdout_gap", "logistic_holdout_gap"):
            if row.get(key) is not None:
                row[key.replace("_gap", "_fraction_of_oracle")] = row[key] / oracle
        row["members_fraction_of_oracle"] = {m: g / oracle for m, g in row.get("members", {}).items() if g is not None}
    distilled = _distillation(workdir, data, classes, bool(extra_test)) if proc.returncode == 0 else None
    if distilled:
        row["distillation"] = distilled
    row["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(row), flush=True)
    return row


def _cell(value) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _gap_cell(gap, oracle) -> str:
    """``GAP (fraction of the oracle)``."""
    if gap is None:
        return ""
    return f"{gap:.3f} ({gap / oracle:.2f})" if oracle else f"{gap:.3f}"


def _difference(distilled: dict, split: str) -> str:
    """The students' graph minus the teacher on ``split`` (holdout, test, extra_test), or blank."""
    students, teacher = distilled.get(f"students_{split}_gap"), distilled.get(f"teacher_{split}_gap")
    return "" if students is None or teacher is None else f"{students - teacher:+.4f}"


def _student_cell(distilled: dict, name: str) -> str:
    """``name holdout / test / extra test`` of one student network alone (the splits it was scored on)."""
    gaps = (distilled["students"][name], distilled.get("students_test", {}).get(name),
            distilled.get(f"students_{EXTRA_TEST}", {}).get(name))
    return f"{name} " + " / ".join(_cell(g) for g in gaps if g is not None)


def markdown(rows: list[dict], config: str | None) -> str:
    members = sorted({m for r in rows for m in r.get("members", {})})
    combiners = [c for c in ("average", "weighted", "stacking") if any(c in r.get("combiners", {}) for r in rows)]
    extra = any(r.get("extra_test_videos") for r in rows)
    head = (["setting", "classes", "videos", "oracle", "logistic"] + [f"member {m}" for m in members]
            + [f"{c} (holdout)" for c in combiners]
            + ["published (holdout)", "published (test)"] + (["published (extra test)"] if extra else [])
            + ["run s", "load", "gate"])
    lines = [f"# The default local run across generator settings (benchmarks/bench_sweep.py)\n",
             f"Run config: {config or 'the default (yt8m_pipeline/configs/local.yaml)'}; "
             f"`yt8m run --local --data ... --num-classes C` per setting on {platform.machine()} "
             f"({os.cpu_count()} cores). Holdout GAP@20 (fraction of the oracle) unless noted; oracle = clean "
             "labels vs the noisy holdout labels; logistic = the gate's mean-pooled logistic baseline on the same "
             "folds; published (test) = the published model on the generated test split; load = 1-minute load "
             "average at the end of the run (other jobs share the cores: seconds are indicative).\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        oracle = r.get("oracle_holdout_gap")
        cells = [r["setting"], r["classes"], r["videos"], _cell(oracle), _gap_cell(r.get("logistic_holdout_gap"), oracle)]
        cells += [_gap_cell(r.get("members", {}).get(m), oracle) for m in members]
        cells += [_gap_cell(r.get("combiners", {}).get(c, {}).get("holdout_gap"), oracle) for c in combiners]
        cells += [_gap_cell(r.get("published_holdout_gap"), oracle), _cell(r.get("published_test_gap"))]
        cells += [_cell(r.get("published_extra_test_gap"))] if extra else []
        cells += [r["run_seconds"], _cell(r.get("load_average_1min")),
                  "passed" if r.get("gate_passed") else f"refused / exit {r['exit_status']}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    distilled = [r for r in rows if r.get("distillation")]
    if distilled:
        lines += ["", "## The last distillation round\n",
                  "Teacher = the members' ensemble as served; students = each student network's own GAP@20 (its final "
                  "model's SavedModel alone); students' "
                  "graph = the round's served graph (the students and the combiner fitted on their OOF scores); "
                  "difference = students' graph - teacher. Test = the generated test split; extra test = the "
                  "--extra-test videos of the same world (a larger, independent sample).\n",
                  "| setting | teacher (holdout) | students (holdout / test / extra test) | students' graph (holdout) | "
                  "difference | teacher (test) | students' graph (test) | difference (test) | teacher (extra test) | "
                  "students' graph (extra test) | difference (extra test) | kept |", "|" + "---|" * 12]
        for r in distilled:
            d = r["distillation"]
            own = ", ".join(_student_cell(d, m) for m in d.get("students", {}))
            cells = [r["setting"], _cell(d.get("teacher_holdout_gap")), own, _cell(d.get("students_holdout_gap")),
                     _difference(d, "holdout"), _cell(d.get("teacher_test_gap")), _cell(d.get("students_test_gap")),
                     _difference(d, "test"), _cell(d.get("teacher_extra_test_gap")),
                     _cell(d.get("students_extra_test_gap")), _difference(d, "extra_test"), d.get("kept", "")]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def previous_rows(path: str, config: str | None) -> list[dict]:
    """The rows of an earlier result file, if it was measured with the same run config."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        earlier = json.load(f)
    if earlier.get("config") != config:
        raise SystemExit(f"--merge: {path} was measured with run config {earlier.get('config')!r}, not {config!r}")
    return earlier["rows"]


def merge_rows(kept: list[dict], fresh: list[dict]) -> list[dict]:
    """``kept`` rows of settings not in ``fresh``, then ``fresh``, in SETTINGS order."""
    by_setting = {r["setting"]: r for r in kept}
    by_setting.update({r["setting"]: r for r in fresh})
    order = list(SETTINGS)
    return sorted(by_setting.values(), key=lambda r: order.index(r["setting"]) if r["setting"] in order else len(order))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    p.add_argument("--config", help="run config (default: the packaged local config)")
    p.add_argument("--distillation", help="a YAML file with a 'distillation:' section to add to the run config")
    p.add_argument("--extra-test", type=int, default=0, metavar="N",
                   help="also generate N more test videos of the same world and score the published model (and a "
                        "distillation round's teacher and students' graphs) on them: less noise than the 10%% test")
    p.add_argument("--work-dir", help="where data and runs go (default: a temporary folder, removed)")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--name", default="sweep", help="result file name (NAME.json, NAME.md)")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of NAME.json for settings this call does not run (same run config only)")
    args = p.parse_args(argv)
    names = [n for n in args.settings.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s) {unknown}; known: {', '.join(SETTINGS)}")
    work = args.work_dir or tempfile.mkdtemp(prefix="yt8m-sweep-")
    os.makedirs(args.out_dir, exist_ok=True)
    out_json = os.path.join(args.out_dir, f"{args.name}.json")
    label = args.config
    if args.distillation:
        label = f"{args.config or 'local.yaml'} + {os.path.relpath(args.distillation, ROOT)}"
    kept = previous_rows(out_json, label) if args.merge else []
    config = (with_distillation(args.config, args.distillation, os.path.join(work, "run_config.yaml"))
              if args.distillation else args.config)
    rows = []
    try:
        for n in names:  # the files are rewritten after every setting, so a partial sweep is kept
            rows = merge_rows(kept, rows + [_one(n, work, config, args.extra_test)])
            with open(os.path.join(args.out_dir, f"{args.name}.json"), "w") as f:
                json.dump({"config": label, "rows": rows}, f, indent=2)
            with open(os.path.join(args.out_dir, f"{args.name}.md"), "w") as f:
                f.write(markdown(rows, label))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown(rows, label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
