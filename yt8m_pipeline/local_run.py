"""Run the whole pipeline on this machine under kfp.local, with a console people can read.

A run owns everything it writes: a unique run id (``local-<time>-<random>``), its own kfp
pipeline root (``WORKDIR/pipeline_root/<run id>/``, where kfp.local creates exactly one run
folder) and its own task logs (``WORKDIR/logs/<run id>/<task>.log``). A lock on the workdir
refuses a second concurrent run in the same workdir. Its result (gate decision, published
version) is read from ITS run folder only, so concurrent runs never report each other.

Each task runs in a child process that dies with this process (``task_guard``: the kernel
kills it when the parent goes, even on SIGKILL), so killing ``yt8m run --local`` never leaves
an orphaned task that would publish later. The task's whole output (kfp executor dumps,
TensorFlow start-up lines, Beam internals) goes to its log file; the console gets one line
per task state change, a compact progress line per training task and the results.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime
import fcntl
import glob
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from importlib import resources

from yt8m import storage

log = logging.getLogger(__name__)

LOCK_FILE = ".yt8m-run.lock"
# Beside each task's log: its exact command and executor input (what `yt8m component` reruns and
# `yt8m lineage` reads), its return code and duration.
TASK_RECORD_SUFFIX = ".task.json"
SCRATCH_FOLDER = "scratch"  # WORKDIR/scratch/<run id>: the run's temporary files, removed when it ends
PROGRESS_INTERVAL_SECONDS = 45.0  # at most one progress line per training task this often (plus each fit's last)
# Environment of every local task (the user's own environment wins). kfp.local runs two tasks at once on a machine
# shared with everything else: OpenMP threads (LightGBM's, in the ensemble task's stacker) that spin while they
# wait for a descheduled peer made a 22-round stacker fit take 52 s instead of 0.3 s here (load 13 on 2 cores);
# passive waiting costs nothing measurable when the machine is idle. (On Vertex each task has its own machine.)
LOCAL_TASK_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def default_config_path() -> str:
    return str(resources.files("yt8m_pipeline") / "configs" / "local.yaml")


def new_run_id() -> str:
    """Unique per run (time to the second for people, 8 random hex digits for uniqueness)."""
    return f"local-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


class WorkdirBusyError(RuntimeError):
    """Another run holds this workdir."""


@contextlib.contextmanager
def workdir_lock(workdir: str):
    """Exclusive, non-blocking lock on ``workdir`` for the duration of a run (released if the process dies)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise WorkdirBusyError(f"workdir {workdir} is in use by another run ({holder}); wait for it or pass another "
                               "--workdir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@dataclasses.dataclass
class LocalRunResult:
    run_id: str
    run_dir: str
    logs_dir: str
    published_dir: str | None
    gate_decision: str
    gate_report: str
    dataset_dir: str


def _task_output(run_dir: str, task: str, output: str) -> str:
    matches = sorted(glob.glob(os.path.join(run_dir, f"{task}*", output)))
    if not matches:
        raise FileNotFoundError(f"no output {output!r} of task {task!r} under {run_dir}")
    return matches[-1]


# ---------------------------------------------------------------------------------------------- console

# The trainer's log lines (yt8m/train_loop.py), whatever prefix the task's log format adds.
_EPOCH = re.compile(r"(?P<label>[\w-]+(?: fold \d+| final)?) epoch (?P<epoch>\d+)/(?P<epochs>\d+) "
                    r"\(step \d+/\d+\): loss (?P<loss>\S+), \d+ steps, ~(?P<rate>\d+) examples/s")
_RESULT = re.compile(r"(?P<text>[\w -]+: (?:out-of-fold|holdout) GAP@20 [\d.]+.*)$")


def executor_input_index(command: list[str]) -> int | None:
    """Where a kfp task command holds its executor input JSON (None if it holds none)."""
    for flag in ("--executor_input", "--executor-input"):
        if flag in command and command.index(flag) + 1 < len(command):
            return command.index(flag) + 1
    return None


def executor_input(command: list[str]) -> dict:
    """A kfp task command's executor input ({} if it has none or it does not parse)."""
    index = executor_input_index(command)
    try:
        return json.loads(command[index]) if index is not None else {}
    except ValueError:
        return {}


def task_identity(full_command: list[str]) -> tuple[str, str]:
    """(task folder name, display label) of a kfp.local task from its executor input."""
    task_input = executor_input(full_command)
    outputs = task_input.get("outputs", {})
    paths = [a["artifacts"][0]["uri"] for a in outputs.get("artifacts", {}).values() if a.get("artifacts")]
    paths += [p.get("outputFile", "") for p in outputs.get("parameters", {}).values()]
    paths.append(outputs.get("outputFile", ""))
    folder = next((os.path.basename(os.path.dirname(p)) for p in paths if p), "task")
    params = task_input.get("inputs", {}).get("parameterValues", {})
    label = re.sub(r"-op(-\d+)?$", "", folder).replace("-", " ")
    config = params.get("model_config")
    if isinstance(config, dict) and config.get("name"):
        label += f" {config['name']}"
    if "fold" in params:
        label += f" fold {int(params['fold'])}"
    return folder, label


class Console:
    """What the user reads: task state changes, throttled training progress, results (thread-safe)."""

    def __init__(self, stream=None, verbose: bool = False):
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self._lock = threading.Lock()
        self._last_progress: dict[str, float] = {}
        self.lines = 0

    def say(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.lines += 1

    def task_line(self, label: str, line: str) -> None:
        """One line of a task's output: shown whole in verbose mode, else only progress and results."""
        if self.verbose:
            self.say(f"  [{label}] {line.rstrip()}")
            return
        match = _EPOCH.search(line)
        if match:
            last_epoch = match["epoch"] == match["epochs"]
            key = f"{label}/{match['label']}"
            now = time.monotonic()
            if last_epoch or now - self._last_progress.get(key, 0.0) >= PROGRESS_INTERVAL_SECONDS:
                self._last_progress[key] = now
                self.say(f"    {match['label']}: epoch {match['epoch']}/{match['epochs']}, loss {match['loss']}, "
                         f"{int(match['rate']):,} examples/s")
            return
        match = _RESULT.search(line)
        if match:
            self.say(f"    {match['text'].strip()}")


# ---------------------------------------------------------------------------------------------- tasks

def _guarded(full_command: list[str]) -> list[str]:
    """The task's command behind ``task_guard``: the kernel kills the task when this process dies."""
    return [sys.executable, "-P", "-m", "yt8m_pipeline.task_guard", str(os.getpid()), *full_command]


def _wait_with_cpu_time(process: subprocess.Popen) -> tuple[int, float]:
    """The task's exit code and CPU seconds (user + system, its subprocesses included: each one waits for its
    children), so a task record says what the task costs whatever else the machine was doing."""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def make_task_runner(console: Console, logs_dir: str, scratch_dir: str | None = None):
    """A replacement for kfp.local's ``run_local_subprocess``: same contract (command -> return code),
    but the output goes to a per-task log file and the console, and the task dies with this process."""
    used: set[str] = set()
    used_lock = threading.Lock()

    def run_task(full_command: list[str], env_vars: dict | None = None) -> int:
        folder, label = task_identity(full_command)
        with used_lock:
            name, n = folder, 1
            while name in used:
                n += 1
                name = f"{folder}-{n}"
            used.add(name)
        log_path = os.path.join(logs_dir, f"{name}.log")
        env = {**LOCAL_TASK_ENV, **os.environ, **(env_vars or {})}
        if scratch_dir is not None:  # kfp's `mktemp -d` per task, Beam and TF temp files: in the run's scratch
            env["TMPDIR"] = scratch_dir
        started = time.time()
        record = {"task": name, "folder": folder, "label": label, "command": list(full_command),
                  "env": dict(env_vars or {}), "log": log_path, "started": started}
        storage.write_json(os.path.join(logs_dir, f"{name}{TASK_RECORD_SUFFIX}"), record)
        console.say(f"  started  {label}")
        with open(log_path, "w") as log_file, subprocess.Popen(
                _guarded(full_command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                env=env) as process:
            for line in process.stdout:
                log_file.write(line)
                console.task_line(label, line)
            code, cpu_seconds = _wait_with_cpu_time(process)
        seconds = time.time() - started
        storage.write_json(os.path.join(logs_dir, f"{name}{TASK_RECORD_SUFFIX}"),
                           {**record, "return_code": code, "seconds": round(seconds, 1),
                            "cpu_seconds": round(cpu_seconds, 1)})
        if code == 0:
            console.say(f"  done     {label} ({seconds:.0f} s)")
        else:
            console.say(f"  FAILED   {label} (exit {code} after {seconds:.0f} s; log: {log_path})")
        return code

    return run_task


@contextlib.contextmanager
def _kfp_task_runner(runner):
    from kfp.local import subprocess_task_handler

    original = subprocess_task_handler.run_local_subprocess
    subprocess_task_handler.run_local_subprocess = runner
    try:
        yield
    finally:
        subprocess_task_handler.run_local_subprocess = original


@contextlib.contextmanager
def _stdout_to(path: str | None):
    """kfp.local's own chatter (executor input/output dumps, banners) to a file, unless verbose (None)."""
    if path is None:
        yield
        return
    with open(path, "w") as f, contextlib.redirect_stdout(f):
        yield


# ---------------------------------------------------------------------------------------------- the run

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(text: str) -> str:
    return _ANSI.sub("", text).strip().splitlines()[0] if text.strip() else text


def _last_error_line(log_path: str) -> str:
    """The last line of a task log that says what went wrong (an exception line), without colour codes."""
    try:
        lines = [_ANSI.sub("", l).strip() for l in open(log_path, errors="replace").read().splitlines()]
    except OSError:
        return ""
    errors = [l for l in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b.*:", l)]
    line = (errors or [l for l in lines if l] or [""])[-1]
    return line if len(line) <= 240 else line[:237] + "..."


def failure_summary(logs_dir: str) -> str | None:
    """One line naming the failed task, its exit status, its last error line and its log."""
    for path in sorted(glob.glob(os.path.join(logs_dir, "*" + TASK_RECORD_SUFFIX))):
        record = storage.read_json(path)
        if record.get("return_code") not in (None, 0):
            return (f"task '{record['label']}' failed (exit {record['return_code']}): "
                    f"{_last_error_line(record['log'])} (log: {record['log']})")
    return None


def run_local(arguments: dict, workdir: str, console: Console | None = None, run_id: str | None = None) -> LocalRunResult:
    """Run the pipeline under kfp.local (SubprocessRunner) in this run's own pipeline root."""
    from kfp import local

    from yt8m_pipeline.pipelines.yt8m_pipeline import PIPELINE_NAME, yt8m_pipeline

    console = console or Console()
    run_id = run_id or new_run_id()
    workdir = os.path.abspath(workdir)
    pipeline_root = os.path.join(workdir, "pipeline_root", run_id)
    logs_dir = os.path.join(workdir, "logs", run_id)
    os.makedirs(pipeline_root)  # exist_ok=False: a run id is never reused
    os.makedirs(logs_dir, exist_ok=True)
    # Temporary files of the run (kfp.local's workspace, each task's TMPDIR) live in the workdir, not in the
    # machine's /tmp, and go when the run ends (a killed run leaves them here, never in /tmp).
    scratch_dir = os.path.join(workdir, SCRATCH_FOLDER, run_id)
    os.makedirs(os.path.join(scratch_dir, "workspace"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True,
               workspace_root=os.path.join(scratch_dir, "workspace"))
    started = time.time()
    # kfp.local indents task logs by swapping builtins.print per task; with ParallelFor tasks in
    # threads the swaps can interleave and leave print indented: restore it afterwards.
    original_print = builtins.print
    root_logger = logging.getLogger()
    original_handlers, original_level = root_logger.handlers[:], root_logger.level
    try:
        with _kfp_task_runner(make_task_runner(console, logs_dir, scratch_dir)), \
                _stdout_to(None if console.verbose else os.path.join(logs_dir, "kfp-local.log")):
            yt8m_pipeline(**arguments)
    except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed: ..."
        raise RuntimeError(failure_summary(logs_dir) or _plain(str(exc))) from None
    finally:
        builtins.print = original_print
        root_logger.handlers[:] = original_handlers  # kfp.local may leave a handler on the redirected stdout
        root_logger.setLevel(original_level)
        shutil.rmtree(scratch_dir, ignore_errors=True)
    log.info("pipeline %s finished in %.0fs", run_id, time.time() - started)
    runs = [d for d in os.listdir(pipeline_root) if d.startswith(PIPELINE_NAME)]
    if len(runs) != 1:
        raise RuntimeError(f"expected exactly one kfp run folder under {pipeline_root}, found {len(runs)}")
    run_dir = os.path.join(pipeline_root, runs[0])
    gate_report = storage.read_text(_task_output(run_dir, "gate-op", "report"))
    gate_outputs = json.load(open(_task_output(run_dir, "gate-op", "executor_output.json")))
    decision = gate_outputs["parameterValues"]["Output"]
    published = None
    if decision == "publish":
        published = json.load(open(_task_output(run_dir, "publish-op", "executor_output.json")))[
            "parameterValues"]["Output"]
    return LocalRunResult(run_id, run_dir, logs_dir, published, decision, gate_report,
                          _task_output(run_dir, "preprocess-op", "dataset"))
