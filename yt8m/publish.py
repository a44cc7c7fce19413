"""Atomic, versioned publishing of a gated model with a lineage manifest.

Layout under the publish root::

    versions/<version>/saved_model/   the model
    versions/<version>/manifest.json  GAP, size, dataset and model lineage, configs
    versions/<version>/test_predictions.csv   Kaggle format (if test data was given)
    LATEST                             the newest complete version (written last)

A version is staged under ``.staging/`` and renamed into ``versions/`` only when
complete, so no partial model is ever visible under a published name. A publish that fails
removes its own staging folder; one that was killed leaves it behind, and the next publish
to the same root removes staging folders older than ``STAGING_MAX_AGE_SECONDS`` (longer than
any publish runs, so a concurrent publish's folder is never touched), under a lock locally.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import secrets
import time

from yt8m import predictions, scoring, storage

log = logging.getLogger(__name__)

# Longer than any publish can run (copy + scoring the test set at full scale takes hours, not a day).
STAGING_MAX_AGE_SECONDS = 24 * 3600


@contextlib.contextmanager
def _root_lock(publish_root: str):
    """An exclusive lock on a local publish root (none on GCS, where the age rule alone keeps it safe)."""
    if storage.is_url(publish_root):
        yield
        return
    import fcntl

    os.makedirs(publish_root, exist_ok=True)
    with open(os.path.join(publish_root, ".publish.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _modified_seconds(path: str) -> float:
    """Newest modification time (seconds since the epoch) of anything under ``path``."""
    newest = 0.0
    for root, _dirs, files in storage.gfile.walk(path):
        for name in files:
            newest = max(newest, storage.gfile.stat(storage.join(root, name)).mtime_nsec / 1e9)
    if newest == 0.0:
        newest = storage.gfile.stat(path).mtime_nsec / 1e9 if not storage.is_url(path) else 0.0
    return newest


def clean_abandoned_staging(publish_root: str, max_age_seconds: float = STAGING_MAX_AGE_SECONDS,
                            now: float | None = None) -> list[str]:
    """Remove staging folders left by killed publishes (untouched for ``max_age_seconds``); return them."""
    staging_root = storage.join(publish_root, ".staging")
    if not storage.gfile.exists(staging_root):
        return []
    now = time.time() if now is None else now
    removed = []
    with _root_lock(publish_root):
        for name in storage.gfile.listdir(staging_root):
            path = storage.join(staging_root, name.rstrip("/"))
            if now - _modified_seconds(path) > max_age_seconds:
                storage.gfile.rmtree(path)
                removed.append(path)
    for path in removed:
        log.info("removed abandoned staging folder %s", path)
    return removed


def _version_name(manifest: dict) -> str:
    """Time to the second, a digest of the manifest, and a random part: two publishes of the same
    manifest in the same second still get two versions."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    digest = hashlib.sha256(repr(sorted(manifest.items())).encode()).hexdigest()[:8]
    return f"v{stamp}-{digest}-{secrets.token_hex(2)}"


def publish_model(model_dir: str, publish_root: str, manifest: dict, test_data: str | None = None) -> str:
    """Publish ``model_dir`` as a new version; return the version's directory."""
    clean_abandoned_staging(publish_root)
    version = _version_name(manifest)
    staging = storage.join(publish_root, ".staging", version)
    try:
        return _publish_staged(model_dir, publish_root, manifest, test_data, version, staging)
    except BaseException:
        if storage.gfile.exists(staging):  # never leave a partial version behind
            storage.gfile.rmtree(staging)
        raise


def _publish_staged(model_dir: str, publish_root: str, manifest: dict, test_data: str | None, version: str,
                    staging: str) -> str:
    final = storage.join(publish_root, "versions", version)
    storage.copy_tree(model_dir, storage.join(staging, "saved_model"))
    manifest = dict(manifest, version=version, model_bytes=storage.directory_size(storage.join(staging, "saved_model")))
    if test_data:
        ids, scores, _ = scoring.score_files(storage.join(staging, "saved_model"), test_data)
        predictions.write_kaggle_csv(storage.join(staging, "test_predictions.csv"), ids, scores, k=20)
        manifest["test_predictions"] = {"data": test_data, "videos": len(ids)}
    storage.write_json(storage.join(staging, "manifest.json"), manifest)
    storage.gfile.makedirs(storage.join(publish_root, "versions"))
    if final.startswith("gs://"):  # no atomic rename on GCS: copy, then LATEST marks it complete
        storage.copy_tree(staging, final)
        storage.gfile.rmtree(staging)
    else:
        storage.gfile.rename(staging, final)
    storage.write_text(storage.join(publish_root, "LATEST"), version + "\n")
    log.info("published %s", final)
    return final


def latest_version(publish_root: str) -> str | None:
    path = storage.join(publish_root, "LATEST")
    if not storage.gfile.exists(path):
        return None
    return storage.join(publish_root, "versions", storage.read_text(path).strip())
