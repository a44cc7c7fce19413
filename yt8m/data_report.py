"""The preprocessing job's outputs as what a pipeline UI shows: flat count metrics and the HTML report.

One place for both preprocess components (the local Beam task and the Dataflow register task).
"""

from __future__ import annotations

import posixpath

from yt8m import storage

REPORT_FILE = "report.html"


def count_metrics(total: dict) -> dict[str, float]:
    """``counts.json``'s ``total`` as flat, UI-filterable metrics: records read / written / quarantined,
    written per split, quarantined per reason code, unreadable bytes and files per reason."""
    metrics = {f"records_{key}": total[key] for key in ("read", "written_total", "quarantined_total")}
    metrics.update({f"written_{split}": n for split, n in total.get("written", {}).items()})
    metrics.update({f"quarantined_{reason}": n for reason, n in total.get("quarantined", {}).items()})
    metrics["unreadable_bytes"] = total.get("unreadable_bytes", 0)
    metrics.update({f"unreadable_files_{reason}": n for reason, n in total.get("unreadable_files", {}).items()})
    return metrics


def copy_report(dataset_dir: str, target: str) -> bool:
    """Copy the job's ``report.html`` (label frequency, frames per video, fold balance, quarantine reasons,
    per-file counts) to ``target``; a short page saying why when the job wrote none. True if copied."""
    source = storage.join(dataset_dir, REPORT_FILE)
    if storage.gfile.exists(source):
        parent = posixpath.dirname(target)
        if parent:
            storage.gfile.makedirs(parent)
        storage.gfile.copy(source, target, overwrite=True)
        return True
    storage.write_text(target, f"<html><body><p>The preprocessing job wrote no {REPORT_FILE} in {dataset_dir} "
                               "(run without --no-report to get one).</p></body></html>\n")
    return False
