"""Video-level member candidates, screened on in-memory features (issue 14: which member, how long).

    python benchmarks/bench_video_members.py --dataset NAME=DIR [--dataset NAME=DIR ...]
                                             [--candidates NAME,...] [--note TEXT] [--out-dir benchmarks/results]
                                             [--name video_members]

``DIR`` is a preprocessed dataset (the folder holding ``dataset.json``, e.g. a sweep run's
``pipeline_root/*/*/preprocess-op/dataset``); ``NAME`` says what it is in the table (e.g.
``c200-v3750-noisy``: 200 classes, 3,750 generated videos, label noise). Per dataset, the
video-level means (``mean_rgb`` + ``mean_audio``, 1,152 floats) of the training folds and the
holdout are loaded into numpy once (``readers.video_level_dataset``), then each candidate in
``CANDIDATES`` is trained on all folds and scored on the holdout (GAP@20), one at a time:

- ``gate-baseline``: the gate's first-release reference exactly as the gate trains it, the
  production call ``yt8m.baseline.logistic_baseline_gap`` (logistic on the L2-normalised means,
  Adam 0.01, early stopping on every 10th training record; it reads the shards itself);
- the others: a Keras model of the zoo's layers (``MixtureOfExperts``, a sigmoid ``Dense`` with
  ``slim_l2``) under the references' loss (BCE summed over classes, ``distill.bce``), Adam
  (epsilon 1e-8), batch 128, for exactly ``examples`` examples (the shuffled training set
  repeats, the last pass is partial: the trainer's ``examples_to_see``), seed 0. Features
  ``unit``: the L2-normalised means (what the ``logistic`` / ``moe`` families compute from
  ``mean``); ``z+unit``: z-scored per dimension with the training split's mean and std (as the
  preprocess job's ``mean_*_z``), then L2-normalised (the families on ``video_features:
  standardized``). Besides the holdout GAP, the GAP@20 on the first ``--train-videos`` training
  videos (file order) shows how far a candidate fits its training set (overfitting).

This is a screen of the MODELS on in-memory numpy features, not the production trainer
(``yt8m.train_loop``: shard reading, learning-rate schedule, clipping and EMA options, K-fold): the
default member's numbers in a real run (``yt8m run --local``) come from benchmarks/bench_sweep.py
(``sweep.md``).

Writes ``NAME.json`` and ``NAME.md`` into ``--out-dir`` (rewritten after every dataset, so a
partial run is kept). About 3-4 minutes per dataset of ~3,000 training videos on 2 busy cores.

Measured (video_members.md: 100-400 generated classes, 2,500-3,400 training videos): every MoE fits
its training videos (train GAP 0.97-1.00) and sits 0.08-0.20 under the gate's baseline on the holdout;
the logistic on z-scored means at Adam 0.01 beats the baseline on every dataset at 250,000 examples
(0.461 / 0.484 / 0.623 / 0.752 vs 0.427 / 0.465 / 0.600 / 0.732), within ~0.01 of 350,000 (150,000
falls short on two of the four); on the plain L2-normalised means at 75,000 examples it is 0.11-0.15
under. The same candidates screened with other shuffles (whole passes instead of exact examples)
moved by up to 0.02: rows closer than that are a tie. Adam 0.03 for 75,000 examples screens at
0.455 / 0.469 (200 / 400 classes), but the trainer's member with that recipe reached 0.431 / 0.425
in ``yt8m run --local`` (bench_sweep, before the 250,000 default): the screen ranks candidates, the
sweep measures the member.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m import baseline, dataset, distill, metrics, readers  # noqa: E402
from yt8m.models.layers import MixtureOfExperts, slim_l2  # noqa: E402

BATCH_SIZE = 128
SEED = 0


@dataclasses.dataclass(frozen=True)
class Candidate:
    name: str
    head: str  # "gate" (yt8m.baseline), "logistic" or "moe"
    features: str = "unit"  # "unit" or "z+unit"
    examples: int = 0
    learning_rate: float = 0.01
    l2: float = 1e-8
    mixtures: int = 2
    note: str = ""


CANDIDATES = [
    Candidate("gate-baseline", "gate", note="the gate's baseline: yt8m.baseline (logistic, unit, Adam 0.01, "
              "early stopping)"),
    Candidate("moe-small-unit-200k", "moe", "unit", 200_000, l2=1e-6, mixtures=2,
              note="the previous default member (moe preset small)"),
    Candidate("logistic-unit-75k", "logistic", "unit", 75_000, note="the old gate's baseline (30 passes)"),
    Candidate("logistic-z-75k", "logistic", "z+unit", 75_000),
    Candidate("logistic-z-150k", "logistic", "z+unit", 150_000),
    Candidate("logistic-z-250k", "logistic", "z+unit", 250_000, note="the default member's model and length"),
    Candidate("logistic-z-350k", "logistic", "z+unit", 350_000),
    Candidate("logistic-z-lr0.03-75k", "logistic", "z+unit", 75_000, learning_rate=0.03),
    Candidate("moe1-z-l2e-5-200k", "moe", "z+unit", 200_000, l2=1e-5, mixtures=1),
]


def load_means(files: list[str], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(videos x 1152 float32 means, videos x classes multi-hot labels), in file order."""
    features, labels = [], []
    for batch, multi_hot in readers.video_level_dataset(files, num_classes, 1024):
        features.append(np.concatenate([batch["mean_rgb"].numpy(), batch["mean_audio"].numpy()], axis=1))
        labels.append(multi_hot.numpy())
    return np.concatenate(features), np.concatenate(labels)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def z_scorer(train: np.ndarray):
    """``x -> (x - mean) / std`` with the training split's statistics (a constant dimension is only
    centred, as ``yt8m.transform``'s z-score)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return lambda x: ((x - mean) / std).astype(np.float32)


def build(c: Candidate, num_classes: int) -> keras.Model:
    inputs = keras.Input((1024 + 128,))
    if c.head == "logistic":
        out = keras.layers.Dense(num_classes, activation="sigmoid", kernel_regularizer=slim_l2(c.l2))(inputs)
    else:
        out = MixtureOfExperts(num_classes, c.mixtures, c.l2)(inputs)
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.Adam(c.learning_rate, epsilon=1e-8), distill.bce)
    return model


def train_and_score(c: Candidate, num_classes: int, train: tuple, holdout: tuple, train_videos: int) -> dict:
    keras.utils.set_random_seed(SEED)
    x, y = train
    model = build(c, num_classes)
    batches = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=SEED, reshuffle_each_iteration=True)
               .repeat().batch(BATCH_SIZE))
    steps = math.ceil(c.examples / BATCH_SIZE)
    model.fit(batches, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    holdout_gap = metrics.gap_at_k(model.predict(holdout[0], batch_size=1024, verbose=0), holdout[1])
    train_gap = metrics.gap_at_k(model.predict(x[:train_videos], batch_size=1024, verbose=0), y[:train_videos])
    return {"holdout_gap": round(float(holdout_gap), 4), "train_gap": round(float(train_gap), 4),
            "examples_seen": steps * BATCH_SIZE}


class _BaselineLog(logging.Handler):
    """Keeps the message of ``yt8m.baseline``'s summary line (examples seen, best evaluation)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def gate_baseline(ds: dataset.Dataset) -> dict:
    handler = _BaselineLog()
    log = logging.getLogger(baseline.__name__)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        gap = baseline.logistic_baseline_gap(ds.files("video", ds.fold_names), ds.files("video", [ds.holdout]),
                                             ds.num_classes, ds.num_videos(ds.fold_names), seed=SEED)
    finally:
        log.removeHandler(handler)
    return {"holdout_gap": round(float(gap), 4), "log": handler.messages[-1] if handler.messages else None}


