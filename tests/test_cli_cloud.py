"""The cloud-facing verbs: yt8m submit (dry run, checks), yt8m compile (image warnings), yt8m images."""

import json
import os
import subprocess
import sys

import yaml


def _yt8m(*args, env=None):
    return subprocess.run([sys.executable, "-P", "-m", "yt8m_pipeline.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


_SUBMIT = ["submit", "--project", "my-proj-123", "--region", "us-central1", "--pipeline-root", "gs://yt8m-bkt/root",
           "--data", "gs://yt8m-bkt/train/*.tfrecord", "--num-classes", "3862"]


def test_submit_dry_run_writes_the_job_spec_without_network(tmp_path):
    out = tmp_path / "job.json"
    result = _yt8m(*_SUBMIT, "--labels", "team=video,stage=dev", "--dry-run", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(out)
    spec = json.loads(out.read_text())
    job = spec["pipelineJob"]
    params = job["runtimeConfig"]["parameterValues"]
    assert params["train_pattern"] == "gs://yt8m-bkt/train/*.tfrecord" and params["num_classes"] == 3862
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://yt8m-bkt/root"
    assert job["labels"]["team"] == "video" and spec["parent"] == "projects/my-proj-123/locations/us-central1"
    assert "placeholder" in result.stderr  # the images were not set


def test_submit_refuses_missing_or_local_paths_in_one_line():
    for argv, message in [
        (["submit", "--region", "us-central1"], "--project is required"),
        ([a if a != "gs://yt8m-bkt/root" else "/tmp/root" for a in _SUBMIT] + ["--dry-run", "/tmp/x.json"],
         "--pipeline-root"),
        ([a if a != "gs://yt8m-bkt/train/*.tfrecord" else "/data/*.tfrecord" for a in _SUBMIT]
         + ["--dry-run", "/tmp/x.json"], "--data"),
    ]:
        result = _yt8m(*argv)
        err = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(err) == 1 and message in err[0], (argv, result.stderr)


def test_compile_warns_about_placeholder_images_and_uses_the_env_images(tmp_path):
    out = tmp_path / "p.yaml"
    result = _yt8m("compile", "--out", str(out))
    assert result.returncode == 0 and "the gpu image is a placeholder" in result.stderr
    env = {"YT8M_CPU_IMAGE": "europe-docker.pkg.dev/p/r/cpu@sha256:" + "a" * 64,
           "YT8M_GPU_IMAGE": "europe-docker.pkg.dev/p/r/gpu:1.0", "YT8M_DATAFLOW_IMAGE": "europe-docker.pkg.dev/p/r/df:1"}
    result = _yt8m("compile", "--out", str(out), env=env)
    assert result.returncode == 0 and "placeholder" not in result.stderr
    ir = yaml.safe_load(out.read_text())
    images = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values() if "container" in e}
    assert env["YT8M_GPU_IMAGE"] in images and env["YT8M_CPU_IMAGE"] in images


def test_images_lists_every_image_with_its_build_line():
    result = _yt8m("images")
    assert result.returncode == 0
    for name in ("cpu", "gpu", "dataflow"):
        assert f"docker build -f docker/{name}/Dockerfile" in result.stdout
