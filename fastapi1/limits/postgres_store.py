"""The limits' state in PostgreSQL: an API key's window as slots, a service's day as one guarded row.

Every statement runs in autocommit on a pool of the limiter's own: the limits are bookkeeping,
committed on their own whatever becomes of the request, and the request's pool is never
waited on (requests holding every pooled connection while they wait for the limiter would
wait for themselves). The pool is asyncpg's, not a SQLAlchemy engine's: measured on this
path (one statement per call, sequential), SQLAlchemy's connection and execution layers
took 450 µs of CPU per call and a plain asyncpg pool 225 µs, the whole budget of a request
being about 1.2 ms.

**Rate.** An API key has up to RATE_LIMIT_PER_MINUTE rows (slots), made as its requests need
them; a slot is free once its ``used_at`` is a window old. Taking k requests is one UPDATE of up to k free slots chosen
``FOR UPDATE SKIP LOCKED``: concurrent requests of one key, from any process, take different
slots without waiting for each other's row locks, and a slot taken meanwhile by another
fails the re-check of ``used_at`` under READ COMMITTED, so no slot is taken twice and the
count is exact. No free slot and all of them made: refused, and nothing is written.

**Daily.** A row per (service, UTC day), raised by an upsert whose guard ``count + n <=
limit`` decides; the row lock is held for that statement alone, never for the request.

Both read the database's clock (``now()``), one clock for every process and host; ``$offset``
shifts it in tests only.
"""

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date

import asyncpg
from sqlalchemy.engine import make_url

from fastapi1.config import Settings
from fastapi1.db.engine import Database, connect_args
from fastapi1.errors import UNAVAILABLE_SQLSTATE_CLASSES, LimitsUnavailable
from fastapi1.limits.store import POOL_SIZE, Reserved, StoreConfig, Taken

UNAVAILABLE = "Limits unavailable: the database does not answer, try again shortly"
# Days a service's count is kept after its day (a release may come a little after midnight).
DAYS_KEPT = 3
# An API key whose slots were all unused this long loses them (taken again on its next request).
IDLE_KEY_S = 86_400.0
# A key's first slots. It gets more as its requests need them, at least doubling each time up
# to its limit: its rows follow its busiest minute, not the limit (the bench's key has a limit
# of 10,000,000, which made in one statement would outlast DB_STATEMENT_TIMEOUT_S).
FIRST_SLOTS = 64
# Rounds of growing and taking again within one call, for keys still short of slots.
ROUNDS = 3

# $1 key ids, $2 slots wanted per key, $3 limit, $4 window (s), $5 clock offset (s).
TAKE = """
WITH wanted AS (
    SELECT api_key_id, k FROM unnest($1::uuid[], $2::int[]) AS w(api_key_id, k)
), free AS (
    SELECT f.api_key_id, f.slot
    FROM wanted CROSS JOIN LATERAL (
        SELECT s.api_key_id, s.slot FROM rate_limit_slots AS s
        WHERE s.api_key_id = wanted.api_key_id AND s.slot < $3
            AND s.used_at <= now() + make_interval(secs => $5) - make_interval(secs => $4)
        ORDER BY s.used_at
        LIMIT wanted.k
        FOR UPDATE SKIP LOCKED
    ) AS f
)
UPDATE rate_limit_slots AS s SET used_at = now() + make_interval(secs => $5)
FROM free WHERE s.api_key_id = free.api_key_id AND s.slot = free.slot
RETURNING s.api_key_id
"""

# For keys that got fewer slots than they wanted: seconds until their oldest slot frees, and
# how many slots they have (they are numbered from 0). In epoch seconds: a free slot another
# statement holds is ``-infinity``, which timestamps cannot subtract and numbers can
# (-Infinity: Retry-After 1). $1 key ids, $2 limit, $3 window (s), $4 clock offset (s).
WAITS = """
SELECT w.api_key_id,
    EXTRACT(EPOCH FROM (
        SELECT min(s.used_at) FROM rate_limit_slots AS s WHERE s.api_key_id = w.api_key_id AND s.slot < $2
    )) + $3 - EXTRACT(EPOCH FROM now() + make_interval(secs => $4)) AS retry_after_s,
    coalesce((
        SELECT max(s.slot) + 1 FROM rate_limit_slots AS s WHERE s.api_key_id = w.api_key_id AND s.slot < $2
    ), 0) AS slots
FROM unnest($1::uuid[]) AS w(api_key_id)
"""

