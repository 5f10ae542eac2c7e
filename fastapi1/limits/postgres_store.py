"""The limits' state in PostgreSQL: an API key's window as slots, a service's day as one guarded row.

Every statement runs in autocommit on an engine of the limiter's own: the limits are
bookkeeping, committed on their own whatever becomes of the request, and the request's pool
is never waited on (a request holding a connection while it waits for the limiter, with
every connection so held, would wait for itself).

**Rate.** An API key has RATE_LIMIT_PER_MINUTE rows (slots); a slot is free once its
``used_at`` is a window old. Taking k requests is one UPDATE of up to k free slots chosen
``FOR UPDATE SKIP LOCKED``: concurrent requests of one key, from any process, take different
slots without waiting for each other's row locks, and a slot taken meanwhile by another
fails the re-check of ``used_at`` under READ COMMITTED, so no slot is taken twice and the
count is exact. No free slot: refused, and nothing is written.

**Daily.** A row per (service, UTC day), raised by an upsert whose guard ``count + n <=
limit`` decides; the row lock is held for that statement alone, never for the request.

Both read the database's clock (``now()``), one clock for every process and host.
"""

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fastapi1.config import Settings
from fastapi1.db.engine import Database, create_engine
from fastapi1.errors import LimitsUnavailable, database_unavailable
from fastapi1.limits.store import Reserved, StoreConfig, Taken

UNAVAILABLE = "Limits unavailable: the database does not answer, try again shortly"
# Connections of the limiter's engine per process: two flushers per limit, a release, a pruning.
POOL_SIZE = 6
# Days a service's count is kept after its day (a release may come a little after midnight).
DAYS_KEPT = 3
# An API key whose slots were all unused this long loses them (taken again on its next request).
IDLE_KEY_S = 86_400.0

# The statements' clock is the database's, ``now()``, shifted by ``:offset_s`` (0 but in tests).

TAKE = text("""
WITH wanted AS (
    SELECT api_key_id, k FROM unnest(CAST(:key_ids AS uuid[]), CAST(:counts AS int[])) AS w(api_key_id, k)
), free AS (
    SELECT f.api_key_id, f.slot
    FROM wanted CROSS JOIN LATERAL (
        SELECT s.api_key_id, s.slot FROM rate_limit_slots AS s
        WHERE s.api_key_id = wanted.api_key_id AND s.slot < :limit
            AND s.used_at <= (now() + make_interval(secs => :offset_s)) - make_interval(secs => :window_s)
        ORDER BY s.used_at
        LIMIT wanted.k
        FOR UPDATE SKIP LOCKED
    ) AS f
)
UPDATE rate_limit_slots AS s SET used_at = (now() + make_interval(secs => :offset_s))
FROM free WHERE s.api_key_id = free.api_key_id AND s.slot = free.slot
RETURNING s.api_key_id
""")

# For keys that got fewer slots than they wanted: when their oldest slot frees, and whether
# they have all their slots (the last one exists only when all do: they are made together).
# In epoch seconds: a free slot another statement holds is ``-infinity``, which timestamps
# cannot subtract and numbers can (-Infinity: Retry-After 1).
WAITS = text("""
SELECT w.api_key_id,
    EXTRACT(EPOCH FROM (
        SELECT min(s.used_at) FROM rate_limit_slots AS s WHERE s.api_key_id = w.api_key_id AND s.slot < :limit
    )) + :window_s - EXTRACT(EPOCH FROM now() + make_interval(secs => :offset_s)) AS retry_after_s,
    EXISTS (
        SELECT FROM rate_limit_slots AS s WHERE s.api_key_id = w.api_key_id AND s.slot = :limit - 1
    ) AS provisioned
FROM unnest(CAST(:key_ids AS uuid[])) AS w(api_key_id)
""")

PROVISION = text("""
INSERT INTO rate_limit_slots (api_key_id, slot)
SELECT w.api_key_id, g.slot
FROM unnest(CAST(:key_ids AS uuid[])) AS w(api_key_id) CROSS JOIN generate_series(0, :limit - 1) AS g(slot)
ON CONFLICT DO NOTHING
""")