def one_dataset(name: str, path: str, candidates: list[Candidate], train_videos: int) -> dict:
    ds = dataset.Dataset.open(path)
    started = time.time()
    x_train, y_train = load_means(ds.files("video", ds.fold_names), ds.num_classes)
    x_hold, y_hold = load_means(ds.files("video", [ds.holdout]), ds.num_classes)
    z = z_scorer(x_train)
    features = {"unit": ((unit(x_train), y_train), (unit(x_hold), y_hold)),
                "z+unit": ((unit(z(x_train)), y_train), (unit(z(x_hold)), y_hold))}
    info = {"dataset": name, "path": path, "classes": ds.num_classes, "train_videos": len(x_train),
            "holdout_videos": len(x_hold), "load_seconds": round(time.time() - started, 1), "results": {}}
    print(f"{name}: {len(x_train)} training / {len(x_hold)} holdout videos, {ds.num_classes} classes "
          f"(loaded in {info['load_seconds']}s)", flush=True)
    for c in candidates:
        started = time.time()
        if c.head == "gate":
            result = gate_baseline(ds)
        else:
            train, holdout = features[c.features]
            result = train_and_score(c, ds.num_classes, train, holdout, train_videos)
        result["seconds"] = round(time.time() - started, 1)
        info["results"][c.name] = result
        print(json.dumps({"dataset": name, "candidate": c.name, **result}), flush=True)
    info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def _cell(result: dict | None) -> str:
    if not result:
        return ""
    train = f"train {result['train_gap']:.2f}, " if "train_gap" in result else ""
    return f"{result['holdout_gap']:.3f} ({train}{result['seconds']:.0f} s)"


