# RDS PostgreSQL 16 (Multi-AZ, encrypted, a read replica) and Amazon MQ for RabbitMQ, reachable
# from the cluster's nodes only.

resource "aws_security_group" "database" {
  name_prefix = "${local.name}-db-"
  description = "PostgreSQL from the EKS nodes"
  vpc_id      = module.vpc.vpc_id

  ingress {
    description     = "PostgreSQL from the nodes"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [module.eks.node_security_group_id]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "random_password" "database" {
  length  = 32
  special = false
}

resource "aws_db_parameter_group" "postgres" {
  name_prefix = "${local.name}-pg16-"
  family      = "postgres16"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "primary" {
  identifier     = "${local.name}-db"
  engine         = "postgres"
  engine_version = "16"
  instance_class = var.db_instance_class

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_allocated_storage_gb * 10
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name  = var.db_name
  username = "fastapi1"
  password = random_password.database.result

  multi_az               = true
  db_subnet_group_name   = module.vpc.database_subnet_group_name
  vpc_security_group_ids = [aws_security_group.database.id]
  parameter_group_name   = aws_db_parameter_group.postgres.name
  publicly_accessible    = false

  backup_retention_period      = var.db_backup_retention_days
  deletion_protection          = var.environment == "prod"
  skip_final_snapshot          = var.environment != "prod"
  final_snapshot_identifier    = "${local.name}-db-final"
  performance_insights_enabled = true
  auto_minor_version_upgrade   = true
  apply_immediately            = false
}

resource "aws_db_instance" "replica" {
  count = var.db_read_replica ? 1 : 0

  identifier          = "${local.name}-db-replica"
  replicate_source_db = aws_db_instance.primary.identifier
  instance_class      = var.db_instance_class
  storage_encrypted   = true

  vpc_security_group_ids = [aws_security_group.database.id]
  parameter_group_name   = aws_db_parameter_group.postgres.name
  publicly_accessible    = false

  skip_final_snapshot          = true
  performance_insights_enabled = true
  auto_minor_version_upgrade   = true
}

resource "aws_security_group" "broker" {
  name_prefix = "${local.name}-mq-"
  description = "AMQPS from the EKS nodes"
  vpc_id      = module.vpc.vpc_id

  ingress {
    description     = "AMQP over TLS from the nodes"
    from_port       = 5671
    to_port         = 5671
    protocol        = "tcp"
    security_groups = [module.eks.node_security_group_id]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "random_password" "broker" {
  length  = 32
  special = false
}

resource "aws_mq_broker" "rabbitmq" {
  broker_name                = "${local.name}-mq"
  engine_type                = "RabbitMQ"
  engine_version             = var.mq_engine_version
  host_instance_type         = var.mq_instance_type
  deployment_mode            = var.mq_deployment_mode
  publicly_accessible        = false
  auto_minor_version_upgrade = true
  security_groups            = [aws_security_group.broker.id]
  subnet_ids                 = var.mq_deployment_mode == "SINGLE_INSTANCE" ? [module.vpc.private_subnets[0]] : module.vpc.private_subnets

  user {
    username = "fastapi1"
    password = random_password.broker.result
  }

  logs {
    general = true
  }
}