# Services in id order, so two batches lock their rows in one order and never deadlock.
RESERVE = text("""
WITH asked AS (
    SELECT service_id, n FROM unnest(CAST(:service_ids AS uuid[]), CAST(:counts AS int[])) AS a(service_id, n)
), clock AS (
    SELECT (now() + make_interval(secs => :offset_s)) AT TIME ZONE 'UTC' AS now
), today AS (
    SELECT CAST(clock.now AS date) AS day, clock.now FROM clock
), counted AS (
    INSERT INTO service_daily_counts AS c (service_id, day, count)
    SELECT asked.service_id, today.day, asked.n FROM asked, today WHERE asked.n <= :limit ORDER BY asked.service_id
    ON CONFLICT (service_id, day) DO UPDATE SET count = c.count + excluded.count
    WHERE c.count + excluded.count <= :limit
    RETURNING c.service_id
)
SELECT asked.service_id, counted.service_id IS NOT NULL AS admitted, today.day,
    EXTRACT(EPOCH FROM CAST(today.day + 1 AS timestamp) - today.now) AS retry_after_s
FROM asked CROSS JOIN today LEFT JOIN counted ON counted.service_id = asked.service_id
""")

RELEASE = text("""
UPDATE service_daily_counts SET count = greatest(count - :count, 0) WHERE service_id = :service_id AND day = :day
""")

PRUNE_DAYS = text("""
DELETE FROM service_daily_counts
WHERE day < CAST((now() + make_interval(secs => :offset_s)) AT TIME ZONE 'UTC' AS date) - CAST(:days_kept AS int)
""")

# Slots past a lowered limit, and every slot of a key idle for IDLE_KEY_S.
PRUNE_SLOTS = text("""
DELETE FROM rate_limit_slots AS s
WHERE s.slot >= :limit OR s.api_key_id IN (
    SELECT api_key_id FROM rate_limit_slots GROUP BY api_key_id
    HAVING max(used_at) < (now() + make_interval(secs => :offset_s)) - make_interval(secs => :idle_s)
)
""")