def describe(c: Candidate) -> str:
    if c.head == "gate":
        return c.note
    model = "logistic" if c.head == "logistic" else f"moe {c.mixtures} mixture{'s' if c.mixtures > 1 else ''}"
    text = f"{model}, l2 {c.l2:g}, {c.features}, Adam {c.learning_rate:g}, {c.examples:,} examples"
    return f"{text}: {c.note}" if c.note else text


def markdown(report: dict) -> str:
    datasets = report["datasets"]
    names = [d["dataset"] for d in datasets]
    described = "; ".join(f"{d['dataset']} ({d['classes']} classes, {d['train_videos']:,} training / "
                          f"{d['holdout_videos']:,} holdout videos)" for d in datasets)
    env = report["environment"]
    lines = ["# Video-level member candidates on in-memory features (benchmarks/bench_video_members.py)\n",
             f"Datasets: {described}{'. ' + report['note'] if report.get('note') else ''}. "
             f"Machine: {env['machine']}, {env['cpus']} cores shared with other jobs (1-minute load average "
             f"{', '.join(str(d['load_average_1min']) for d in datasets)} after each dataset: seconds are "
             "indicative).\n",
             "Cells: holdout GAP@20 (GAP@20 on the first "
             f"{report['train_videos_scored']} training videos, seconds). unit = L2-normalised means; z+unit = "
             "z-scored with the training split's statistics, then L2-normalised. Batch 128, seed 0. A screen "
             "of the models on numpy features, not the trainer: the default member in a real run is in "
             "sweep.md (benchmarks/bench_sweep.py).\n",
             "| candidate | " + " | ".join(names) + " | what |", "|" + "---|" * (len(names) + 2)]
    for c in report["candidates"]:
        cells = [_cell(d["results"].get(c["name"])) for d in datasets]
        lines.append(f"| {c['name']} | " + " | ".join(cells) + f" | {c['description']} |")
    return "\n".join(lines) + "\n"


def _dataset_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=_dataset_arg, action="append", required=True, metavar="NAME=DIR",
                   help="a preprocessed dataset (folder of dataset.json) and the name it gets in the table; repeatable")
    p.add_argument("--candidates", default=",".join(c.name for c in CANDIDATES),
                   help=f"comma-separated, of: {', '.join(c.name for c in CANDIDATES)}")
    p.add_argument("--note", default="", help="what the datasets are, for the table's header line")
    p.add_argument("--train-videos", type=int, default=800, help="training videos scored for the training GAP")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--name", default="video_members", help="result file name (NAME.json, NAME.md)")
    args = p.parse_args(argv)
    known = {c.name: c for c in CANDIDATES}
    chosen = [n for n in args.candidates.split(",") if n]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        p.error(f"unknown candidate(s) {unknown}; known: {', '.join(known)}")
    for name, path in args.dataset:
        dataset.Dataset.open(path)  # fail before any training if a folder is not a dataset
    candidates = [known[n] for n in chosen]
    os.makedirs(args.out_dir, exist_ok=True)
    report = {"candidates": [{**dataclasses.asdict(c), "description": describe(c)} for c in candidates],
              "note": args.note, "train_videos_scored": args.train_videos, "batch_size": BATCH_SIZE, "seed": SEED,
              "environment": {"machine": platform.machine(), "cpus": os.cpu_count(),
                              "python": platform.python_version(), "tensorflow": tf.__version__,
                              "keras": keras.__version__},
              "datasets": []}
    started = time.time()
    for name, path in args.dataset:
        report["datasets"].append(one_dataset(name, path, candidates, args.train_videos))
        with open(os.path.join(args.out_dir, f"{args.name}.json"), "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(args.out_dir, f"{args.name}.md"), "w") as f:
            f.write(markdown(report))
    print(markdown(report))
    print(f"{len(candidates)} candidates x {len(args.dataset)} datasets in {time.time() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
