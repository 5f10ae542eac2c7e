"""What is particular to the PostgreSQL store: its tables, a limit that changes, and pruning."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.limits.postgres_store import RING
from tests.conftest import asyncpg_dsn
from tests.limits.conftest import LimiterFactory
from tests.limits.test_rate_limit import admitted

DAY_S = 86_400.0


@pytest.fixture
def store_settings(settings: Settings) -> Settings:
    """PostgreSQL only (the shared fixture of the same name also gives Redis)."""
    return settings


@pytest.fixture
async def sql(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to this run's database, to look at the tables."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield connection
    finally:
        await connection.close()


class TestTables:
    async def test_the_windows_are_unlogged_and_the_daily_counts_are_logged(self, sql: asyncpg.Connection) -> None:
        rows = await sql.fetch(
            "SELECT relname, relpersistence::text FROM pg_class"
            " WHERE relname IN ('rate_limit_windows', 'service_daily_counts')"
        )
        assert {row["relname"]: row["relpersistence"] for row in rows} == {
            "rate_limit_windows": "u",
            "service_daily_counts": "p",
        }

    async def test_the_windows_keep_half_of_each_page_free_for_hot_updates(self, sql: asyncpg.Connection) -> None:
        options = await sql.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'rate_limit_windows'")
        assert options == ["fillfactor=50"]
        indexes = await sql.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'rate_limit_windows'")
        assert [row["indexdef"].split(" USING ")[1] for row in indexes] == ["btree (api_key_id)"]


class TestChangedLimit:
    async def test_a_lowered_limit_refuses_until_the_window_holds_less_than_it(
        self, make_limiter: LimiterFactory
    ) -> None:
        key = uuid.uuid4()
        async with make_limiter(rate_limit=5, window_s=0.6) as limiter:
            assert sum(await admitted(limiter, key, 5)) == 5
        async with make_limiter(rate_limit=3, window_s=0.6) as limiter:
            assert await admitted(limiter, key, 1) == [False]
            await asyncio.sleep(0.7)
            assert await admitted(limiter, key, 4) == [True, True, True, False]

    async def test_a_raised_limit_admits_more_at_once(self, make_limiter: LimiterFactory) -> None:
        key = uuid.uuid4()
        async with make_limiter(rate_limit=3) as limiter:
            assert await admitted(limiter, key, 4) == [True, True, True, False]
        async with make_limiter(rate_limit=5) as limiter:
            assert await admitted(limiter, key, 3) == [True, True, False]


class TestOneRowPerKey:
    @pytest.mark.parametrize("batched", [True, False])
    async def test_a_key_has_one_row_of_counts_whatever_its_limit_and_requests(
        self, make_limiter: LimiterFactory, sql: asyncpg.Connection, batched: bool
    ) -> None:
        key = uuid.uuid4()
        async with make_limiter(rate_limit=10_000_000, batched=batched) as limiter, asyncio.TaskGroup() as callers:
            # Requests arriving a few at a time, as over HTTP: batches of one key from several flushers.
            for _ in range(40):
                for _ in range(10):
                    callers.create_task(limiter.check_request(key, "normal"))
                await asyncio.sleep(0.002)
        rows = await sql.fetch("SELECT steps, counts FROM rate_limit_windows WHERE api_key_id = $1", key)
        assert len(rows) == 1
        assert (len(rows[0]["steps"]), sum(rows[0]["counts"])) == (RING, 400)


class TestPruning:
    async def test_pruning_keeps_a_short_windows_live_counts(self, make_limiter: LimiterFactory) -> None:
        # Steps of 10 ms: pruning compares in steps, never a width rounded to whole seconds.
        async with make_limiter(rate_limit=2, window_s=0.6) as limiter:
            key = uuid.uuid4()
            assert await admitted(limiter, key, 1) == [True]
            await limiter.store.prune()
            assert await admitted(limiter, key, 2) == [True, False]

    async def test_pruning_skips_a_window_a_take_holds(
        self, make_limiter: LimiterFactory, own_database_url: str, settings: Settings
    ) -> None:
        database = Database.connect(own_database_url, None, settings)
        connection = await asyncpg.connect(asyncpg_dsn(own_database_url))
        key = uuid.uuid4()
        try:
            async with make_limiter(rate_limit=3, database=database) as limiter:
                await limiter.check_request(key, "normal")
            async with connection.transaction():  # a take in progress: the window's row locked
                await connection.execute("SELECT 1 FROM rate_limit_windows WHERE api_key_id = $1 FOR UPDATE", key)
                async with make_limiter(rate_limit=3, database=database, clock_offset_s=4 * DAY_S) as later:
                    await asyncio.wait_for(later.store.prune(), 5)  # does not wait for the lock
            assert await connection.fetchval("SELECT count(*) FROM rate_limit_windows WHERE api_key_id = $1", key)
        finally:
            await connection.close()
            await database.dispose()

    async def test_old_days_and_idle_keys_are_deleted_and_recent_ones_kept(
        self, make_limiter: LimiterFactory, own_database_url: str, settings: Settings
    ) -> None:
        # A database of this test's own: pruning with a clock days ahead deletes everyone's rows.
        database = Database.connect(own_database_url, None, settings)
        connection = await asyncpg.connect(asyncpg_dsn(own_database_url))
        key, service_id = uuid.uuid4(), uuid.uuid4()

        async def rows() -> tuple[int, int]:
            windows = await connection.fetchval("SELECT count(*) FROM rate_limit_windows WHERE api_key_id = $1", key)
            days = await connection.fetchval(
                "SELECT count(*) FROM service_daily_counts WHERE service_id = $1", service_id
            )
            return windows, days

        try:
            async with make_limiter(rate_limit=3, database=database) as limiter:
                await limiter.check_request(key, "normal")
                await limiter.reserve_sends(service_id, 1)
            async with make_limiter(rate_limit=3, database=database, clock_offset_s=DAY_S / 2) as later:
                await later.store.prune()
            assert await rows() == (1, 1)
            async with make_limiter(rate_limit=3, database=database, clock_offset_s=4 * DAY_S) as much_later:
                await much_later.store.prune()
            assert await rows() == (0, 0)
        finally:
            await connection.close()
            await database.dispose()
