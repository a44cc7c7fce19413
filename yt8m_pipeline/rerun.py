"""Rerun ONE component of a previous local run on that run's input artifacts, with the same arguments.

``yt8m run --local`` records every task's exact command and executor input beside its log
(``WORKDIR/logs/<run id>/<task>.task.json``). A rerun takes that record, points every output
(artifacts, output parameters, the executor output file, and a ``publish_root`` parameter) at
a NEW folder ``WORKDIR/reruns/<task>-<time>/`` and runs the command: ``local`` in a
subprocess of this environment (dying with this process), ``docker`` in the component's
image through kfp.local's Docker task machinery (the docker SDK talks to the engine), with
the run's workdir and any input data folders mounted at the same paths. The earlier run's
files are only read, never modified.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import glob
import json
import os
import shlex
import subprocess
import sys
import time

from yt8m import storage
from yt8m_pipeline import local_run

COMPONENTS = ("preprocess", "train", "collect-folds", "ensemble", "gate", "publish")


class RerunError(ValueError):
    """The run, task or runner asked for cannot be used: one line."""


def find_run(run_dir: str, run_id: str | None = None) -> tuple[str, str]:
    """(workdir, run id) of a local run; ``run_dir`` is the run's workdir (or its ``logs/<run id>`` folder)."""
    run_dir = os.path.abspath(run_dir)
    if os.path.basename(os.path.dirname(run_dir)) == "logs":
        return os.path.dirname(os.path.dirname(run_dir)), os.path.basename(run_dir)
    logs = os.path.join(run_dir, "logs")
    if not os.path.isdir(logs):
        raise RerunError(f"--run-dir {run_dir}: not a local run's workdir (no logs/ folder; pass the directory "
                         "`yt8m run --local` printed as 'run <id> in <workdir>')")
    runs = sorted(d for d in os.listdir(logs) if glob.glob(os.path.join(logs, d, "*" + local_run.TASK_RECORD_SUFFIX)))
    if run_id:
        if run_id not in runs:
            raise RerunError(f"--run-dir {run_dir}: no run {run_id!r} (runs: {', '.join(runs) or 'none'})")
        return run_dir, run_id
    if not runs:
        raise RerunError(f"--run-dir {run_dir}: no recorded tasks under {logs}")
    return run_dir, runs[-1]


def task_records(workdir: str, run_id: str) -> list[dict]:
    paths = sorted(glob.glob(os.path.join(workdir, "logs", run_id, "*" + local_run.TASK_RECORD_SUFFIX)))
    return sorted((storage.read_json(p) for p in paths), key=lambda r: (r.get("started", 0), r["task"]))


def select_task(records: list[dict], component: str, task: str | None = None) -> tuple[dict, list[str]]:
    """The record of ``task`` (a task folder name) or the first task of ``component``; plus all candidates."""
    if component not in COMPONENTS:
        raise RerunError(f"unknown component {component!r}; components: {', '.join(COMPONENTS)}")
    # "train" covers the fold trainings and the final members (train-op, train-op-2, train-final-op, ...)
    candidates = [r for r in records if r["folder"].startswith(component + "-")]
    names = [r["task"] for r in candidates]
    if task:
        chosen = [r for r in candidates if r["task"] == task]
        if not chosen:
            raise RerunError(f"no {component} task {task!r} in this run (tasks: {', '.join(names) or 'none'})")
        return chosen[0], names
    if not candidates:
        raise RerunError(f"this run has no {component} task (tasks: {', '.join(r['task'] for r in records)})")
    return candidates[0], names


def redirect_outputs(executor_input: dict, out_dir: str) -> dict:
    """A copy of ``executor_input`` whose every output (and publish root) lives under ``out_dir``."""
    new = copy.deepcopy(executor_input)
    outputs = new.setdefault("outputs", {})
    for name, artifact_list in outputs.get("artifacts", {}).items():
        for artifact in artifact_list.get("artifacts", []):
            artifact["uri"] = os.path.join(out_dir, name)
    for name, parameter in outputs.get("parameters", {}).items():
        parameter["outputFile"] = os.path.join(out_dir, name)
    outputs["outputFile"] = os.path.join(out_dir, "executor_output.json")
    params = new.get("inputs", {}).get("parameterValues", {})
    if "publish_root" in params:
        params["publish_root"] = os.path.join(out_dir, "published")
    return new


