"""Alembic is the only way the schema is made: upgrade an empty database, compare, downgrade."""

import asyncio
import os
import sys

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

import fastapi1.models  # noqa: F401
from fastapi1.db.base import Base
from fastapi1.db.migrate import MIGRATION_LOCK_KEY, alembic_config, downgrade_to_base, upgrade_to_head
from tests.conftest import PROJECT_ROOT, asyncpg_dsn, throwaway_database


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


async def waiting_for_the_migration_lock(url: str) -> int:
    """How many sessions wait for the migration advisory lock in the database of ``url``."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        # A bigint key is stored as classid (high 32 bits) and objid (low 32 bits), objsubid 1.
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1",
                MIGRATION_LOCK_KEY,
            )
        )
    finally:
        await connection.close()


async def version_rows(url: str) -> list[str]:
    """The revisions recorded in ``alembic_version``."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return [row["version_num"] for row in await connection.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await connection.close()


class TestMigrationLock:
    def test_two_release_jobs_started_together_queue_on_the_lock_and_both_succeed(self, admin_url: str) -> None:
        """Two ``python -m fastapi1.db.migrate`` wait while the lock is held, then migrate once between them."""
        with throwaway_database(admin_url, migrate=False) as url:
            asyncio.run(self.race_two_jobs(url))

    async def race_two_jobs(self, url: str) -> None:
        """Start two migration jobs while holding the lock, release it, and check the schema."""
        holder = await asyncpg.connect(asyncpg_dsn(url))
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        env = {**os.environ, "DATABASE_URL": url}
        jobs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fastapi1.db.migrate",
                cwd=PROJECT_ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        try:
            async with asyncio.timeout(60):
                while await waiting_for_the_migration_lock(url) < 2:
                    assert all(job.returncode is None for job in jobs)
                    await asyncio.sleep(0.1)
            # Both are queued on the lock, and neither has touched the schema.
            assert (await read_schema(url))[:2] == (set(), None)
        finally:
            await holder.close()
        outputs = [(await job.communicate())[0].decode() for job in jobs]
        assert [job.returncode for job in jobs] == [0, 0], outputs

        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        tables, revision, differences = await read_schema(url)
        assert (revision, differences) == (head, [])
        assert await version_rows(url) == [head]
        assert tables == set(Base.metadata.tables)