def shortfall(wanted: Mapping[uuid.UUID, int], taken: Counter[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The requests of each key that got no slot.

    Args:
        wanted: Requests per key.
        taken: Slots taken per key.
    """
    return {key: count - taken[key] for key, count in wanted.items() if taken[key] < count}


class PostgresStore:
    """The limits' state in the ``rate_limit_slots`` and ``service_daily_counts`` tables."""

    def __init__(self, engine: AsyncEngine, config: StoreConfig) -> None:
        """Use an engine in autocommit.

        Args:
            engine: The limiter's engine.
            config: The limits.
        """
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.config = config
        self.clock = {"offset_s": config.clock_offset_s}
        self.window = {**self.clock, "limit": config.rate_limit, "window_s": config.window_s}

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection of the limiter's pool; a database that does not answer is a 503.

        Yields:
            The connection.
        """
        try:
            async with self.engine.connect() as connection:
                yield connection
        except sa_exc.SQLAlchemyError as error:
            if not database_unavailable(error):
                raise
            raise LimitsUnavailable(UNAVAILABLE) from error

    async def take(self, wanted: Mapping[uuid.UUID, int]) -> dict[uuid.UUID, Taken]:
        """Take free slots; a key seen for the first time (or whose limit grew) gets its slots first.

        A key refused while one of its slots was free tries once more: that slot was held by a
        concurrent statement (which takes it, or frees it if it fails), or was made or freed
        after this statement's snapshot (another process gave a new key its slots meanwhile).

        Args:
            wanted: Requests per API key.
        """
        async with self.connection() as connection:
            taken = await self.take_slots(connection, wanted)
            waits = await self.waits(connection, shortfall(wanted, taken))
            new = [key for key, (_, provisioned) in waits.items() if not provisioned]
            if new:
                await connection.execute(PROVISION, {"key_ids": new, "limit": self.config.rate_limit})
            again = {key: wanted[key] for key, (wait, provisioned) in waits.items() if wait <= 0 or not provisioned}
            if again:
                taken += await self.take_slots(connection, shortfall(again, taken))
                waits.update(await self.waits(connection, shortfall(again, taken)))
        return {key: Taken(taken[key], waits[key][0] if key in waits else 0.0) for key in wanted}

    async def take_slots(self, connection: AsyncConnection, wanted: Mapping[uuid.UUID, int]) -> Counter[uuid.UUID]:
        """Take up to the wanted number of free slots of each key, in one statement.

        Args:
            connection: The connection.
            wanted: Slots per key.
        """
        parameters = {**self.window, "key_ids": list(wanted), "counts": list(wanted.values())}
        return Counter((await connection.execute(TAKE, parameters)).scalars())

    async def waits(
        self, connection: AsyncConnection, short: Mapping[uuid.UUID, int]
    ) -> dict[uuid.UUID, tuple[float, bool]]:
        """For keys refused some slots: seconds until their oldest slot frees, and whether they have all slots.

        Args:
            connection: The connection.
            short: The keys (and how many they lacked).
        """
        if not short:
            return {}
        rows = await connection.execute(WAITS, {**self.window, "key_ids": list(short)})
        return {row.api_key_id: (float(row.retry_after_s or 0), row.provisioned) for row in rows}

    async def reserve(self, asked: Mapping[uuid.UUID, Sequence[int]]) -> dict[uuid.UUID, Reserved]:
        """Add each service's batch at once; a batch that does not fit is decided one count at a time.

        Args:
            asked: Counts per service, in arrival order.
        """
        async with self.connection() as connection:
            sums = await self.add(connection, {service_id: sum(counts) for service_id, counts in asked.items()})
            reserved = {
                service_id: Reserved([admitted] * len(asked[service_id]), day, wait)
                for service_id, (admitted, day, wait) in sums.items()
            }
            # Refused together, they may fit one by one (near the limit only): each in its own
            # guarded statement, in arrival order; round i adds the i-th count of every such service.
            split = {
                service_id: asked[service_id]
                for service_id, (admitted, _, _) in sums.items()
                if not admitted and len(asked[service_id]) > 1
            }
            for index in range(max(map(len, split.values()), default=0)):
                ones = {service_id: counts[index] for service_id, counts in split.items() if index < len(counts)}
                for service_id, (admitted, _, _) in (await self.add(connection, ones)).items():
                    reserved[service_id].admitted[index] = admitted
        return reserved

    async def add(
        self, connection: AsyncConnection, counts: Mapping[uuid.UUID, int]
    ) -> dict[uuid.UUID, tuple[bool, date, float]]:
        """Add each count to its service's row of today if it fits.

        Args:
            connection: The connection.
            counts: One count per service.

        Returns:
            Per service: admitted, the day, seconds until the next UTC midnight.
        """
        parameters = {
            **self.clock,
            "service_ids": list(counts),
            "counts": list(counts.values()),
            "limit": self.config.daily_limit,
        }
        rows = await connection.execute(RESERVE, parameters)
        return {row.service_id: (row.admitted, row.day, float(row.retry_after_s)) for row in rows}

    async def release(self, service_id: uuid.UUID, day: date, count: int) -> None:
        """Give back a reservation's notifications to the day it counted on.

        Args:
            service_id: The service.
            day: The UTC day.
            count: How many.
        """
        async with self.connection() as connection:
            await connection.execute(RELEASE, {"service_id": service_id, "day": day, "count": count})

    async def prune(self) -> None:
        """Delete counts older than DAYS_KEPT days, and the slots of keys idle for a day or past the limit."""
        parameters: dict[str, Any] = {**self.clock, "limit": self.config.rate_limit, "idle_s": IDLE_KEY_S}
        async with self.connection() as connection:
            await connection.execute(PRUNE_DAYS, {**self.clock, "days_kept": DAYS_KEPT})
            await connection.execute(PRUNE_SLOTS, parameters)


@contextlib.asynccontextmanager
async def open_postgres_store(
    settings: Settings, database: Database, config: StoreConfig, pool_size: int = POOL_SIZE
) -> AsyncIterator[PostgresStore]:
    """Open the limiter's engine on the primary database.

    Args:
        settings: The database timeouts.
        database: The application's database (its primary's URL).
        config: The limits.
        pool_size: Connections of the engine.

    Yields:
        The store; its engine is disposed on exit.
    """
    url = database.write_engine.url.render_as_string(hide_password=False)
    sized = settings.model_copy(update={"db_pool_size": pool_size, "db_max_overflow": 0})
    # The slots are UNLOGGED (no WAL); a daily count committed without waiting for its WAL
    # flush is lost only with the last instants before a PostgreSQL crash, never the day's count.
    engine = create_engine(url, sized, "limits", {"synchronous_commit": "off"})
    try:
        yield PostgresStore(engine, config)
    finally:
        await engine.dispose()
