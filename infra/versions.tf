# Terraform and the google provider, pinned. After the first `terraform init`, commit the
# generated .terraform.lock.hcl: it pins the exact provider build and its checksums.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
