"""Vertex AI Model Registry: each published version becomes a new version of ONE model.

``upload_kwargs`` builds the exact arguments of ``google.cloud.aiplatform.Model.upload``
from a published version (no network; tested); ``upload_version`` looks up whether the model
exists and calls the upload (network, Application Default Credentials; runs only in the
publish task of a run submitted to Vertex). The first upload creates the model under its
configured ID; every later one is a new default version (``parent_model``) aliased by the
publish version's name, with the gate metrics as labels and in the description.

Also the label rules every Vertex resource applies (pipeline jobs and models alike): keys and
values of lowercase letters, digits, ``_`` and ``-``, at most 63 characters, keys starting
with a letter, at most 64 labels.
"""

from __future__ import annotations

import re

from yt8m import config as config_lib
from yt8m import storage

LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
MAX_LABELS = 64
_ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")  # Model.upload's version_aliases format


def check_labels(labels: dict, where: str = "labels") -> dict:
    """``labels`` if every key and value follows the label rules, else ValueError naming the first bad one."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"{where}: at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY.match(key):
            raise ValueError(f"{where}: bad label key {key!r}: lowercase letters, digits, '_' and '-', starting "
                             "with a letter, at most 63 characters")
        if not isinstance(value, str) or not LABEL_VALUE.match(value):
            raise ValueError(f"{where}: bad value {value!r} of label {key!r}: lowercase letters, digits, '_' and "
                             "'-', at most 63 characters")
    return labels


def label_value(value) -> str:
    """A metric or name as a label value: 0.4751 -> "0_4751", "v2026T1-ab" -> "v2026t1-ab"."""
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return re.sub(r"[^a-z0-9_-]", "_", text.lower())[:63]


def _parent(settings: config_lib.ModelRegistryConfig, project: str, location: str) -> str:
    return f"projects/{project}/locations/{location}/models/{settings.model_id}"


def upload_kwargs(version_dir: str, manifest: dict, settings: config_lib.ModelRegistryConfig, *, project: str,
                  location: str, parent_exists: bool) -> dict:
    """Keyword arguments of ``aiplatform.Model.upload`` for the published ``version_dir`` (its ``manifest.json``)."""
    version, gate = manifest["version"], manifest.get("gate", {})
    labels = {"pipeline": "yt8m", "publish_version": label_value(version)}
    for key, name in (("gap", "gap_at_20"), ("hit_at_1", "hit_at_1"), ("perr", "perr"), ("map", "map")):
        if key in gate:
            labels[name] = label_value(float(gate[key]))
    labels["size_mb"] = label_value(float(manifest["model_bytes"]) / 1e6)
    check_labels(labels, "model labels")
    members = manifest.get("model", {}).get("members", [])
    gap = f"{float(gate['gap']):.4f}" if "gap" in gate else "n/a"
    source = manifest.get("dataset", {}).get("source", "n/a")
    description = (f"yt8m ensemble {version}: holdout GAP@20 {gap}, {int(manifest['model_bytes']):,} bytes; "
                   f"members {', '.join(map(str, members)) or 'n/a'}; data {source}; published at {version_dir}")
    alias = version.lower()
    kwargs = {
        "display_name": settings.display_name,
        "artifact_uri": storage.join(version_dir, "saved_model"),
        "serving_container_image_uri": settings.serving_image,
        "description": description,
        "version_description": description,
        "version_aliases": [alias] if _ALIAS.match(alias) else [],
        "is_default_version": True,
        "labels": labels,
        "project": project,
        "location": location,
        "sync": True,
    }
    if parent_exists:
        kwargs["parent_model"] = _parent(settings, project, location)
    else:
        kwargs["model_id"] = settings.model_id
    return kwargs


def upload_version(version_dir: str, settings: config_lib.ModelRegistryConfig, project: str, location: str) -> str:
    """Upload ``version_dir`` (a published version) as the model's new default version; its resource name."""
    from google.api_core import exceptions
    from google.cloud import aiplatform

    if not project or not location:
        raise ValueError("registering a model needs the project and the region")
    if not version_dir.startswith("gs://"):
        raise ValueError(f"Vertex AI reads models from gs:// only, the version is at {version_dir}")
    manifest = storage.read_json(storage.join(version_dir, "manifest.json"))
    try:
        aiplatform.Model(model_name=_parent(settings, project, location))
        exists = True
    except exceptions.NotFound:
        exists = False
    model = aiplatform.Model.upload(**upload_kwargs(version_dir, manifest, settings, project=project,
                                                    location=location, parent_exists=exists))
    return model.versioned_resource_name
