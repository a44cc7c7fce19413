"""Atomic, versioned publishing of a gated model with a lineage manifest.

Layout under the publish root::

    versions/<version>/saved_model/   the model
    versions/<version>/manifest.json  GAP, size, dataset and model lineage, configs
    versions/<version>/test_predictions.csv   Kaggle format (if test data was given)
    LATEST                             the newest complete version (written last)

A version is staged under ``.staging/`` and renamed into ``versions/`` only when
complete, so no partial model is ever visible under a published name.
"""

from __future__ import annotations

import datetime
import hashlib
import logging

from yt8m import predictions, scoring, storage

log = logging.getLogger(__name__)


def _version_name(manifest: dict) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    digest = hashlib.sha256(repr(sorted(manifest.items())).encode()).hexdigest()[:8]
    return f"v{stamp}-{digest}"


def publish_model(model_dir: str, publish_root: str, manifest: dict, test_data: str | None = None) -> str:
    """Publish ``model_dir`` as a new version; return the version's directory."""
    version = _version_name(manifest)
    staging = storage.join(publish_root, ".staging", version)
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
