"""The limits' state in PostgreSQL: an API key's window as one row of counts, a service's day as one guarded row.

Every statement runs in autocommit on a pool of the limiter's own: the limits are bookkeeping,
committed on their own whatever becomes of the request, and the request's pool is never
waited on (requests holding every pooled connection while they wait for the limiter would
wait for themselves). The pool is asyncpg's, not a SQLAlchemy engine's: measured on this
path (one statement per call, sequential), SQLAlchemy's connection and execution layers
took 450 µs of CPU per call and a plain asyncpg pool 225 µs, the whole budget of a request
being about 1.2 ms.

**Rate.** An API key's window is one row: a ring of request counts, one per step of a
sixtieth of the window (one second of Notify's minute), the current step and the sixty before
it counted. Taking k requests for a batch of keys is one call of ``rate_limit_take`` (a
function of migration e4c81b2f9d07): per key, in key order, its row locked, its counts summed,
what fits granted and added to the current step. Concurrent batches of one key, from any
process, queue on that row lock for the few statements of the function, never for a request;
the lock makes the count exact. A request counts for 60 to 61 steps (never less than the
window: the step it was made in is counted whole), and nothing is written for a key refused.

**Daily.** A row per (service, UTC day), raised by an upsert whose guard ``count + n <=
limit`` decides; the row lock is held for that statement alone, never for the request.

Both read the database's clock (``now()``), one clock for every process and host; ``$offset``
shifts it in tests only.
"""

import asyncio
import contextlib
import uuid
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
# An API key whose window was unused this long loses its row (made again on its next request).
IDLE_KEY_S = 86_400.0
# Steps of a window: a request is counted for STEPS to STEPS + 1 of them (the ring has one more).
STEPS = 60
RING = STEPS + 1

# $1 keys (sorted), $2 requests wanted per key, $3 limit, $4 step width (s), $5 ring, $6 clock offset (s).
TAKE = "SELECT key_id, granted, steps, counts, now_step, now_epoch FROM rate_limit_take($1, $2, $3, $4, $5, $6)"

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

# Windows whose last step began more than $2 s ago; a window a take holds is skipped (a DELETE
# that waited for its lock would hold other rows a take waits for: a deadlock). In steps, so
# that the width stays a float. $1 step width (s), $2 idle (s), $3 clock offset (s).
PRUNE_WINDOWS = """
DELETE FROM rate_limit_windows WHERE api_key_id IN (
    SELECT api_key_id FROM rate_limit_windows
    WHERE (SELECT max(step) FROM unnest(steps) AS step)
        < floor((EXTRACT(EPOCH FROM now()) + $3 - $2) / $1::float8)
    FOR UPDATE SKIP LOCKED
)
"""


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
    """The limits' state in the ``rate_limit_windows`` and ``service_daily_counts`` tables."""

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
        self.step_s = config.window_s / STEPS
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
        """Take what fits of each key's window: one function call for the batch.

        Args:
            wanted: Requests per API key.
        """
        keys = sorted(wanted)
        async with self.connection() as connection:
            rows = await connection.fetch(
                TAKE, keys, [wanted[key] for key in keys], self.limit, self.step_s, RING, self.offset_s
            )
        taken = {}
        for key, granted, steps, counts, now_step, now_epoch in rows:
            short = granted < wanted[key]
            wait = self.wait(steps, counts, now_step, now_epoch) if short else 0.0
            taken[key] = Taken(granted, wait)
        return taken

    def wait(self, steps: Sequence[int], counts: Sequence[int], now_step: int, now_epoch: float) -> float:
        """Seconds until a key's window has room for one more request.

        That is until enough of its oldest steps leave it that it holds fewer than the limit
        (the oldest alone, but for a limit lowered below what the window holds). A step leaves
        the window RING steps after it began.

        Args:
            steps: The ring's steps.
            counts: Their requests.
            now_step: The current step.
            now_epoch: The database's clock (epoch seconds).
        """
        live = sorted((step, count) for step, count in zip(steps, counts, strict=True) if step > now_step - RING)
        excess = sum(count for _, count in live) - self.limit
        for step, count in live:
            excess -= count
            if excess < 0:
                return (step + RING) * self.step_s - now_epoch
        return 0.0  # unreachable: a key short of what it wanted holds at least the limit

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
        """Delete counts older than DAYS_KEPT days, and the windows of keys idle for IDLE_KEY_S."""
        async with self.connection() as connection:
            await connection.execute(PRUNE_DAYS, DAYS_KEPT, self.offset_s)
            await connection.execute(PRUNE_WINDOWS, self.step_s, IDLE_KEY_S, self.offset_s)


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
    # The windows are UNLOGGED (no WAL); a daily count committed without waiting for its WAL
    # flush is lost only with the last instants before a PostgreSQL crash, never the day's count,
    # and a reservation costs 0.25 ms instead of 3.8 ms (sequential, this machine's disk, measured).
    arguments["server_settings"]["synchronous_commit"] = "off"
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=pool_size, reset=keep_session, **arguments)
    store = PostgresStore(pool, pool_size, config, settings.db_pool_timeout)
    try:
        yield store
    finally:
        await store.close()
        await pool.close()
