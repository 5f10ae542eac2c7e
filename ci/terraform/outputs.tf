output "ecr_repo_url" {
  description = "URL of the ECR repository (the workflow's ECR_REPOSITORY is its last path segment)."
  value       = aws_ecr_repository.app.repository_url
}

output "eks_cluster_name" {
  description = "Name of the EKS cluster (the workflow's EKS_CLUSTER_NAME)."
  value       = module.eks.cluster_name
}

output "eks_cluster_endpoint" {
  description = "Endpoint of the EKS control plane."
  value       = module.eks.cluster_endpoint
}

output "database_endpoint" {
  description = "host:port of the RDS PostgreSQL primary."
  value       = aws_db_instance.primary.endpoint
}

output "database_read_endpoint" {
  description = "host:port of the read replica (DATABASE_READ_URL), or null without one."
  value       = var.db_read_replica ? aws_db_instance.replica[0].endpoint : null
}

output "broker_endpoint" {
  description = "AMQPS endpoint of the Amazon MQ RabbitMQ broker."
  value       = aws_mq_broker.rabbitmq.instances[0].endpoints[0]
}

output "credentials_secret_arn" {
  description = "ARN of the Secrets Manager secret holding DATABASE_URL, DATABASE_READ_URL, BROKER_URL, ADMIN_CLIENT_SECRET and SECRET_KEY."
  value       = aws_secretsmanager_secret.app.arn
}

output "admin_client_secret" {
  description = "ADMIN_CLIENT_SECRET, the key admin tokens are signed with (terraform output -raw admin_client_secret)."
  value       = random_password.admin_client_secret.result
  sensitive   = true
}

output "github_actions_role_arn" {
  description = "Role the GitHub workflow assumes through OIDC (the workflow's AWS_ROLE_ARN)."
  value       = aws_iam_role.github_actions.arn
}

output "namespace" {
  description = "Kubernetes namespace of the release (the workflow's K8S_NAMESPACE)."
  value       = kubernetes_namespace.app.metadata[0].name
}

output "service_url" {
  description = "Where the API answers: the Ingress host when one is set, else the in-cluster Service."
  value       = var.ingress_host != "" ? "https://${var.ingress_host}" : "http://${helm_release.app.name}.${helm_release.app.namespace}.svc.cluster.local"
}
