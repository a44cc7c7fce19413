"""Benchmark yt8m.metrics.gap_at_k against a straightforward full-sort baseline.

    python benchmarks/bench_gap.py [--videos 20000 --classes 3862 --k 20 --out benchmarks/results/gap.json]

Baseline: full stable np.argsort of every row, keep the first k, flatten, full stable sort
of the N*k pooled pairs, float64 accumulation. It uses the same tie rule as gap_at_k, so
the two must agree to rounding. Both run in the same process, best of --repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from yt8m.metrics import gap_at_k  # noqa: E402


def make_data(num_videos: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid-like float32 scores [N, C] (logits N(-6.5, 1.5), positives N(0, 1.5): GAP ~0.84)
    and 0/1 labels with ~3 positives per video."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((num_videos, num_classes), dtype=np.float32)
    counts = np.clip(rng.poisson(3.0, num_videos), 1, num_classes)
    for video, count in enumerate(counts):
        labels[video, rng.choice(num_classes, count, replace=False)] = 1.0
    logits = rng.normal(-6.5, 1.5, (num_videos, num_classes)).astype(np.float32)
    positives = labels > 0
    logits[positives] = rng.normal(0.0, 1.5, int(positives.sum()))
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32), labels


def baseline_gap(predictions: np.ndarray, labels: np.ndarray, k: int = 20) -> float:
    """Full sort of each row, then of all pooled pairs; float64."""
    k = min(k, predictions.shape[1])
    order = np.argsort(-predictions, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(predictions, order, axis=1).astype(np.float64).ravel()
    relevant = (np.take_along_axis(labels, order, axis=1) > 0).ravel()
    num_positives = np.count_nonzero(labels > 0)
    if num_positives == 0:
        return 0.0
    relevant = relevant[np.argsort(-scores, kind="stable")].astype(np.float64)
    precision = np.cumsum(relevant) / np.arange(1, relevant.size + 1)
    return float(np.sum(precision * relevant) / num_positives)


def best_time(function, repeats: int) -> tuple[float, float]:
    """(best wall seconds, last result) over `repeats` runs."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20000)
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/gap.json")
    args = parser.parse_args(argv)

    predictions, labels = make_data(args.videos, args.classes, args.seed)
    gap_seconds, gap = best_time(lambda: gap_at_k(predictions, labels, args.k), args.repeats)
    baseline_seconds, baseline = best_time(lambda: baseline_gap(predictions, labels, args.k), args.repeats)
    result = {
        "benchmark": "gap_at_k vs full-sort baseline",
        "videos": args.videos,
        "classes": args.classes,
        "k": args.k,
        "labels_per_video": float(labels.sum() / args.videos),
        "repeats": args.repeats,
        "gap_at_k_seconds": round(gap_seconds, 4),
        "baseline_seconds": round(baseline_seconds, 4),
        "speedup": round(baseline_seconds / gap_seconds, 2),
        "gap": gap,
        "baseline_gap": baseline,
        "abs_diff": abs(gap - baseline),
        "machine": {
            "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu": cpu_model(),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        },
        "baseline": "stable argsort of every full row, first k, flatten, stable argsort of the N*k pairs, float64",
    }
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
            f.write("\n")
    print(f"gap_at_k {gap_seconds:.3f}s vs baseline {baseline_seconds:.3f}s ({result['speedup']}x) on "
          f"{args.videos}x{args.classes}, k={args.k}; GAP {gap:.6f}, |diff| {result['abs_diff']:.1e}")
    print("| videos x classes | gap_at_k (s) | baseline (s) | speedup | abs diff | nproc | numpy |")
    print(f"| {args.videos} x {args.classes} | {gap_seconds:.3f} | {baseline_seconds:.3f} | {result['speedup']}x "
          f"| {result['abs_diff']:.1e} | {result['machine']['nproc']} | {np.__version__} |")
    return result


if __name__ == "__main__":
    main()
