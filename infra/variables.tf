# Inputs. Only `project` is required; nothing here names a real project.

variable "project" {
  description = "GCP project id that runs the pipeline (Vertex AI, Dataflow, the bucket, the registry)."
  type        = string
}

variable "region" {
  description = "Region of Vertex AI Pipelines, Dataflow, the bucket and the Artifact Registry repository."
  type        = string
  default     = "us-central1"
}

variable "bucket_name" {
  description = "Bucket for the pipeline root, data, Dataflow temp files and published models; default <project>-yt8m."
  type        = string
  default     = null
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete a non-empty bucket (its models and data too). Keep false outside sandboxes."
  type        = bool
  default     = false
}

variable "temp_prefix" {
  description = "Object prefix of temporary data (Dataflow --temp_location / --staging_location); deleted after temp_retention_days."
  type        = string
  default     = "tmp/"

  validation {
    condition     = length(var.temp_prefix) > 1 && endswith(var.temp_prefix, "/")
    error_message = "temp_prefix must be a folder-like prefix ending in '/', never the whole bucket."
  }
}

variable "temp_retention_days" {
  description = "Age in days after which objects under temp_prefix are deleted."
  type        = number
  default     = 7
}

variable "noncurrent_retention_days" {
  description = "Days a replaced or deleted object version is kept (versioning is on) before it is deleted."
  type        = number
  default     = 30
}

variable "repository_id" {
  description = "Artifact Registry Docker repository holding the cpu, gpu and dataflow images."
  type        = string
  default     = "yt8m"
}

variable "image_tag" {
  description = "Tag used in the image names printed by `terraform output images` (pin by digest for Vertex)."
  type        = string
  default     = "0.1.0"
}

variable "pipeline_service_account_id" {
  description = "Account id of the service account the Vertex AI pipeline runs as."
  type        = string
  default     = "yt8m-pipeline"
}

variable "dataflow_service_account_id" {
  description = "Account id of the service account the Dataflow workers of the preprocessing job run as."
  type        = string
  default     = "yt8m-dataflow"
}

variable "pipeline_submitters" {
  description = "Members (e.g. \"user:you@example.com\", \"group:ml@example.com\") allowed to submit runs as the pipeline service account (roles/iam.serviceAccountUser on it)."
  type        = list(string)
  default     = []
}
