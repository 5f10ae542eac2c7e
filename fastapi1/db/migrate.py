"""Run alembic migrations from code (the launcher and the tests use this)."""

from pathlib import Path

from alembic import command
from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
    """Migrate the database to the newest revision.

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
