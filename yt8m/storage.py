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


class StorageError(ValueError):
    """A path that cannot be used as asked (no credentials, not writable, nothing readable): one line."""


def is_url(path: str) -> bool:
    """``gs://bucket/...`` and other ``scheme://`` locations (kept as they are, never made local)."""
    return "://" in path


def absolute(path: str) -> str:
    """A local path made absolute; a URL (gs://...) unchanged."""
    return path if is_url(path) else os.path.abspath(path)


def check_cloud_access(url: str, what: str) -> None:
    """Credentials for a gs:// location, found before any work starts (no network call is made here)."""
    if not url.startswith("gs://"):
        scheme = url.split("://", 1)[0]
        raise StorageError(f"{what} {url}: {scheme}:// is not supported (local paths and gs:// only)")
    import google.auth
    from google.auth import exceptions as auth_exceptions

    try:
        google.auth.default()
    except auth_exceptions.DefaultCredentialsError as exc:
        reason = str(exc).splitlines()[0][:160]
        raise StorageError(f"{what} {url}: no Google Cloud credentials on this machine ({reason}); run "
                           "`gcloud auth application-default login` or use a local path") from None


def check_writable(root: str, what: str) -> None:
    """``root`` can take new files: a local directory is created and probed; gs:// needs credentials."""
    if is_url(root):
        check_cloud_access(root, what)
        return
    try:
        os.makedirs(root, exist_ok=True)
        probe = os.path.join(root, f".write-probe-{uuid.uuid4().hex[:8]}")
        with open(probe, "w") as f:
            f.write("probe")
        os.remove(probe)
    except OSError as exc:
        raise StorageError(f"{what} {root}: not writable ({exc.strerror or exc})") from None


def check_readable(pattern: str, what: str) -> list[str]:
    """The files of ``pattern`` (gs:// needs credentials); each local file must open, and the first object
    of a URL pattern (a read per object would cost a request each on thousands of shards). Sorted."""
    for part in [p.strip() for p in pattern.split(",") if p.strip()]:
        if is_url(part):
            check_cloud_access(part, what)
    files = expand_pattern(pattern, what)
    remote = [path for path in files if is_url(path)]
    for path in [path for path in files if not is_url(path)] + remote[:1]:
        try:
            with gfile.GFile(path, "rb") as f:
                f.read(1)
        except (OSError, tf.errors.OpError) as exc:
            message = getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc)
            raise StorageError(f"{what} {path}: not readable ({str(message).splitlines()[0]})") from None
    return files
