terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.90"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.17"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.36"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # State holds the generated database and broker passwords: keep it in an encrypted,
  # access-controlled backend, e.g.
  # backend "s3" { bucket = "...", key = "fastapi1.tfstate", region = "...", encrypt = true, use_lockfile = true }
}
