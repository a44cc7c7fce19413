"""Benchmark `yt8m evaluate` (the verb's code path, in-process) at growing sizes: is it linear?

    python benchmarks/bench_evaluate.py [--sizes 2500,20000,100000 --classes 3862 --out benchmarks/results/evaluate]

For each size: video-level truth TFRecords (id + ~3 labels per video, 10 shards) and a Kaggle
CSV with 20 (class, score) pairs for 95% of the videos are generated, then timed:
- ``yt8m evaluate`` (cli.main: CSV parse, label read with duplicate checks, sparse scoring);
- the baseline, measured in the same run: the unavoidable I/O, i.e. pandas reading the same CSV
  and tf.data reading the same TFRecords into an id -> labels dict (no scoring).
Reported: seconds, microseconds per video, and the ratio to the baseline. Linear scaling
shows as a flat microseconds-per-video column. The 1.1M-video validate set is extrapolated.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from yt8m import predictions, writers  # noqa: E402
from yt8m_pipeline import cli  # noqa: E402


def make_case(folder: str, videos: int, classes: int, seed: int = 0) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    ids = [f"vid{i:07d}" for i in range(videos)]
    shards = [[] for _ in range(10)]
    truth = {}
    for i, video_id in enumerate(ids):
        labels = sorted(rng.choice(classes, size=int(np.clip(rng.poisson(3), 1, 20)), replace=False).tolist())
        truth[video_id] = labels
        example = writers.video_level_example(video_id, labels, np.zeros(1024, np.float32), np.zeros(128, np.float32))
        shards[i % 10].append(example.SerializeToString())
    for s, records in enumerate(shards):
        writers.write_tfrecords(os.path.join(folder, f"truth-{s:02d}.tfrecord"), records)
    listed = [v for v in ids if rng.random() < 0.95]
    csv = os.path.join(folder, "submission.csv")
    with open(csv, "w") as f:
        f.write(predictions.KAGGLE_HEADER + "\n")
        for video_id in listed:  # a model-like submission: the true classes among 20, mostly ranked high
            extra = [int(c) for c in rng.choice(classes, 20, replace=False) if c not in truth[video_id]]
            classes_ = (truth[video_id] + extra)[:20]
            scores = np.clip(rng.normal(0.3, 0.2, 20) + np.where(np.arange(20) < len(truth[video_id]), 0.3, 0.0),
                             0.0, 1.0)
            f.write(video_id + "," + " ".join(f"{c} {s:.6f}" for c, s in zip(classes_, scores)) + "\n")
    return csv, os.path.join(folder, "truth-*.tfrecord")


def baseline(csv: str, pattern: str) -> float:
    import pandas as pd

    started = time.perf_counter()
    pd.read_csv(csv)
    truth = {}
    for raw in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)).as_numpy_iterator():
        feature = tf.train.Example.FromString(raw).features.feature
        truth[feature["id"].bytes_list.value[0]] = list(feature["labels"].int64_list.value)
    return time.perf_counter() - started


def evaluate(csv: str, pattern: str, classes: int) -> tuple[float, dict]:
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli.main(["evaluate", "--predictions", csv, "--data", pattern, "--num-classes", str(classes), "--json"])
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"evaluate failed with {code}")
    return seconds, json.loads(out.getvalue().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2500,20000,100000")
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--out", default="benchmarks/results/evaluate")
    args = parser.parse_args()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as folder:
            csv, pattern = make_case(folder, size, args.classes)
            base = baseline(csv, pattern)
            seconds, result = evaluate(csv, pattern, args.classes)
            rows.append({"videos": size, "evaluate_seconds": round(seconds, 2), "baseline_seconds": round(base, 2),
                         "x_baseline": round(seconds / base, 2), "us_per_video": round(1e6 * seconds / size, 1),
                         "gap": round(result["gap"], 5)})
            print(rows[-1], flush=True)
    per_video = rows[-1]["us_per_video"] / 1e6
    report = {"rows": rows, "classes": args.classes, "machine": platform.platform(), "cpus": os.cpu_count(),
              "extrapolated_validate_1_1M_seconds": round(per_video * 1_100_000, 0)}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=2)
    lines = ["# `yt8m evaluate` scaling", "",
             "Same run, same files: `yt8m evaluate` (CSV parse, label read, sparse GAP/Hit@1/PERR/mAP) vs the I/O "
             "baseline (pandas reads the CSV, tf.data reads the labels; no scoring).", "",
             "| videos | evaluate s | baseline s | x baseline | us / video |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['videos']:,} | {r['evaluate_seconds']} | {r['baseline_seconds']} | {r['x_baseline']} | "
              f"{r['us_per_video']} |" for r in rows]
    lines += ["", f"Extrapolated to the 1.1M-video validate set: ~{report['extrapolated_validate_1_1M_seconds']:.0f} s "
              f"(at the largest size's rate). Machine: {report['cpus']} cores, shared."]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
