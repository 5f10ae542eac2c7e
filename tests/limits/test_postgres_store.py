"""What is particular to the PostgreSQL store: its tables, a limit that changes, and pruning."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.limits.postgres_store import FIRST_SLOTS
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
    async def test_the_slots_are_unlogged_and_the_daily_counts_are_logged(self, sql: asyncpg.Connection) -> None:
        rows = await sql.fetch(
            "SELECT relname, relpersistence::text FROM pg_class"
            " WHERE relname IN ('rate_limit_slots', 'service_daily_counts')"
        )
        assert {row["relname"]: row["relpersistence"] for row in rows} == {
            "rate_limit_slots": "u",
            "service_daily_counts": "p",
        }


class TestChangedLimit:
    async def test_a_lowered_limit_ignores_the_slots_above_it_and_pruning_deletes_them(
        self, make_limiter: LimiterFactory, sql: asyncpg.Connection
    ) -> None:
        key = uuid.uuid4()
        async with make_limiter(rate_limit=5, window_s=0.5) as limiter:
            assert sum(await admitted(limiter, key, 5)) == 5
        await asyncio.sleep(0.6)
        async with make_limiter(rate_limit=3, window_s=0.5) as limiter:
            assert await admitted(limiter, key, 4) == [True, True, True, False]
            await limiter.store.prune()
        slots = await sql.fetchval("SELECT count(*) FROM rate_limit_slots WHERE api_key_id = $1", key)
        assert slots == 3

    async def test_a_raised_limit_gives_the_key_its_new_slots(self, make_limiter: LimiterFactory) -> None:
        key = uuid.uuid4()
        async with make_limiter(rate_limit=3) as limiter:
            assert await admitted(limiter, key, 4) == [True, True, True, False]
        async with make_limiter(rate_limit=5) as limiter:
            assert await admitted(limiter, key, 3) == [True, True, False]


class TestSlotsOnDemand:
    async def test_a_key_gets_slots_as_its_requests_need_them_up_to_its_limit(
        self, make_limiter: LimiterFactory, sql: asyncpg.Connection
    ) -> None:
        quiet, busy = uuid.uuid4(), uuid.uuid4()
        async with make_limiter(rate_limit=1_000) as limiter:
            assert sum(await admitted(limiter, quiet, 10)) == 10
            outcomes = [await admitted(limiter, busy, 103) for _ in range(10)]
        assert sum(map(sum, outcomes)) == 1_000
        assert outcomes[-1][-30:] == [False] * 30
        counts = await sql.fetch(
            "SELECT api_key_id, count(*) FROM rate_limit_slots WHERE api_key_id = ANY($1) GROUP BY api_key_id",
            [quiet, busy],
        )
        assert {row["api_key_id"]: row["count"] for row in counts} == {quiet: FIRST_SLOTS, busy: 1_000}

    @pytest.mark.parametrize("batched", [True, False])
    async def test_concurrent_requests_far_below_a_high_limit_make_at_most_twice_the_slots_they_use(
        self, make_limiter: LimiterFactory, sql: asyncpg.Connection, batched: bool
    ) -> None:
        key = uuid.uuid4()
        async with make_limiter(rate_limit=10_000_000, batched=batched) as limiter, asyncio.TaskGroup() as callers:
            # Requests arriving a few at a time, as over HTTP: batches contend for the same free slots.
            for _ in range(40):
                for _ in range(10):
                    callers.create_task(limiter.check_request(key, "normal"))
                await asyncio.sleep(0.002)
        slots = await sql.fetchval("SELECT count(*) FROM rate_limit_slots WHERE api_key_id = $1", key)
        assert slots <= 2 * 400


class TestPruning:
    async def test_old_days_and_idle_keys_are_deleted_and_recent_ones_kept(
        self, make_limiter: LimiterFactory, own_database_url: str, settings: Settings
    ) -> None:
        # A database of this test's own: pruning with a clock days ahead deletes everyone's rows.
        database = Database.connect(own_database_url, None, settings)
        connection = await asyncpg.connect(asyncpg_dsn(own_database_url))
        key, service_id = uuid.uuid4(), uuid.uuid4()

        async def rows() -> tuple[int, int]:
            slots = await connection.fetchval("SELECT count(*) FROM rate_limit_slots WHERE api_key_id = $1", key)
            days = await connection.fetchval(
                "SELECT count(*) FROM service_daily_counts WHERE service_id = $1", service_id
            )
            return slots, days

        try:
            async with make_limiter(rate_limit=3, database=database) as limiter:
                await limiter.check_request(key, "normal")
                await limiter.reserve_sends(service_id, 1)
            async with make_limiter(rate_limit=3, database=database, clock_offset_s=DAY_S / 2) as later:
                await later.store.prune()
            assert await rows() == (3, 1)
            async with make_limiter(rate_limit=3, database=database, clock_offset_s=4 * DAY_S) as much_later:
                await much_later.store.prune()
            assert await rows() == (0, 0)
        finally:
            await connection.close()
            await database.dispose()
