# What the next steps need: `terraform output` prints them (see infra/README.md).

output "bucket" {
  description = "The pipeline's bucket."
  value       = google_storage_bucket.pipeline.name
}

output "pipeline_root" {
  description = "Pass to `yt8m submit --pipeline-root`."
  value       = "gs://${google_storage_bucket.pipeline.name}/pipeline-root"
}

output "temp_location" {
  description = "Dataflow temp/staging location (expires after temp_retention_days)."
  value       = "gs://${google_storage_bucket.pipeline.name}/${trimsuffix(var.temp_prefix, "/")}"
}

output "registry" {
  description = "Docker registry path of the images: <region>-docker.pkg.dev/<project>/<repository>."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
}

output "images" {
  description = "Image names to build, push and export as YT8M_CPU_IMAGE / YT8M_GPU_IMAGE / YT8M_DATAFLOW_IMAGE."
  value = {
    for name in ["cpu", "gpu", "dataflow"] :
    name => "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}/yt8m-${name}:${var.image_tag}"
  }
}

output "pipeline_service_account" {
  description = "Email of the service account the pipeline runs as."
  value       = google_service_account.pipeline.email
}

output "dataflow_service_account" {
  description = "Email of the Dataflow worker service account (--service_account_email of the Beam job)."
  value       = google_service_account.dataflow_worker.email
}
