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

from yt8m import config as config_lib
from yt8m import storage

log = logging.getLogger(__name__)


def default_config_path() -> str:
    return str(resources.files("yt8m_pipeline") / "configs" / "local.yaml")


def pipeline_arguments(cfg: config_lib.RunConfig, train_pattern: str, test_pattern: str, publish_root: str,
                       num_classes: int, beam_runner: str = "local") -> dict:
    """The pipeline's parameters from a run config (the same for kfp.local and Vertex)."""
    return {
        "train_pattern": train_pattern,
        "test_pattern": test_pattern,
        "model_configs": [config_lib.to_dict(m) for m in cfg.models],
        "run_config": config_lib.to_dict(cfg),
        "publish_root": publish_root,
        "num_classes": num_classes,
        "folds": cfg.data.folds,
        "holdout_fraction": cfg.data.holdout_fraction,
        "quantize_min_elements": cfg.ensemble.quantize_min_elements,
        "oof_top_k": cfg.ensemble.top_k_predictions,
        "min_gap": cfg.gate.min_gap,
        "max_size_bytes": cfg.gate.max_size_bytes,
        "beam_runner": beam_runner,
    }


def compile_pipeline(package_path: str) -> str:
    from kfp import compiler

    from yt8m_pipeline.pipelines.yt8m_pipeline import yt8m_pipeline

    compiler.Compiler().compile(yt8m_pipeline, package_path=package_path)
    return package_path


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
