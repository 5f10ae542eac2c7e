"""Alembic environment: runs migrations on asyncpg, URL from fastapi1's settings."""

import asyncio
import contextlib
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import fastapi1.models  # noqa: F401  (registers every table on Base.metadata)
from fastapi1.config import Settings
from fastapi1.db.base import Base
from fastapi1.db.embedded import embedded_postgres
from fastapi1.db.migrate import MIGRATION_LOCK_KEY

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    """Run the migrations on an open connection, in one transaction, one migrator at a time.

    The transaction first takes the advisory lock ``MIGRATION_LOCK_KEY``: replicas that start
    together queue on it, and each reads the schema's revision only once it holds the lock,
    so the first migrates and the others find the schema at head. The lock ends with the
    transaction.
    """
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    """Connect with asyncpg and run the migrations."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


def run_migrations_offline(url: str) -> None:
    """Emit the migration SQL without connecting (``alembic upgrade head --sql``)."""
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Pick the database (explicit, configured, or embedded) and migrate it."""
    url = config.attributes.get("database_url") or Settings().database_url
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(embedded_postgres(Settings().embedded_data_dir))
        if context.is_offline_mode():
            run_migrations_offline(url)
        else:
            asyncio.run(run_async_migrations(url))


main()