# Slots made for each key, from its count to its target (concurrent makers overlap harmlessly).
# $1 key ids, $2 slots they have, $3 slots they should have.
GROW = """
INSERT INTO rate_limit_slots (api_key_id, slot)
SELECT g.api_key_id, generate_series(g.slots, g.target - 1)
FROM unnest($1::uuid[], $2::int[], $3::int[]) AS g(api_key_id, slots, target)
ON CONFLICT DO NOTHING
"""

# Services in id order, so two batches lock their rows in one order and never deadlock.
# $1 service ids, $2 one count per service, $3 limit, $4 clock offset (s).
RESERVE = """
WITH asked AS (
    SELECT service_id, n FROM unnest($1::uuid[], $2::int[]) AS a(service_id, n)
), today AS (
    SELECT CAST(clock.now AS date) AS day, clock.now
    FROM (SELECT (now() + make_interval(secs => $4)) AT TIME ZONE 'UTC' AS now) AS clock
), counted AS (
    INSERT INTO service_daily_counts AS c (service_id, day, count)
    SELECT asked.service_id, today.day, asked.n FROM asked, today WHERE asked.n <= $3 ORDER BY asked.service_id
    ON CONFLICT (service_id, day) DO UPDATE SET count = c.count + excluded.count
    WHERE c.count + excluded.count <= $3
    RETURNING c.service_id
)
SELECT asked.service_id, counted.service_id IS NOT NULL AS admitted, today.day,
    EXTRACT(EPOCH FROM CAST(today.day + 1 AS timestamp) - today.now) AS retry_after_s
FROM asked CROSS JOIN today LEFT JOIN counted ON counted.service_id = asked.service_id
"""

# $1 service id, $2 day, $3 count.
RELEASE = "UPDATE service_daily_counts SET count = greatest(count - $3, 0) WHERE service_id = $1 AND day = $2"

# $1 days kept, $2 clock offset (s).
PRUNE_DAYS = """
DELETE FROM service_daily_counts
WHERE day < CAST((now() + make_interval(secs => $2)) AT TIME ZONE 'UTC' AS date) - $1::int
"""

# Slots past a lowered limit, and every slot of a key idle for IDLE_KEY_S.
# $1 limit, $2 idle (s), $3 clock offset (s).
PRUNE_SLOTS = """
DELETE FROM rate_limit_slots AS s
WHERE s.slot >= $1 OR s.api_key_id IN (
    SELECT api_key_id FROM rate_limit_slots GROUP BY api_key_id
    HAVING max(used_at) < now() + make_interval(secs => $3) - make_interval(secs => $2)
)
"""


