"""Alembic is the only way the schema is made: upgrade an empty database, compare, downgrade."""

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

import fastapi1.models  # noqa: F401
from fastapi1.db.base import Base
from fastapi1.db.migrate import alembic_config, downgrade_to_base, upgrade_to_head
from tests.conftest import throwaway_database


def schema_state(connection: Connection) -> tuple[set[str], str | None, list[object]]:
    """Tables, current revision, and the differences between the models and the database."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
    return tables, context.get_current_revision(), compare_metadata(context, Base.metadata)


async def read_schema(url: str) -> tuple[set[str], str | None, list[object]]:
    """Read :func:`schema_state` over asyncpg."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(schema_state)
    finally:
        await engine.dispose()


class TestMigrations:
    def test_upgrade_builds_the_models_schema_and_downgrade_removes_it(self, admin_url: str) -> None:
        with throwaway_database(admin_url, migrate=False) as url:
            assert asyncio.run(read_schema(url))[:2] == (set(), None)

            upgrade_to_head(url)
            tables, revision, differences = asyncio.run(read_schema(url))
            assert tables == set(Base.metadata.tables)
            assert revision == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
            assert differences == []

            downgrade_to_base(url)
            assert asyncio.run(read_schema(url))[:2] == (set(), None)

    def test_revision_files_are_date_stamped(self) -> None:
        script = ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused/db"))
        for revision in script.walk_revisions():
            assert revision.path is not None
            name = revision.path.rsplit("/", 1)[-1]
            assert name[:10].replace("_", "").isdigit(), name
