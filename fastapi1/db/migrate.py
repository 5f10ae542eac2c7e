"""Run alembic migrations from code (the launcher, the release job and the tests use this).

``python -m fastapi1.db.migrate`` migrates the configured database to head and exits: the
command of a release job (Kubernetes) when the servers run with ``MIGRATE_ON_START=false``.
Every upgrade takes the advisory lock ``MIGRATION_LOCK_KEY`` first (``migrations/env.py``),
so replicas and jobs that migrate at the same time run one after the other.
"""

import contextlib
import logging.config
from pathlib import Path

from alembic import command
from alembic.config import Config

from fastapi1.config import load_settings
from fastapi1.db.embedded import embedded_postgres

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# pg_advisory_xact_lock key held by every migration transaction: the first 8 bytes of
# sha256(b"fastapi1 migrations") as a signed 64-bit integer, fixed for every release.
MIGRATION_LOCK_KEY = -7565187420993669928


def alembic_config(database_url: str) -> Config:
    """Build the alembic configuration of this project for one database.

    Args:
        database_url: The asyncpg URL to migrate.

    Returns:
        The configuration, logging left as the caller set it up.
    """
    config = Config(PROJECT_ROOT / "alembic.ini")
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade_to_head(database_url: str) -> None:
    """Migrate the database to the newest revision, under the migration advisory lock.

    Args:
        database_url: The asyncpg URL to migrate.
    """
    command.upgrade(alembic_config(database_url), "head")


def downgrade_to_base(database_url: str) -> None:
    """Revert every revision, leaving an empty schema.

    Args:
        database_url: The asyncpg URL to migrate.
    """
    command.downgrade(alembic_config(database_url), "base")


def main() -> None:
    """Migrate the configured database (the embedded one when DATABASE_URL is unset) to head."""
    settings = load_settings()
    logging.config.fileConfig(settings.log_config, disable_existing_loggers=False)
    with contextlib.ExitStack() as stack:
        url = settings.database_url
        if url is None:
            url = stack.enter_context(embedded_postgres(settings.embedded_data_dir))
        upgrade_to_head(url)
    logging.getLogger("fastapi1").info("Database at head")


if __name__ == "__main__":
    main()
