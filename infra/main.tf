# GCP resources of the yt8m pipeline: APIs, one bucket, one Docker repository and two
# least-privilege service accounts (the pipeline's and the Dataflow workers').
#
# Roles, and why each is needed:
#   pipeline SA (Vertex AI Pipelines runs every component as it)
#     project   roles/aiplatform.user          run pipeline tasks, write metadata/lineage
#     project   roles/dataflow.developer       launch and watch the preprocessing Dataflow job
#     worker SA roles/iam.serviceAccountUser   launch that job as the worker SA, nothing else
#     bucket    roles/storage.objectAdmin      pipeline root, data, published models
#     bucket    roles/storage.legacyBucketReader  bucket metadata (Beam checks its temp bucket)
#     registry  roles/artifactregistry.reader  pull the component images
#   Dataflow worker SA
#     project   roles/dataflow.worker          the worker role Dataflow requires
#     bucket    roles/storage.objectAdmin      read input, write shards and temp files
#     bucket    roles/storage.legacyBucketReader
#     registry  roles/artifactregistry.reader  pull the worker image (--sdk_container_image)
# Storage roles are granted on the bucket only, never on the project; no basic roles
# (owner/editor) anywhere. tests/test_infra.py checks all of this.

locals {
  bucket_name = coalesce(var.bucket_name, "${var.project}-yt8m")

  services = toset([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "dataflow.googleapis.com",
    "iam.googleapis.com",
    "storage.googleapis.com",
  ])

  pipeline_project_roles = toset([
    "roles/aiplatform.user",
    "roles/dataflow.developer",
  ])

  dataflow_project_roles = toset([
    "roles/dataflow.worker",
  ])

  service_account_members = {
    pipeline = "serviceAccount:${google_service_account.pipeline.email}"
    dataflow = "serviceAccount:${google_service_account.dataflow_worker.email}"
  }
}

# --- APIs ------------------------------------------------------------------------------

resource "google_project_service" "enabled" {
  for_each = local.services

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

# --- storage: pipeline root, data, temp files, published models -----------------------

resource "google_storage_bucket" "pipeline" {
  project       = var.project
  name          = local.bucket_name
  location      = var.region
  force_destroy = var.bucket_force_destroy

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  # Temporary data (Dataflow temp and staging files) goes after temp_retention_days.
  # The pipeline root is not expired: Vertex caching reuses earlier tasks' outputs there.
  lifecycle_rule {
    condition {
      age            = var.temp_retention_days
      matches_prefix = [var.temp_prefix]
    }
    action {
      type = "Delete"
    }
  }

  # Versioning keeps replaced and deleted objects; drop those versions after a while.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

# --- Artifact Registry: the cpu, gpu and dataflow images ------------------------------

resource "google_artifact_registry_repository" "images" {
  project       = var.project
  location      = var.region
  repository_id = var.repository_id
  format        = "DOCKER"
  description   = "yt8m-pipeline images: cpu (components), gpu (trainer), dataflow (Beam workers)"

  depends_on = [google_project_service.enabled]
}

# --- service accounts --------------------------------------------------------------------

resource "google_service_account" "pipeline" {
  project      = var.project
  account_id   = var.pipeline_service_account_id
  display_name = "yt8m pipeline (Vertex AI Pipelines)"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "dataflow_worker" {
  project      = var.project
  account_id   = var.dataflow_service_account_id
  display_name = "yt8m Dataflow workers (preprocessing)"

  depends_on = [google_project_service.enabled]
}

# Project-level roles: only the Vertex AI and Dataflow ones (no storage, no basic roles).

resource "google_project_iam_member" "pipeline" {
  for_each = local.pipeline_project_roles

  project = var.project
  role    = each.value
  member  = local.service_account_members.pipeline
}

resource "google_project_iam_member" "dataflow_worker" {
  for_each = local.dataflow_project_roles

  project = var.project
  role    = each.value
  member  = local.service_account_members.dataflow
}

# The pipeline may act as the Dataflow worker SA (to launch the job as it), and only as it.
resource "google_service_account_iam_member" "pipeline_acts_as_dataflow_worker" {
  service_account_id = google_service_account.dataflow_worker.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.service_account_members.pipeline
}

# Who may submit runs that execute as the pipeline SA (empty by default).
resource "google_service_account_iam_member" "submitters_act_as_pipeline" {
  for_each = toset(var.pipeline_submitters)

  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# Bucket-scoped storage roles: this bucket only.

resource "google_storage_bucket_iam_member" "object_admin" {
  for_each = local.service_account_members

  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectAdmin"
  member = each.value
}

resource "google_storage_bucket_iam_member" "bucket_reader" {
  for_each = local.service_account_members

  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.legacyBucketReader"
  member = each.value
}

# Repository-scoped image pulls.

resource "google_artifact_registry_repository_iam_member" "reader" {
  for_each = local.service_account_members

  project    = var.project
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = each.value
}