def shortfall(wanted: Mapping[uuid.UUID, int], taken: Counter[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The requests of each key that got no slot.

    Args:
        wanted: Requests per key.
        taken: Slots taken per key.
    """
    return {key: count - taken[key] for key, count in wanted.items() if taken[key] < count}


def unavailable(error: Exception) -> bool:
    """Whether ``error`` means that the database cannot serve now (rather than a wrong statement).

    Args:
        error: What asyncpg raised.
    """
    if isinstance(error, asyncpg.PostgresError):
        return (error.sqlstate or "")[:2] in UNAVAILABLE_SQLSTATE_CLASSES
    # A lost connection, a refused or silent server, a full pool past its timeout.
    return isinstance(error, (asyncpg.InterfaceError, OSError, TimeoutError))


class PostgresStore:
    """The limits' state in the ``rate_limit_slots`` and ``service_daily_counts`` tables."""

    def __init__(self, pool: asyncpg.Pool, size: int, config: StoreConfig, acquire_timeout_s: float) -> None:
        """Use a pool of autocommit connections.

        Args:
            pool: The limiter's pool.
            size: Its most connections.
            config: The limits.
            acquire_timeout_s: Seconds to wait for a connection (DB_POOL_TIMEOUT).
        """
        self.pool = pool
        self.config = config
        self.acquire_timeout_s = acquire_timeout_s
        self.offset_s = config.clock_offset_s
        self.limit = config.rate_limit
        self.idle: list[asyncpg.Connection] = []
        self.turns = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the limiter's pool; a database that does not answer is a 503.

        Yields:
            The connection.
        """
        try:
            async with self.acquired() as connection:
                yield connection
        except Exception as error:
            if not unavailable(error):
                raise
            raise LimitsUnavailable(UNAVAILABLE) from error

    @contextlib.asynccontextmanager
    async def acquired(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of this store's own free list, else of the pool; closed when its statement failed.

        Connections come back to the free list, not to the pool: asyncpg's acquire and release
        (a task each, for the timeout and the shield) cost 120 µs of CPU per statement, measured,
        more than the statement's own client side. A connection whose statement failed or was
        cancelled is closed: its state is unknown, and asyncpg would first wait for the server to
        confirm the cancellation, which a hung server never does (the shutdown of a limiter whose
        database stalled waited for it, tested).

        Yields:
            The connection.
        """
        await self.wait_for_turn()
        try:
            connection = await self.checkout()
            try:
                yield connection
            except BaseException:
                connection.terminate()
                await self.pool.release(connection)
                raise
            self.idle.append(connection)
        finally:
            self.turns.release()

    async def wait_for_turn(self) -> None:
        """Wait, up to DB_POOL_TIMEOUT, until fewer than the pool's size hold a connection.

        The bound is kept here rather than by the pool, whose waiters would never see the
        connections on the free list.
        """
        if not self.turns.locked():
            await self.turns.acquire()
            return
        async with asyncio.timeout(self.acquire_timeout_s):
            await self.turns.acquire()

    async def checkout(self) -> asyncpg.Connection:
        """An open connection of the free list, or a new one of the pool."""
        while self.idle:
            connection = self.idle.pop()
            if not connection.is_closed():
                return connection
            await self.pool.release(connection)  # closed by the server meanwhile
        return await self.pool.acquire()

    async def close(self) -> None:
        """Hand the free list back to the pool."""
        idle, self.idle = self.idle, []
        for connection in idle:
            await self.pool.release(connection)

    async def take(self, wanted: Mapping[uuid.UUID, int]) -> dict[uuid.UUID, Taken]:
        """Take free slots; a key short of slots below its limit gets more, and takes again.

        A key refused while one of its slots was free also takes again: that slot was held by
        a concurrent statement (which takes it, or frees it if it fails), or was made or freed
        after this statement's snapshot (another process gave the key slots meanwhile).

        Args:
            wanted: Requests per API key.
        """
        async with self.connection() as connection:
            taken = await self.take_slots(connection, wanted)
            waits = await self.waits(connection, shortfall(wanted, taken))
            for _ in range(ROUNDS):
                again = {key: wanted[key] for key, (wait, slots) in waits.items() if wait <= 0 or slots < self.limit}
                if not again:
                    break
                await self.grow(connection, waits, shortfall(again, taken))
                taken += await self.take_slots(connection, shortfall(again, taken))
                waits = {key: waits[key] for key in waits if key not in again}
                waits.update(await self.waits(connection, shortfall(again, taken)))
        return {key: Taken(taken[key], waits[key][0] if key in waits else 0.0) for key in wanted}

    async def grow(
        self,
        connection: asyncpg.Connection,
        waits: Mapping[uuid.UUID, tuple[float, int]],
        short: Mapping[uuid.UUID, int],
    ) -> None:
        """Give keys out of free slots below their limit more: twice theirs, or enough for twice the shortfall.

        Args:
            connection: The connection.
            waits: Each short key's wait and slot count.
            short: The requests each key lacks slots for.
        """
        # Only keys whose every slot is in use (a wait ahead): a free slot that a concurrent
        # statement held is no reason to grow (growing for it doubled a contended key's slots
        # again and again: the bench's two workers made millions of rows within a minute).
        targets = {
            key: min(self.limit, max(FIRST_SLOTS, 2 * waits[key][1], waits[key][1] + 2 * count))
            for key, count in short.items()
            if waits[key][1] < self.limit and (waits[key][0] > 0 or not waits[key][1])
        }
        if targets:
            await connection.execute(GROW, list(targets), [waits[key][1] for key in targets], list(targets.values()))

    async def take_slots(self, connection: asyncpg.Connection, wanted: Mapping[uuid.UUID, int]) -> Counter[uuid.UUID]:
        """Take up to the wanted number of free slots of each key, in one statement.

        Args:
            connection: The connection.
            wanted: Slots per key.
        """
        window = (self.config.rate_limit, self.config.window_s, self.offset_s)
        rows = await connection.fetch(TAKE, list(wanted), list(wanted.values()), *window)
        return Counter(row[0] for row in rows)

    async def waits(
        self, connection: asyncpg.Connection, short: Mapping[uuid.UUID, int]
    ) -> dict[uuid.UUID, tuple[float, int]]:
        """For keys refused some slots: seconds until their oldest slot frees, and how many slots they have.

        Args:
            connection: The connection.
            short: The keys (and how many they lacked).
        """
        if not short:
            return {}
        window = (self.config.rate_limit, self.config.window_s, self.offset_s)
        rows = await connection.fetch(WAITS, list(short), *window)
        return {row["api_key_id"]: (float(row["retry_after_s"] or 0), row["slots"]) for row in rows}

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
        self, connection: asyncpg.Connection, counts: Mapping[uuid.UUID, int]
    ) -> dict[uuid.UUID, tuple[bool, date, float]]:
        """Add each count to its service's row of today if it fits.

        Args:
            connection: The connection.
            counts: One count per service.

        Returns:
            Per service: admitted, the day, seconds until the next UTC midnight.
        """
        rows = await connection.fetch(
            RESERVE, list(counts), list(counts.values()), self.config.daily_limit, self.offset_s
        )
        return {row["service_id"]: (row["admitted"], row["day"], float(row["retry_after_s"])) for row in rows}

    async def release(self, service_id: uuid.UUID, day: date, count: int) -> None:
        """Give back a reservation's notifications to the day it counted on.

        Args:
            service_id: The service.
            day: The UTC day.
            count: How many.
        """
        async with self.connection() as connection:
            await connection.execute(RELEASE, service_id, day, count)

    async def prune(self) -> None:
        """Delete counts older than DAYS_KEPT days, and the slots of keys idle for a day or past the limit."""
        async with self.connection() as connection:
            await connection.execute(PRUNE_DAYS, DAYS_KEPT, self.offset_s)
            await connection.execute(PRUNE_SLOTS, self.config.rate_limit, IDLE_KEY_S, self.offset_s)


async def keep_session(connection: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is.

    asyncpg's default reset is a round trip (``RESET ALL``, ``UNLISTEN *``, advisory unlocks)
    on every release: 140 µs of CPU per call, measured, for state these statements never set.

    Args:
        connection: The connection going back to the pool.
    """


@contextlib.asynccontextmanager
async def open_postgres_store(
    settings: Settings, database: Database, config: StoreConfig, pool_size: int = POOL_SIZE
) -> AsyncIterator[PostgresStore]:
    """Open the limiter's pool on the primary database, with the timeouts of every other connection.

    No connection is opened before the first call: a database down at start-up is a 503 then.

    Args:
        settings: The database timeouts.
        database: The application's database (its primary's URL).
        config: The limits.
        pool_size: Connections of the pool.

    Yields:
        The store; its pool is closed on exit.
    """
    dsn = make_url(database.write_engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
    arguments = connect_args(settings)
    # The slots are UNLOGGED (no WAL); a daily count committed without waiting for its WAL
    # flush is lost only with the last instants before a PostgreSQL crash, never the day's count,
    # and a reservation costs 0.25 ms instead of 3.8 ms (sequential, this machine's disk, measured).
    arguments["server_settings"]["synchronous_commit"] = "off"
    # Every statement is one shape by id: planned once per connection. PostgreSQL kept planning
    # the take anew (custom plans of its parameters): 257 µs of server CPU per take, 120 µs
    # with the generic plan, the same index scans (measured).
    arguments["server_settings"]["plan_cache_mode"] = "force_generic_plan"
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=pool_size, reset=keep_session, **arguments)
    store = PostgresStore(pool, pool_size, config, settings.db_pool_timeout)
    try:
        yield store
    finally:
        await store.close()
        await pool.close()
