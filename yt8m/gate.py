"""The release gate: a model is published only if every check passes (TFX-style blessing).

Checks: the exported directory is under the size limit; the model loads and scores in a
FRESH process (``python -m yt8m.scoring``) within the latency budget (load seconds, ms per
video); its GAP@20 on held-out data reaches the absolute threshold AND the reference: the
previous published version scored on the SAME holdout (minus a tolerance), or for a first
release a mean-pooled logistic trained on the run's training splits (``yt8m.baseline``).
Each failure says which check, the value and the limit.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

from yt8m import baseline, metrics, publish, storage
from yt8m import config as config_lib
from yt8m import dataset as dataset_lib

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Check:
    name: str
    passed: bool
    value: float | None
    limit: float | None
    message: str


@dataclasses.dataclass
class GateResult:
    passed: bool
    checks: list[Check]
    metrics: dict
    # Per-class AP on the holdout for the most frequent and the rarest classes there:
    # [{"class": c, "positives": n, "ap": x}, ...], most frequent first.
    class_ap: list = dataclasses.field(default_factory=list)

    def reasons(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed]

    def to_markdown(self) -> str:
        rows = "\n".join(f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {c.value} | {c.limit} | {c.message} |"
                         for c in self.checks)
        verdict = "PASSED: the model may be published" if self.passed else "REFUSED: the model is not published"
        return f"# Release gate: {verdict}\n\n| check | result | value | limit | detail |\n|---|---|---|---|---|\n{rows}\n"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "checks": [dataclasses.asdict(c) for c in self.checks],
                "metrics": self.metrics, "class_ap": self.class_ap}


@dataclasses.dataclass(frozen=True)
class Reference:
    """What the candidate must reach besides the absolute threshold: a GAP on the same holdout."""
    name: str  # "previous release <version>" or "mean-pooled logistic baseline"
    gap: float


def score_in_fresh_process(model_dir: str, data: str | list[str], timeout: int = 1800,
                           timings: dict | None = None) -> tuple[list[str], np.ndarray, list]:
    """Load and score ``model_dir`` in a new Python process; return (ids, scores, label lists).

    ``data``: a pattern (comma-separated patterns allowed) or a list of files (e.g. the holdout's
    frame-level files from ``Dataset.files``), passed on as one comma-separated pattern.
    ``timings``, when given, receives the process's ``load_seconds`` and ``score_seconds``.
    """
    if not isinstance(data, str):
        data = ",".join(data)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "scores.npz")
        proc = subprocess.run([sys.executable, "-P", "-m", "yt8m.scoring", "--model", model_dir, "--data", data,
                               "--out", out], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"model {model_dir} failed to load/score in a fresh process: {tail}")
        z = np.load(out)
        if timings is not None:
            timings.update(load_seconds=float(z["load_seconds"]), score_seconds=float(z["score_seconds"]))
        bounds = np.cumsum(np.concatenate([[0], z["label_lengths"]]))
        labels = [z["label_values"][bounds[i]:bounds[i + 1]].tolist() for i in range(len(bounds) - 1)]
        return [str(v) for v in z["video_ids"]], z["scores"], labels


def frequent_and_rare_class_ap(scores: np.ndarray, positive: np.ndarray, count: int = 10) -> list[dict]:
    """AP of the ``count`` most frequent and ``count`` rarest classes with positives in the holdout."""
    positives = positive.sum(axis=0)
    present = np.flatnonzero(positives)
    by_frequency = present[np.argsort(-positives[present], kind="stable")]
    chosen = list(dict.fromkeys([*by_frequency[:count].tolist(), *by_frequency[-count:].tolist()]))
    ap = metrics.class_average_precision(scores, positive, chosen)
    return [{"class": c, "positives": int(positives[c]), "ap": round(ap[c], 6)} for c in chosen]


def previous_release_reference(publish_root: str, holdout_data: str | list[str],
                               num_classes: int) -> Reference | None:
    """The latest published version under ``publish_root`` scored on ``holdout_data``; None if there is
    none, or if it no longer loads (logged: the gate then falls back to the baseline)."""
    previous = publish.latest_version(publish_root) if publish_root else None
    if previous is None:
        return None
    name = f"previous release {previous.rstrip('/').rsplit('/', 1)[-1]}"
    try:
        _ids, scores, labels = score_in_fresh_process(storage.join(previous, "saved_model"), holdout_data)
    except Exception as exc:  # a broken old release must not block every future one
        log.warning("%s could not be scored on this holdout (%s); comparing with the baseline instead", name, exc)
        return None
    gap = metrics.gap_at_k(scores, metrics.dense_labels(labels, num_classes))
    log.info("%s: holdout GAP@20 %.4f on this run's holdout", name, gap)
    return Reference(name, gap)


def release_reference(ds: dataset_lib.Dataset, publish_root: str) -> Reference:
    """The previous release on this holdout, or (first release) the mean-pooled logistic baseline."""
    previous = previous_release_reference(publish_root, ds.files("frame", [ds.holdout]), ds.num_classes)
    if previous is not None:
        return previous
    train = ds.fold_names
    gap = baseline.logistic_baseline_gap(ds.files("video", train), ds.files("video", [ds.holdout]), ds.num_classes,
                                         ds.num_videos(train))
    return Reference("mean-pooled logistic baseline", gap)


def gate_release(model_dir: str, ds: dataset_lib.Dataset, settings: config_lib.GateConfig,
                 publish_root: str = "") -> GateResult:
    """Every check of ``settings`` on ``model_dir`` against ``ds``'s holdout (the component's whole body)."""
    if ds.holdout is None:
        raise ValueError(f"dataset {ds.path} has no holdout split: the gate has nothing to score")
    reference = release_reference(ds, publish_root) if settings.compare_with_previous else None
    return run_gate(model_dir, ds.files("frame", [ds.holdout]), ds.num_classes, settings.min_gap,
                    settings.max_size_bytes, reference=reference, max_gap_drop=settings.max_gap_drop,
                    max_load_seconds=settings.max_load_seconds, max_ms_per_video=settings.max_ms_per_video)


def run_gate(model_dir: str, holdout_data: str | list[str], num_classes: int, min_gap: float,
             max_size_bytes: int, *, reference: Reference | None = None, max_gap_drop: float = 0.0,
             max_load_seconds: float = math.inf, max_ms_per_video: float = math.inf) -> GateResult:
    checks, result_metrics = [], {}
    size = storage.directory_size(model_dir)
    result_metrics["size_bytes"] = size
    checks.append(Check("size", size < max_size_bytes, size, max_size_bytes,
                        f"model directory is {size:,} bytes; limit {max_size_bytes:,}"))
    try:
        timings: dict = {}
        ids, scores, labels = score_in_fresh_process(model_dir, holdout_data, timings=timings)
        checks.append(Check("loads_in_fresh_process", True, len(ids), None,
                            f"loaded and scored {len(ids)} held-out videos in a new process"))
        ms_per_video = 1000.0 * timings["score_seconds"] / len(ids)
        result_metrics.update(load_seconds=round(timings["load_seconds"], 3), ms_per_video=round(ms_per_video, 3))
        checks.append(Check("load_seconds", timings["load_seconds"] <= max_load_seconds,
                            round(timings["load_seconds"], 3), max_load_seconds,
                            f"loading took {timings['load_seconds']:.1f}s; limit {max_load_seconds:g}s"))
        checks.append(Check("ms_per_video", ms_per_video <= max_ms_per_video, round(ms_per_video, 3),
                            max_ms_per_video, f"scoring took {ms_per_video:.2f} ms per video (batches of 64); "
                                              f"limit {max_ms_per_video:g} ms"))
        acc = metrics.EvaluationAccumulator(num_classes)
        dense = metrics.dense_labels(labels, num_classes)
        acc.add(scores, dense)
        result_metrics.update(acc.result())
        class_ap = frequent_and_rare_class_ap(scores, dense)
        gap = result_metrics["gap"]
        checks.append(Check("gap_at_20", gap >= min_gap, round(gap, 6), min_gap,
                            f"holdout GAP@20 {gap:.4f}; threshold {min_gap:.4f}"))
        if reference is not None:
            limit = reference.gap - max_gap_drop
            result_metrics["reference_gap"] = round(reference.gap, 6)
            checks.append(Check("vs_reference", gap >= limit, round(gap, 6), round(limit, 6),
                                f"holdout GAP@20 {gap:.4f} vs the {reference.name} {reference.gap:.4f} on the same "
                                f"holdout (tolerance {max_gap_drop:g})"))
    except Exception as exc:  # a model that cannot load fails the gate, with the reason
        class_ap = []
        checks.append(Check("loads_in_fresh_process", False, None, None, str(exc)))
        checks.append(Check("gap_at_20", False, None, min_gap, "not measured: the model did not load"))
    result = GateResult(all(c.passed for c in checks), checks, result_metrics, class_ap)
    for c in checks:
        log.info("gate %s: %s (%s)", c.name, "pass" if c.passed else "FAIL", c.message)
    return result
