"""Submit the pipeline to Vertex AI Pipelines (``yt8m submit``).

The SAME pipeline and the SAME run config as ``yt8m run --local``: ``compile_pipeline(path, cfg)``
(resources, retries, parallelism cap from the config's ``vertex`` section) and
``pipeline_arguments(cfg, ...)`` (everything else), wrapped in ``aiplatform.PipelineJob``.

- ``check_submission`` / ``parse_labels``: every argument checked before anything is built;
  ``SubmitError`` is one line (missing project or region, a root or data pattern not on gs://
  (Vertex tasks cannot read this machine's files), bad labels, ...).
- ``build_job``: compiles into a temp file and builds the PipelineJob (no network when given
  credentials, e.g. ``AnonymousCredentials`` for a dry run, and a data fingerprint).
- ``dry_run_spec``: the job as the REST call would create it (parent + pipelineJob: display
  name, labels, pipeline spec, runtime config with every parameter value, service account).
- ``submit``: ``job.submit(service_account=...)`` with Application Default Credentials.
- ``submit_from_args``: the whole ``yt8m submit`` verb; returns the line to print.

Not run against GCP here (no project, no network): the job is built and checked offline.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import tempfile

from yt8m import config as config_lib
from yt8m import fingerprint, model_registry, storage

log = logging.getLogger(__name__)

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
_GCS = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
_SERVICE_ACCOUNT = re.compile(r"^[a-z0-9-]+@[a-z0-9.-]+\.gserviceaccount\.com$")
_ADC_HELP = "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS)"


class SubmitError(ValueError):
    """A submission that cannot go to Vertex; the message is one line naming the argument."""


def parse_labels(text: str | None) -> dict[str, str]:
    """``"team=video,cost_center=ml-1"`` -> dict, with Vertex's label rules (lowercase ``[a-z0-9_-]``,
    keys starting with a letter, at most 63 characters each, at most 64 labels)."""
    labels: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key:
            raise SubmitError(f"--labels: expected key=value pairs separated by commas, got {part.strip()!r}")
        if key in labels:
            raise SubmitError(f"--labels: label {key!r} given twice")
        labels[key] = value
    try:
        return model_registry.check_labels(labels, "--labels")
    except ValueError as exc:
        raise SubmitError(str(exc)) from None


def default_publish_root(pipeline_root: str) -> str:
    return pipeline_root.rstrip("/") + "/published"


def check_submission(*, project: str | None, region: str | None, pipeline_root: str | None, train_pattern: str | None,
                     test_pattern: str | None = None, publish_root: str | None = None,
                     service_account: str | None = None, num_classes: int | None = None) -> None:
    """Every argument of a submission, or a one-line SubmitError naming the first bad one."""
    if not project:
        raise SubmitError("--project is required (the GCP project to run in)")
    if not _PROJECT.match(project):
        raise SubmitError(f"--project: {project!r} is not a project ID (6-30 lowercase letters, digits, '-')")
    if not region:
        raise SubmitError("--region is required (a Vertex AI region, e.g. us-central1)")
    if not _REGION.match(region):
        raise SubmitError(f"--region: {region!r} is not a region name like us-central1 or europe-west4")
    for flag, value, required in (("--pipeline-root", pipeline_root, True), ("--data", train_pattern, True),
                                  ("--test-data", test_pattern, False), ("--publish-root", publish_root, False)):
        if not value:
            if required:
                raise SubmitError(f"{flag} is required")
            continue
        if not value.startswith("gs://"):
            raise SubmitError(f"{flag}: {value!r} is not a gs:// URI (Vertex tasks cannot read this machine's files)")
        if not _GCS.match(value):
            raise SubmitError(f"{flag}: {value!r} does not start with a bucket name (gs://BUCKET/...: 3 or more "
                              "lowercase letters, digits, '-', '_', '.')")
    if service_account and not _SERVICE_ACCOUNT.match(service_account):
        raise SubmitError(f"--service-account: {service_account!r} is not a service account email "
                          "(NAME@PROJECT.iam.gserviceaccount.com)")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 2):
        raise SubmitError(f"--num-classes: must be an integer >= 2, got {num_classes!r}")


def build_job(cfg: config_lib.RunConfig, *, project: str, region: str, pipeline_root: str, train_pattern: str,
              test_pattern: str = "", publish_root: str | None = None, num_classes: int,
              service_account: str | None = None, labels: dict | None = None, enable_caching: bool = True,
              display_name: str | None = None, data_fingerprint: fingerprint.Fingerprint | None = None,
              credentials=None):
    """An ``aiplatform.PipelineJob`` of the pipeline compiled from ``cfg`` with ``cfg``'s parameters.

    ``data_fingerprint`` defaults to listing ``train_pattern`` (network for gs://); ``credentials``
    to Application Default Credentials. ``service_account`` is only checked here (``submit`` and
    ``dry_run_spec`` take it).
    """
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform

    from yt8m_pipeline.pipelines import yt8m_pipeline as pipeline_def

    publish_root = publish_root or default_publish_root(pipeline_root or "")
    check_submission(project=project, region=region, pipeline_root=pipeline_root, train_pattern=train_pattern,
                     test_pattern=test_pattern, publish_root=publish_root, service_account=service_account,
                     num_classes=num_classes)
    try:
        model_registry.check_labels(labels or {}, "labels")
    except ValueError as exc:
        raise SubmitError(str(exc)) from None
    if data_fingerprint is None:
        try:
            data_fingerprint = fingerprint.fingerprint_files(train_pattern, "--data")
        except FileNotFoundError as exc:
            raise SubmitError(str(exc)) from None
    arguments = pipeline_def.pipeline_arguments(cfg, train_pattern, test_pattern or "", publish_root, num_classes,
                                                data_fingerprint=data_fingerprint, gcp_project=project,
                                                gcp_region=region, pipeline_root=pipeline_root)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="yt8m-submit-") as tmp:
        template = pipeline_def.compile_pipeline(os.path.join(tmp, "pipeline.yaml"), cfg)
        try:
            return aiplatform.PipelineJob(
                display_name=display_name or f"{pipeline_def.PIPELINE_NAME}-{stamp}", template_path=template,
                pipeline_root=pipeline_root, parameter_values=arguments,
                # None keeps the compiled per-task settings (publish is never cached); any bool
                # would overwrite every task's, publish included. --no-cache turns them all off.
                enable_caching=None if enable_caching else False,
                labels=labels or None, project=project, location=region, credentials=credentials)
        except auth_exceptions.DefaultCredentialsError:
            raise SubmitError(f"no Application Default Credentials: {_ADC_HELP}") from None


def dry_run_spec(job, service_account: str | None = None) -> dict:
    """The job as ``pipelineJobs.create`` would receive it: ``{"parent", "pipelineJob"}``."""
    body = job.to_dict()
    if service_account:
        body["serviceAccount"] = service_account
    return {"parent": f"projects/{job.project}/locations/{job.location}", "pipelineJob": body}


def submit(job, service_account: str | None = None) -> str:
    """Create the run on Vertex AI (network, Application Default Credentials); its name and console URL."""
    job.submit(service_account=service_account)
    return f"submitted {job.resource_name} ({job._dashboard_uri()})"


def _placeholder_images() -> list[str]:
    from yt8m_pipeline import images

    return [i for i in (images.CPU_IMAGE, images.GPU_IMAGE) if images.is_placeholder(i)]


def _dataflow_placeholder_images(cfg: config_lib.RunConfig) -> list[str]:
    """The Dataflow launcher/worker image, when the run uses Dataflow and it is still a placeholder."""
    from yt8m_pipeline import images

    d = cfg.vertex.dataflow
    image = d.worker_image or images.DATAFLOW_IMAGE
    return [image] if d.runner == "dataflow" and images.is_placeholder(image) else []


def submit_from_args(config_path: str | None, project: str | None, region: str | None, pipeline_root: str | None,
                     data: str | None, num_classes: int | None, test_data: str | None, publish_root: str | None,
                     service_account: str | None, labels: str | None, no_cache: bool,
                     dry_run_path: str | None) -> str:
    """``yt8m submit``: check, load the run config, build the job; write the dry-run spec (no network)
    or submit. Returns the line to print: the spec's path, or the submitted job and its console URL."""
    from google.auth import credentials as auth_credentials

    from yt8m_pipeline import local_run

    publish_root = publish_root or (default_publish_root(pipeline_root) if pipeline_root else None)
    check_submission(project=project, region=region, pipeline_root=pipeline_root, train_pattern=data,
                     test_pattern=test_data, publish_root=publish_root, service_account=service_account,
                     num_classes=num_classes)
    label_dict = parse_labels(labels)
    if dry_run_path and dry_run_path.startswith("gs://"):
        raise SubmitError("--dry-run: write the spec to a local file (a dry run touches no network)")
    cfg = config_lib.load_run_config(config_path or local_run.default_config_path())
    common = dict(project=project, region=region, pipeline_root=pipeline_root, train_pattern=data,
                  test_pattern=test_data or "", publish_root=publish_root,
                  num_classes=num_classes or cfg.data.num_classes, service_account=service_account,
                  labels=label_dict, enable_caching=not no_cache)
    if dry_run_path:
        job = build_job(cfg, **common, credentials=auth_credentials.AnonymousCredentials(),
                        data_fingerprint=fingerprint.unknown(data, "dry run: the files were not listed"))
        for image in _placeholder_images() + _dataflow_placeholder_images(cfg):
            log.warning("image %s is a placeholder: set it before a real submission (yt8m images)", image)
        storage.write_json(dry_run_path, dry_run_spec(job, service_account))
        return dry_run_path
    placeholders = _placeholder_images() + _dataflow_placeholder_images(cfg)
    if placeholders:
        raise SubmitError(f"image {placeholders[0]} is a placeholder: build and push the images and name them "
                          "(yt8m images; YT8M_CPU_IMAGE / YT8M_GPU_IMAGE / YT8M_DATAFLOW_IMAGE) before submitting")
    return submit(build_job(cfg, **common), service_account)
