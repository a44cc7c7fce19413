"""The release gate: a model is published only if every check passes (TFX-style blessing).

Checks: the exported directory is under the size limit; the model loads and scores in a
FRESH process (``python -m yt8m.scoring``); its GAP@20 on held-out data reaches the
threshold. Each failure says which check, the value and the limit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import tempfile

import numpy as np

from yt8m import metrics, storage

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

    def reasons(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed]

    def to_markdown(self) -> str:
        rows = "\n".join(f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {c.value} | {c.limit} | {c.message} |"
                         for c in self.checks)
        verdict = "PASSED: the model may be published" if self.passed else "REFUSED: the model is not published"
        return f"# Release gate: {verdict}\n\n| check | result | value | limit | detail |\n|---|---|---|---|---|\n{rows}\n"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "checks": [dataclasses.asdict(c) for c in self.checks],
                "metrics": self.metrics}


def score_in_fresh_process(model_dir: str, data: str | list[str],
                           timeout: int = 1800) -> tuple[list[str], np.ndarray, list]:
    """Load and score ``model_dir`` in a new Python process; return (ids, scores, label lists).

    ``data``: a pattern (comma-separated patterns allowed) or a list of files (e.g. the holdout's
    frame-level files from ``Dataset.files``), passed on as one comma-separated pattern.
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
        bounds = np.cumsum(np.concatenate([[0], z["label_lengths"]]))
        labels = [z["label_values"][bounds[i]:bounds[i + 1]].tolist() for i in range(len(bounds) - 1)]
        return [str(v) for v in z["video_ids"]], z["scores"], labels


def run_gate(model_dir: str, holdout_data: str | list[str], num_classes: int, min_gap: float,
             max_size_bytes: int) -> GateResult:
    checks, result_metrics = [], {}
    size = storage.directory_size(model_dir)
    result_metrics["size_bytes"] = size
    checks.append(Check("size", size < max_size_bytes, size, max_size_bytes,
                        f"model directory is {size:,} bytes; limit {max_size_bytes:,}"))
    try:
        ids, scores, labels = score_in_fresh_process(model_dir, holdout_data)
        checks.append(Check("loads_in_fresh_process", True, len(ids), None,
                            f"loaded and scored {len(ids)} held-out videos in a new process"))
        acc = metrics.EvaluationAccumulator(num_classes)
        acc.add(scores, metrics.dense_labels(labels, num_classes))
        result_metrics.update(acc.result())
        gap = result_metrics["gap"]
        checks.append(Check("gap_at_20", gap >= min_gap, round(gap, 6), min_gap,
                            f"holdout GAP@20 {gap:.4f}; threshold {min_gap:.4f}"))
    except Exception as exc:  # a model that cannot load fails the gate, with the reason
        checks.append(Check("loads_in_fresh_process", False, None, None, str(exc)))
        checks.append(Check("gap_at_20", False, None, min_gap, "not measured: the model did not load"))
    result = GateResult(all(c.passed for c in checks), checks, result_metrics)
    for c in checks:
        log.info("gate %s: %s (%s)", c.name, "pass" if c.passed else "FAIL", c.message)
    return result
