"""One storage layer for local paths and gs:// (tf.io.gfile), used everywhere."""

from __future__ import annotations

import json
import os
import posixpath
import uuid

import tensorflow as tf

gfile = tf.io.gfile


def expand_pattern(pattern: str, what: str = "input") -> list[str]:
    """Files matching a glob pattern (comma-separated patterns allowed), sorted; error if none."""
    files: list[str] = []
    for part in [p.strip() for p in pattern.split(",") if p.strip()]:
        files.extend(gfile.glob(part))
    if not files:
        raise FileNotFoundError(f"no {what} files match {pattern!r}")
    return sorted(set(files))


def join(*parts: str) -> str:
    return posixpath.join(*parts) if parts[0].startswith("gs://") else os.path.join(*parts)


def write_text(path: str, text: str) -> None:
    """Write a text file atomically (temp file + rename; a plain overwrite on GCS, which is atomic per object)."""
    parent = posixpath.dirname(path)
    if parent:
        gfile.makedirs(parent)
    if path.startswith("gs://"):
        with gfile.GFile(path, "w") as f:
            f.write(text)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with gfile.GFile(tmp, "w") as f:
        f.write(text)
    gfile.rename(tmp, path, overwrite=True)


def write_json(path: str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str):
    with gfile.GFile(path) as f:
        return json.load(f)


def read_text(path: str) -> str:
    with gfile.GFile(path) as f:
        return f.read()


def directory_size(path: str) -> int:
    """Total bytes of all files below ``path``."""
    total = 0
    for root, _dirs, files in gfile.walk(path):
        for name in files:
            total += gfile.stat(join(root, name)).length
    return total


def copy_tree(src: str, dst: str) -> None:
    """Copy a directory tree (local or gs://) file by file."""
    for root, _dirs, files in gfile.walk(src):
        rel = os.path.relpath(root, src) if not src.startswith("gs://") else root[len(src):].lstrip("/")
        target_dir = dst if rel in ("", ".") else join(dst, rel)
        gfile.makedirs(target_dir)
        for name in files:
            gfile.copy(join(root, name), join(target_dir, name), overwrite=True)
