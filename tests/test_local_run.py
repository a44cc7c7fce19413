"""`yt8m run --local` owns what it runs: its own run id, pipeline root, result and tasks; paths checked first."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from yt8m_pipeline import local_run


def _tiny_config(path, min_gap, epochs=2):
    path.write_text(yaml.safe_dump({
        "synth": {"videos": 400, "classes": 12, "seed": 3},
        "data": {"num_classes": 12, "folds": 2, "holdout_fraction": 0.2},
        "models": [{"name": "moe", "family": "moe", "training": {"epochs": epochs, "batch_size": 32}}],
        "gate": {"min_gap": min_gap, "compare_with_previous": False},  # 2 epochs: not a release candidate
    }))
    return str(path)


def _yt8m_popen(*args, cwd, env=None):
    return subprocess.Popen([sys.executable, "-P", "-m", "yt8m_pipeline.cli", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_run_ids_are_unique_within_one_second():
    ids = {local_run.new_run_id() for _ in range(2000)}
    assert len(ids) == 2000


def test_a_second_run_in_the_same_workdir_is_refused_while_the_first_holds_it(tmp_path):
    with local_run.workdir_lock(str(tmp_path)):
        with pytest.raises(local_run.WorkdirBusyError, match=f"workdir {tmp_path} is in use by another run"):
            with local_run.workdir_lock(str(tmp_path)):
                pass
    with local_run.workdir_lock(str(tmp_path)):  # released: usable again
        pass


def test_task_identity_names_the_task_folder_and_the_model_config():
    executor_input = ('{"inputs": {"parameterValues": {"model_config": {"name": "netvlad"}, "fold": 2.0}}, '
                      '"outputs": {"artifacts": {"model": {"artifacts": [{"uri": "/r/run/train-op-3/model"}]}}}}')
    folder, label = local_run.task_identity(["python", "-m", "kfp.dsl.executor_main", "--executor_input",
                                             executor_input])
    assert folder == "train-op-3" and label == "train netvlad fold 2"


@pytest.mark.parametrize("args, message", [
    (["--publish-root", "gs://some-bucket/models"], "--publish-root gs://some-bucket/models: no Google Cloud "
                                                     "credentials"),
    (["--workdir", "gs://some-bucket/work"], "--workdir gs://some-bucket/work: a local run needs a local directory"),
    (["--publish-root", "/proc/no-such-dir/published"], "--publish-root /proc/no-such-dir/published: not writable"),
    (["--data", "DATA", "--test-data", "/nonexistent/test*.tfrecord"], "no --test-data files match"),
    (["--test-data", "/x.tfrecord"], "--test-data needs --data"),
])
def test_bad_paths_are_one_line_errors_before_anything_runs(tmp_path, args, message):
    data = tmp_path / "d.tfrecord"
    data.write_bytes(b"")
    args = [str(data) if a == "DATA" else a for a in args]
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env["GCE_METADATA_HOST"] = "127.0.0.1:9"  # no metadata server: credentials lookup fails fast
    env["GCE_METADATA_IP"] = "127.0.0.1:9"
    result = subprocess.run([sys.executable, "-P", "-m", "yt8m_pipeline.cli", "run", "--local", *args],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], result.stderr
    assert not (tmp_path / "runs").exists()  # nothing started: no data generated, no pipeline root
    assert not (tmp_path / "gs:").exists()


@pytest.mark.slow
def test_two_concurrent_runs_in_one_folder_each_report_their_own_result(tmp_path):
    refuse = _tiny_config(tmp_path / "refuse.yaml", min_gap=0.99)
    accept = _tiny_config(tmp_path / "accept.yaml", min_gap=0.0)
    machine_tmp = tmp_path / "machine_tmp"  # stands for /tmp: a run leaves nothing there
    machine_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(machine_tmp)}
    runs = [_yt8m_popen("run", "--local", "--config", refuse, cwd=tmp_path, env=env),
            _yt8m_popen("run", "--local", "--config", accept, cwd=tmp_path, env=env)]
    (out_r, err_r), (out_a, err_a) = [p.communicate(timeout=900) for p in runs]
    assert runs[0].returncode == 1, out_r + err_r
    assert runs[1].returncode == 0, out_a + err_a
    id_r, id_a = out_r.split()[1], out_a.split()[1]  # "run <run id> in <workdir>"
    assert id_r != id_a
    # the refused run: exit 1, the gate's refusal with the value and the limit, nothing published
    assert "PUBLISHED" not in out_r and "Release gate: REFUSED" in out_r and f"run {id_r}" in err_r
    assert "NOT published" in err_r and "threshold 0.9900" in out_r
    assert "Release gate: PASSED" in out_a and "NOT published" not in err_a
    published = out_a.strip().splitlines()[-1]
    assert published.startswith(str(tmp_path / "runs" / id_a / "published" / "versions"))
    assert not os.path.exists(tmp_path / "runs" / id_r / "published" / "LATEST")
    # kfp.local's workspace, its `mktemp -d` per task, Beam's and TF's temporary files: all in each run's
    # scratch folder, removed when the run ends; nothing in the machine's temporary folder.
    for run_id in (id_r, id_a):
        assert os.listdir(tmp_path / "runs" / run_id / local_run.SCRATCH_FOLDER) == []
    assert os.listdir(machine_tmp) == []


@pytest.mark.slow
def test_killing_the_parent_kills_its_tasks_and_nothing_is_published(tmp_path):
    config = _tiny_config(tmp_path / "long.yaml", min_gap=0.0, epochs=400)
    workdir = tmp_path / "w"
    run = _yt8m_popen("run", "--local", "--config", config, "--workdir", str(workdir), cwd=tmp_path)
    deadline = time.time() + 600
    for line in run.stdout:
        if "started  train" in line or time.time() > deadline:
            break
    time.sleep(3)
    assert _processes_mentioning(str(workdir)), "the training task should be running"
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    for _ in range(30):
        if not _processes_mentioning(str(workdir)):
            break
        time.sleep(1)
    assert not _processes_mentioning(str(workdir)), "an orphaned task survived its parent"
    time.sleep(5)
    assert not (workdir / "published" / "LATEST").exists()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(pid))
    return found


@pytest.mark.slow
def test_a_run_on_user_data_with_a_damaged_shard_publishes_and_reports_the_damage(tmp_path):
    """`yt8m run --local --data PATTERN --test-data PATTERN --num-classes C`: the user-data path end to end;
    a truncated shard among good ones is quarantined by the preprocess step, not fatal."""
    import json

    from yt8m import storage, synth

    data = tmp_path / "user"
    synth.generate(str(data), videos=400, classes=12, seed=5, progress=False)
    train_files = sorted((data / "train").glob("*.tfrecord"))
    good = train_files[0].read_bytes()
    (data / "train" / "zz-truncated.tfrecord").write_bytes(good[: len(good) // 3])
    config = _tiny_config(tmp_path / "user.yaml", min_gap=0.0)
    run = subprocess.run([sys.executable, "-P", "-m", "yt8m_pipeline.cli", "run", "--local", "--config", config,
                          "--data", str(data / "train" / "*.tfrecord"), "--test-data",
                          str(data / "test" / "*.tfrecord"), "--num-classes", "12", "--workdir", str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    published = run.stdout.strip().splitlines()[-1]
    manifest = storage.read_json(os.path.join(published, "manifest.json"))
    assert manifest["dataset"]["source"] == str(data / "train" / "*.tfrecord")
    counts = json.load(open(os.path.join(manifest["dataset"]["uri"], "counts.json")))
    assert counts["total"]["unreadable_files"]["truncated"] == 1 and counts["total"]["unreadable_bytes"] > 0
    assert counts["total"]["read"] == counts["total"]["written_total"] + counts["total"]["quarantined_total"]
    rows = open(os.path.join(published, "test_predictions.csv")).read().splitlines()
    assert len(rows) > 1 and rows[0] == "VideoId,LabelConfidencePairs"


def test_a_failed_task_is_one_line_naming_the_task_its_error_and_its_log(tmp_path):
    records = tmp_path / "logs"
    records.mkdir()
    log = records / "train-op-2.log"
    log.write_text("noise\nTraceback (most recent call last):\n  File x\nValueError: \x1b[91mno training records\x1b[0m\n")
    (records / "preprocess-op.task.json").write_text('{"label": "preprocess", "return_code": 0, "log": "p.log"}')
    (records / "train-op-2.task.json").write_text(
        '{"label": "train moe fold 1", "return_code": 1, "log": "%s"}' % log)
    line = local_run.failure_summary(str(records))
    assert line == f"task 'train moe fold 1' failed (exit 1): ValueError: no training records (log: {log})"


def test_a_task_record_has_its_exit_code_and_cpu_seconds_including_subprocesses(tmp_path, monkeypatch):
    import io
    import json

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    run_task = local_run.make_task_runner(local_run.Console(io.StringIO()), str(tmp_path))
    burn = f"{sys.executable} -c 'import time; t = time.process_time()\nwhile time.process_time() - t < 0.5: pass'"
    code = run_task(["sh", "-c", f"{burn}; echo omp=$OMP_WAIT_POLICY; exit 3"])
    record = json.load(open(tmp_path / "task.task.json"))
    assert code == record["return_code"] == 3
    assert record["cpu_seconds"] >= 0.5  # the grandchild's CPU time counts
    assert "omp=PASSIVE" in (tmp_path / "task.log").read_text()  # local tasks' OpenMP threads never spin
