"""Container images of the pipeline: the ONE place components, the compile step and `yt8m images` read.

The names and the Dockerfiles come from the packaged ``yt8m_pipeline/configs/images.yaml``
(``cpu``, ``gpu``, ``dataflow``; each ``image:`` and ``dockerfile:``, the build context
being the repository root). ``YT8M_CPU_IMAGE`` / ``YT8M_GPU_IMAGE`` /
``YT8M_DATAFLOW_IMAGE`` override an image; the functions read them at call time.

``CPU_IMAGE``, ``GPU_IMAGE`` and ``DATAFLOW_IMAGE`` are resolved once, when this module is
first imported: the kfp components bind ``base_image`` when their modules are imported, so
set the variables before compiling (``yt8m compile``/``submit`` run in a fresh process).

The packaged defaults contain ``your-project``: a placeholder, not a pushed image
(``is_placeholder``). Locally (kfp.local SubprocessRunner) no image is used: components
run in this virtual environment. On Vertex, pin images by digest (``...@sha256:...``):
Vertex caching keys on the image string, so a mutable tag gives stale cache hits.
"""

from __future__ import annotations

import os
import shlex
from importlib import resources

import yaml

NAMES = ("cpu", "gpu", "dataflow")
FIELDS = ("image", "dockerfile")
PLACEHOLDER_MARK = "your-project"


class ImageConfigError(ValueError):
    """images.yaml is missing, malformed or has unknown fields; the message names file and field."""


def config_path() -> str:
    return str(resources.files("yt8m_pipeline") / "configs" / "images.yaml")


def env_var(name: str) -> str:
    """``"cpu"`` -> ``"YT8M_CPU_IMAGE"``."""
    return f"YT8M_{name.upper()}_IMAGE"


def load_config(path: str | None = None) -> dict[str, dict[str, str]]:
    """images.yaml as ``{name: {"image", "dockerfile"}}``, validated (no environment applied)."""
    path = path or config_path()
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ImageConfigError(f"{path}: cannot read: {e}") from e
    if not isinstance(raw, dict):
        raise ImageConfigError(f"{path}: expected a mapping of {', '.join(NAMES)}")
    unknown = sorted(set(map(str, raw)) - set(NAMES))
    if unknown:
        raise ImageConfigError(f"{path}.{unknown[0]}: unknown image; expected one of {', '.join(NAMES)}")
    config = {}
    for name in NAMES:
        entry = raw.get(name)
        if not isinstance(entry, dict):
            raise ImageConfigError(f"{path}.{name}: expected a mapping with {' and '.join(FIELDS)}")
        extra = sorted(set(map(str, entry)) - set(FIELDS))
        if extra:
            raise ImageConfigError(f"{path}.{name}.{extra[0]}: unknown field; expected {' and '.join(FIELDS)}")
        for field in FIELDS:
            value = entry.get(field)
            if not isinstance(value, str) or not value.strip():
                raise ImageConfigError(f"{path}.{name}.{field}: expected a non-empty string, got {value!r}")
        config[name] = {field: entry[field].strip() for field in FIELDS}
    return config


def images(path: str | None = None) -> dict[str, dict[str, str]]:
    """``{name: {"image", "dockerfile", "source"}}``; source is ``"env"`` when overridden, else ``"config"``."""
    result = {}
    for name, entry in load_config(path).items():
        override = os.environ.get(env_var(name), "").strip()
        result[name] = {"image": override or entry["image"], "dockerfile": entry["dockerfile"],
                        "source": "env" if override else "config"}
    return result


def image(name: str) -> str:
    """The image of ``name`` (environment first, then images.yaml)."""
    if name not in NAMES:
        raise KeyError(f"unknown image {name!r}; expected one of {', '.join(NAMES)}")
    return images()[name]["image"]


def is_placeholder(image: str) -> bool:
    """True for the packaged defaults (they name ``your-project``), not a pushed image."""
    return PLACEHOLDER_MARK in image


def placeholder_images() -> list[str]:
    """Names (``cpu``, ...) whose image is still a placeholder; set ``env_var(name)`` for each."""
    return [name for name, spec in images().items() if is_placeholder(spec["image"])]


def build_tag(image: str) -> str:
    """The tag to build: the image without a ``@sha256:...`` digest (the registry assigns that on push)."""
    return image.split("@", 1)[0]


def build_command(name: str) -> str:
    """``docker build -f docker/<name>/Dockerfile -t <image> .``, run from the repository root."""
    if name not in NAMES:
        raise KeyError(f"unknown image {name!r}; expected one of {', '.join(NAMES)}")
    spec = images()[name]
    return f"docker build -f {shlex.quote(spec['dockerfile'])} -t {shlex.quote(build_tag(spec['image']))} ."


def format_table() -> str:
    """One line per image: name, image, Dockerfile, source (config|env) and ``(placeholder)`` if so."""
    rows = [(name, s["image"], s["dockerfile"], s["source"], "(placeholder)" if is_placeholder(s["image"]) else "")
            for name, s in images().items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


CPU_IMAGE = image("cpu")
GPU_IMAGE = image("gpu")
DATAFLOW_IMAGE = image("dataflow")
