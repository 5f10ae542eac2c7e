variable "app_name" {
  description = "Name of the application: prefix of every resource."
  type        = string
  default     = "fastapi1"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.app_name))
    error_message = "app_name must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Deployment environment (dev, staging or prod); tags every resource."
  type        = string
  default     = "prod"

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "aws_region" {
  description = "AWS region of every resource."
  type        = string
  default     = "us-west-2"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region name such as us-west-2."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; split into public, private and database subnets across three zones."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR block of /20 or larger."
  }
}

variable "eks_cluster_name" {
  description = "Name of the EKS cluster."
  type        = string
  default     = "fastapi1-eks"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-_]{0,99}$", var.eks_cluster_name))
    error_message = "eks_cluster_name must be 1-100 letters, digits, hyphens or underscores."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes version of the EKS control plane (the Helm chart is validated against it)."
  type        = string
  default     = "1.33"

  validation {
    condition     = can(regex("^1\\.(3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be 1.30 or newer (the chart uses the native preStop sleep)."
  }
}

variable "node_instance_types" {
  description = "EC2 instance types of the managed node group."
  type        = list(string)
  default     = ["m6i.large"]

  validation {
    condition     = length(var.node_instance_types) > 0
    error_message = "node_instance_types needs at least one instance type."
  }
}

variable "node_group_size" {
  description = "Minimum, desired and maximum number of nodes."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default = { min = 2, desired = 3, max = 6 }

  validation {
    condition     = var.node_group_size.min >= 1 && var.node_group_size.min <= var.node_group_size.desired && var.node_group_size.desired <= var.node_group_size.max
    error_message = "node_group_size must satisfy 1 <= min <= desired <= max."
  }
}

variable "ecr_repo_name" {
  description = "ECR repository name of the image."
  type        = string
  default     = "fastapi1"

  validation {
    condition     = can(regex("^[a-z0-9]+([._/-][a-z0-9]+)*$", var.ecr_repo_name))
    error_message = "ecr_repo_name must be a valid ECR repository name (lowercase)."
  }
}

variable "image_tag" {
  description = "Image tag the first release deploys; CI upgrades the release to each commit's tag afterwards."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid image tag."
  }
}

variable "db_instance_class" {
  description = "RDS instance class of the primary and the read replica."
  type        = string
  default     = "db.m6g.large"

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS instance class such as db.m6g.large."
  }
}

variable "db_allocated_storage_gb" {
  description = "Initial storage of the database in GiB (grows automatically up to ten times this)."
  type        = number
  default     = 50

  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 6000
    error_message = "db_allocated_storage_gb must be between 20 and 6000."
  }
}

variable "db_name" {
  description = "Name of the PostgreSQL database."
  type        = string
  default     = "fastapi1"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must start with a letter and hold only lowercase letters, digits and underscores."
  }
}

variable "db_read_replica" {
  description = "Create a read replica and pass it to the service as DATABASE_READ_URL."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated RDS backups (point-in-time recovery)."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35 (a read replica needs backups)."
  }
}

variable "mq_instance_type" {
  description = "Amazon MQ (RabbitMQ) broker instance type."
  type        = string
  default     = "mq.m5.large"

  validation {
    condition     = startswith(var.mq_instance_type, "mq.")
    error_message = "mq_instance_type must be an Amazon MQ instance type such as mq.m5.large."
  }
}

variable "mq_engine_version" {
  description = "RabbitMQ engine version of the Amazon MQ broker."
  type        = string
  default     = "3.13"
}

variable "mq_deployment_mode" {
  description = "SINGLE_INSTANCE, or CLUSTER_MULTI_AZ (three nodes across zones) for production."
  type        = string
  default     = "CLUSTER_MULTI_AZ"

  validation {
    condition     = contains(["SINGLE_INSTANCE", "CLUSTER_MULTI_AZ"], var.mq_deployment_mode)
    error_message = "mq_deployment_mode must be SINGLE_INSTANCE or CLUSTER_MULTI_AZ."
  }
}

variable "secret_key_versions" {
  description = "Names of the generated SECRET_KEY keys, the one that encrypts first; to rotate, add a name last, apply, then move it first and apply."
  type        = list(string)
  default     = ["1"]

  validation {
    condition     = length(var.secret_key_versions) > 0 && length(distinct(var.secret_key_versions)) == length(var.secret_key_versions) && alltrue([for version in var.secret_key_versions : can(regex("^[a-z0-9-]{1,32}$", version))])
    error_message = "secret_key_versions must hold at least one name, each distinct, of 1-32 lowercase letters, digits or hyphens."
  }
}

variable "namespace" {
  description = "Kubernetes namespace of the release."
  type        = string
  default     = "fastapi1"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS label."
  }
}

variable "ingress_host" {
  description = "Host name the Ingress (AWS Load Balancer Controller) serves; empty disables the Ingress."
  type        = string
  default     = ""
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose main branch may push images and deploy (OIDC)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider (false when the account already has one)."
  type        = bool
  default     = true
}
