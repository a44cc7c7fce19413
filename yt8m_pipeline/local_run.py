"""Run the whole pipeline on this machine under kfp.local, and compile it to IR YAML."""

from __future__ import annotations

import builtins
import dataclasses
import glob
import json
import logging
import os
import time
from importlib import resources

from yt8m import storage

log = logging.getLogger(__name__)


def default_config_path() -> str:
    return str(resources.files("yt8m_pipeline") / "configs" / "local.yaml")


@dataclasses.dataclass
class LocalRunResult:
    run_dir: str
    published_dir: str | None
    gate_decision: str
    gate_report: str
    dataset_dir: str


def _task_output(run_dir: str, task: str, output: str) -> str:
    matches = sorted(glob.glob(os.path.join(run_dir, f"{task}*", output)))
    if not matches:
        raise FileNotFoundError(f"no output {output!r} of task {task!r} under {run_dir}")
    return matches[-1]


def run_local(arguments: dict, workdir: str) -> LocalRunResult:
    """Run the pipeline under kfp.local (SubprocessRunner in this environment)."""
    from kfp import local

    from yt8m_pipeline.pipelines.yt8m_pipeline import PIPELINE_NAME, yt8m_pipeline

    pipeline_root = os.path.abspath(os.path.join(workdir, "pipeline_root"))
    os.makedirs(pipeline_root, exist_ok=True)
    before = set(os.listdir(pipeline_root))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
    started = time.time()
    # kfp.local indents task logs by swapping builtins.print per task; with ParallelFor tasks in
    # threads the swaps can interleave and leave print indented: restore it afterwards.
    original_print = builtins.print
    try:
        yt8m_pipeline(**arguments)
    finally:
        builtins.print = original_print
    log.info("pipeline finished in %.0fs", time.time() - started)
    new = sorted(d for d in set(os.listdir(pipeline_root)) - before if d.startswith(PIPELINE_NAME))
    if not new:
        raise RuntimeError(f"kfp.local wrote no run directory under {pipeline_root}")
    run_dir = os.path.join(pipeline_root, new[-1])
    gate_report = storage.read_text(_task_output(run_dir, "gate-op", "report"))
    gate_outputs = json.load(open(_task_output(run_dir, "gate-op", "executor_output.json")))
    decision = gate_outputs["parameterValues"]["Output"]
    published = None
    if decision == "publish":
        published = json.load(open(_task_output(run_dir, "publish-op", "executor_output.json")))[
            "parameterValues"]["Output"]
    return LocalRunResult(run_dir, published, decision, gate_report, _task_output(run_dir, "preprocess-op", "dataset"))