def _mounts(workdir: str, out_dir: str, executor_input: dict) -> list[str]:
    """Local folders the container needs at the same path: the workdir, the new outputs, input data dirs."""
    folders = {workdir, out_dir}
    for value in executor_input.get("inputs", {}).get("parameterValues", {}).values():
        if isinstance(value, str) and value.startswith("/"):
            for part in value.split(","):
                folder = os.path.dirname(part.split("*")[0]) or "/"
                if os.path.isdir(folder):
                    folders.add(folder)
    for artifact_list in executor_input.get("inputs", {}).get("artifacts", {}).values():
        for artifact in artifact_list.get("artifacts", []):
            uri = artifact.get("uri", "")
            if uri.startswith("/") and not uri.startswith(workdir):
                folders.add(os.path.dirname(uri))
    # keep the outermost folders only
    ordered = sorted(folders)
    return [f for i, f in enumerate(ordered) if not any(f.startswith(o.rstrip("/") + "/") for o in ordered[:i])]


def docker_command(image: str, command: list[str], mounts: list[str]) -> str:
    """The equivalent `docker run` line (printed for the user; the run itself goes through the docker SDK)."""
    volumes = " ".join(f"-v {shlex.quote(m)}:{shlex.quote(m)}" for m in mounts)
    return f"docker run --rm {volumes} {image} " + " ".join(shlex.quote(c) for c in command)


def _container_command(command: list[str]) -> list[str]:
    """The local command used this environment's interpreter; in the image it is ``python3``."""
    return [c.replace(sys.executable, "python3") for c in command]


def _image_for(record: dict) -> str:
    from yt8m_pipeline import images

    kind = "gpu" if record["folder"].startswith("train-") and "collect" not in record["folder"] else "cpu"
    return images.images()[kind]["image"]


def rerun(run_dir: str, component: str, mode: str = "local", task: str | None = None, run_id: str | None = None,
          console: local_run.Console | None = None) -> dict:
    """Rerun one component; returns {task, out_dir, return_code, log, docker_command?}."""
    console = console or local_run.Console()
    workdir, run_id = find_run(run_dir, run_id)
    record, names = select_task(task_records(workdir, run_id), component, task)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = os.path.join(workdir, "reruns", f"{record['task']}-{stamp}-{os.getpid()}")
    os.makedirs(out_dir)
    command = list(record["command"])
    index = local_run.executor_input_index(command)
    if index is None:
        raise RerunError(f"the recorded command of {record['task']} has no --executor_input")
    executor_input = redirect_outputs(json.loads(command[index]), out_dir)
    command[index] = json.dumps(executor_input)
    storage.write_json(os.path.join(out_dir, "executor_input.json"), executor_input)
    if len(names) > 1 and not task:
        console.say(f"rerunning {record['task']} ({record['label']}), 1 of {len(names)} {component} tasks "
                    f"({', '.join(names)}; --task picks another)")
    else:
        console.say(f"rerunning {record['task']} ({record['label']}) of run {run_id}")
    console.say(f"outputs: {out_dir}")
    log_path = os.path.join(out_dir, "task.log")
    result = {"task": record["task"], "out_dir": out_dir, "log": log_path, "run_id": run_id}
    if mode == "docker":
        image = _image_for(record)
        container_command = _container_command(command)
        mounts = _mounts(workdir, out_dir, executor_input)
        result["docker_command"] = docker_command(image, container_command, mounts)
        script = os.path.join(out_dir, "docker_run.sh")
        storage.write_text(script, "#!/bin/sh\n" + result["docker_command"] + "\n")
        volumes = " ".join(f"-v {m}:{m}" for m in mounts)
        console.say(f"equivalent: docker run --rm {volumes} {image} sh -ec <the component's program> "
                    f"--executor_input <json> (whole line: {script})")
        result["return_code"] = _run_in_docker(image, container_command, mounts, record.get("env", {}), log_path)
    elif mode == "local":
        started = time.time()
        with open(log_path, "w") as log_file, subprocess.Popen(
                local_run._guarded(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                env={**os.environ, **record.get("env", {})}) as process:
            for line in process.stdout:
                log_file.write(line)
                console.task_line(record["label"], line)
            result["return_code"] = process.wait()
        result["seconds"] = round(time.time() - started, 1)
    else:
        raise RerunError(f"unknown mode {mode!r} (local or docker)")
    storage.write_json(os.path.join(out_dir, "rerun.json"), {**result, "source_record": record})
    return result


def _run_in_docker(image: str, command: list[str], mounts: list[str], env: dict, log_path: str) -> int:
    """Through kfp.local's Docker task machinery (``run_docker_container``); one line if no engine answers."""
    try:
        import docker
        from kfp.local import docker_task_handler
    except ImportError as exc:
        raise RerunError(f"--docker needs the docker SDK ({exc})") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine is the same answer
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise RerunError(f"--docker: no Docker engine reachable ({reason}); start Docker, or rerun with --local")
    volumes = {m: {"bind": m, "mode": "rw"} for m in mounts}
    try:
        with open(log_path, "w") as log_file:
            with contextlib.redirect_stdout(log_file):  # kfp prints the container's output
                return docker_task_handler.run_docker_container(client=client, image=image, command=command,
                                                                volumes=volumes, environment=env)
    finally:
        client.close()
