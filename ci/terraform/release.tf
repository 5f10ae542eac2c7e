# The credentials (Secrets Manager is their record; the Kubernetes Secret is what the chart
# reads), and the Helm release of ci/helm/fastapi1.

# The application's own secrets: ADMIN_CLIENT_SECRET signs admin tokens, SECRET_KEY encrypts the
# API keys at rest. One SECRET_KEY key per name of var.secret_key_versions, generated once:
# reordering the names rotates the key that encrypts without regenerating any.
resource "random_password" "admin_client_secret" {
  length  = 48
  special = false
}

resource "random_password" "secret_key" {
  for_each = toset(var.secret_key_versions)

  length  = 48
  special = false
}

locals {
  database_url      = "postgresql://fastapi1:${random_password.database.result}@${aws_db_instance.primary.endpoint}/${var.db_name}?ssl=require"
  database_read_url = var.db_read_replica ? "postgresql://fastapi1:${random_password.database.result}@${aws_db_instance.replica[0].endpoint}/${var.db_name}?ssl=require" : ""
  # The endpoint is amqps://host:5671; the credentials go in front of the host.
  broker_url = replace(aws_mq_broker.rabbitmq.instances[0].endpoints[0], "amqps://", "amqps://fastapi1:${random_password.broker.result}@")
  # The first key encrypts, all decrypt.
  secret_key = join(",", [for version in var.secret_key_versions : random_password.secret_key[version].result])

  credentials = merge(
    {
      DATABASE_URL        = local.database_url
      BROKER_URL          = local.broker_url
      ADMIN_CLIENT_SECRET = random_password.admin_client_secret.result
      SECRET_KEY          = local.secret_key
    },
    var.db_read_replica ? { DATABASE_READ_URL = local.database_read_url } : {},
  )
}

resource "aws_secretsmanager_secret" "app" {
  name_prefix             = "${local.name}/app-"
  description             = "fastapi1 credentials: database, read replica and broker URLs, admin client secret, SECRET_KEY"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "app" {
  secret_id     = aws_secretsmanager_secret.app.id
  secret_string = jsonencode(local.credentials)
}

resource "kubernetes_namespace" "app" {
  metadata {
    name = var.namespace
    labels = {
      "pod-security.kubernetes.io/enforce" = "restricted"
    }
  }
}

resource "kubernetes_secret" "app" {
  metadata {
    name      = var.app_name
    namespace = kubernetes_namespace.app.metadata[0].name
  }

  data = local.credentials
}

resource "helm_release" "app" {
  name      = var.app_name
  namespace = kubernetes_namespace.app.metadata[0].name
  chart     = "${path.module}/../helm/fastapi1"

  # The migration Job runs as a pre-install/pre-upgrade hook; wait for the rollout.
  atomic  = true
  wait    = true
  timeout = 900

  values = [
    file("${path.module}/../helm/fastapi1/values-production.yaml"),
    yamlencode({
      image   = { repository = aws_ecr_repository.app.repository_url }
      secrets = { name = kubernetes_secret.app.metadata[0].name }
      # A changed credential (a rotated SECRET_KEY) restarts the pods, which read it at start-up.
      podAnnotations = { "checksum/credentials" = nonsensitive(sha256(jsonencode(local.credentials))) }
      ingress = {
        enabled = var.ingress_host != ""
        hosts   = var.ingress_host != "" ? [{ host = var.ingress_host }] : []
        tls     = []
      }
    }),
  ]

  set {
    name  = "image.tag"
    value = var.image_tag
  }

  lifecycle {
    # After the first release, CI's `helm upgrade --reset-then-reuse-values --set image.tag=<sha>` owns the tag.
    ignore_changes = [set]
  }
}
