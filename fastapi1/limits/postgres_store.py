"""The limits' state in PostgreSQL: an API key's window as slots, a service's day as one guarded row.

Every statement runs in autocommit on a pool of the limiter's own: the limits are bookkeeping,
committed on their own whatever becomes of the request, and the request's pool is never
waited on (requests holding every pooled connection while they wait for the limiter would
wait for themselves). The pool is asyncpg's, not a SQLAlchemy engine's: measured on this
path (one statement per call, sequential), SQLAlchemy's connection and execution layers
took 450 µs of CPU per call and a plain asyncpg pool 225 µs, the whole budget of a request
being about 1.2 ms.

**Rate.** An API key has up to RATE_LIMIT_PER_MINUTE rows (slots), made as its requests need
them and walked as a ring (see TAKE); a slot is free once its ``used_at`` is a window old.
Taking k requests is one UPDATE of up to k free slots chosen ``FOR UPDATE SKIP LOCKED``:
concurrent requests of one key, from any process, take different slots without waiting for
each other's row locks, and a slot taken meanwhile by another fails the re-check of
``used_at`` under READ COMMITTED, so no slot is taken twice and the count is exact. No free
slot and all of them made: refused, and nothing is written.

**Daily.** A row per (service, UTC day), raised by an upsert whose guard ``count + n <=
limit`` decides; the row lock is held for that statement alone, never for the request.

Both read the database's clock (``now()``), one clock for every process and host; ``$offset``
shifts it in tests only.
"""

import asyncio
import contextlib
import uuid
from collections import Counter, defaultdict
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

# Up to $6 free slots of key $1 numbered from $2 to $3 (excluded), in order. The slots are a
# ring that every process walks from where it last took one (its cursor): the slots ahead of a
# cursor are the ones used longest ago, so the first one read is free as a rule. ``used_at`` is
# in no index, so taking a slot is a HOT update (no index entry written, its old version pruned
# with the page): 87 µs of server CPU per take, against 180-300 µs with an index on ``used_at``
# that found the oldest slot at once but was rewritten on every take (measured).
# $4 window (s), $5 clock offset (s).
TAKE = """
UPDATE rate_limit_slots SET used_at = now() + make_interval(secs => $5)
WHERE api_key_id = $1 AND slot = ANY(ARRAY(
    SELECT slot FROM rate_limit_slots
    WHERE api_key_id = $1 AND slot >= $2 AND slot < $3
        AND used_at <= now() + make_interval(secs => $5) - make_interval(secs => $4)
    ORDER BY slot
    LIMIT $6
    FOR UPDATE SKIP LOCKED
))
RETURNING slot
"""

# TAKE for several keys at once: key $1[i] takes up to $4[i] slots from $2[i] to $3[i] (excluded).
# One statement for a batch of several keys (its plan costs more than TAKE's: used for one key).
TAKE_MANY = """
WITH free AS (
    SELECT w.api_key_id, f.slot
    FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[]) AS w(api_key_id, lo, hi, k)
    CROSS JOIN LATERAL (
        SELECT s.slot FROM rate_limit_slots AS s
        WHERE s.api_key_id = w.api_key_id AND s.slot >= w.lo AND s.slot < w.hi
            AND s.used_at <= now() + make_interval(secs => $6) - make_interval(secs => $5)
        ORDER BY s.slot
        LIMIT w.k
        FOR UPDATE SKIP LOCKED
    ) AS f
)
UPDATE rate_limit_slots AS s SET used_at = now() + make_interval(secs => $6)
FROM free WHERE s.api_key_id = free.api_key_id AND s.slot = free.slot
RETURNING s.api_key_id, s.slot
"""

# For a key that got fewer slots than it wanted: seconds until its oldest slot frees, and how
# many slots it has (numbered from 0). Reads every slot of the key: on refusals only, which the
# limiter then answers itself until that wait is over. In epoch seconds: a free slot another
# statement held is ``-infinity``, which timestamps cannot subtract and numbers can (-Infinity:
# Retry-After 1). $1 key id, $2 limit, $3 window (s), $4 clock offset (s).
WAIT = """
SELECT EXTRACT(EPOCH FROM min(used_at)) + $3 - EXTRACT(EPOCH FROM now() + make_interval(secs => $4)),
    coalesce(max(slot) + 1, 0)
FROM rate_limit_slots WHERE api_key_id = $1 AND slot < $2
"""

# Slots $2 to $3 (excluded) of key $1; concurrent makers overlap harmlessly.
GROW = """
INSERT INTO rate_limit_slots (api_key_id, slot) SELECT $1, generate_series($2::int, $3::int - 1)
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
        # Where this process takes each key's next slots (see TAKE); lost with the process, harmlessly.
        self.cursors: dict[uuid.UUID, int] = {}
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
        """Take free slots of each key: one statement for the batch, then one key at a time for keys still short.

        Args:
            wanted: Requests per API key.
        """
        async with self.connection() as connection:
            if len(wanted) == 1:
                taken = {key: await self.take_ring(connection, key, count) for key, count in wanted.items()}
            else:
                taken = await self.take_rings(connection, wanted)
            return {key: await self.take_short(connection, key, count, taken[key]) for key, count in wanted.items()}

    async def take_short(self, connection: asyncpg.Connection, key: uuid.UUID, wanted: int, taken: int) -> Taken:
        """Finish a key that got fewer slots than it wanted; a key out of slots below its limit gets more.

        A key refused while one of its slots was free takes again too: that slot was held by a
        concurrent statement (which takes it, or frees it if it fails), or was made or freed
        after this statement's snapshot (another process gave the key slots meanwhile).

        Args:
            connection: The connection.
            key: The API key.
            wanted: Its requests.
            taken: The slots it already took.
        """
        wait = 0.0
        for _ in range(ROUNDS):
            if taken == wanted:
                break
            wait, slots = await self.wait(connection, key)
            if wait > 0 and slots >= self.limit:
                break  # every slot is in use: refused until the oldest leaves the window
            if slots < self.limit and (wait > 0 or not slots):
                await self.grow(connection, key, slots, wanted - taken)
            taken += await self.take_ring(connection, key, wanted - taken)
        return Taken(taken, wait)

    async def take_rings(self, connection: asyncpg.Connection, wanted: Mapping[uuid.UUID, int]) -> Counter[uuid.UUID]:
        """:meth:`take_ring` for several keys, in one statement (and one more for keys that wrap around).

        Args:
            connection: The connection.
            wanted: Slots to take per key.
        """
        cursors = {key: self.cursors.get(key, 0) for key in wanted}
        taken = await self.take_ranges(connection, {key: (cursors[key], self.limit, n) for key, n in wanted.items()})
        wrap = {key: (0, cursors[key], n - taken[key]) for key, n in wanted.items() if taken[key] < n and cursors[key]}
        if wrap:
            taken += await self.take_ranges(connection, wrap)
        return taken

    async def take_ranges(
        self, connection: asyncpg.Connection, ranges: Mapping[uuid.UUID, tuple[int, int, int]]
    ) -> Counter[uuid.UUID]:
        """Take up to ``k`` free slots numbered ``lo`` to ``hi`` of each key; move their cursors past them.

        Args:
            connection: The connection.
            ranges: ``(lo, hi, k)`` per key.
        """
        lows, highs, counts = zip(*ranges.values(), strict=True)
        window = (self.config.window_s, self.offset_s)
        rows = await connection.fetch(TAKE_MANY, list(ranges), list(lows), list(highs), list(counts), *window)
        slots: defaultdict[uuid.UUID, list[int]] = defaultdict(list)
        for key, slot in rows:
            slots[key].append(slot)
        for key, taken in slots.items():
            self.cursors[key] = max(taken) + 1
        return Counter({key: len(taken) for key, taken in slots.items()})

    async def take_ring(self, connection: asyncpg.Connection, key: uuid.UUID, wanted: int) -> int:
        """Take free slots from this process's cursor on, then from the ring's start; move the cursor past them.

        Args:
            connection: The connection.
            key: The API key.
            wanted: Slots to take.
        """
        cursor = self.cursors.get(key, 0)
        window = (self.config.window_s, self.offset_s)
        slots = [row[0] for row in await connection.fetch(TAKE, key, cursor, self.limit, *window, wanted)]
        if slots:
            self.cursors[key] = max(slots) + 1
        if len(slots) < wanted and cursor:
            wrapped = [row[0] for row in await connection.fetch(TAKE, key, 0, cursor, *window, wanted - len(slots))]
            if wrapped:
                self.cursors[key] = max(wrapped) + 1
            slots += wrapped
        return len(slots)

    async def wait(self, connection: asyncpg.Connection, key: uuid.UUID) -> tuple[float, int]:
        """Seconds until the key's oldest slot frees, and how many slots it has.

        Args:
            connection: The connection.
            key: The API key.
        """
        wait, slots = await connection.fetchrow(WAIT, key, self.limit, self.config.window_s, self.offset_s)
        return float(wait or 0), int(slots)

    async def grow(self, connection: asyncpg.Connection, key: uuid.UUID, slots: int, short: int) -> None:
        """Give a key out of free slots more: twice its slots, or enough for twice its shortfall, up to its limit.

        Only a key whose every slot is in use grows: a free slot that a concurrent statement held
        is no reason to (growing for it doubled a contended key's slots again and again, the
        bench's two workers making the slot table explode within a minute). The cursor moves to
        the new slots, which are the free ones.

        Args:
            connection: The connection.
            key: The API key.
            slots: The slots it has.
            short: The requests it lacks slots for.
        """
        target = min(self.limit, max(FIRST_SLOTS, 2 * slots, slots + 2 * short))
        await connection.execute(GROW, key, slots, target)
        self.cursors[key] = slots

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
        self.cursors.clear()  # of keys gone or idle too; the others start again from slot 0


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
    # No plan_cache_mode=force_generic_plan, though a take is replanned each time (custom plans):
    # generic plans halved a take's server CPU in a loop over a recycled window (257 -> 120 µs),
    # but under the bench (one key far below a limit of 10,000,000, its slots never reused within
    # the run) their takes slowed round after round, GET by id 976 -> 427 requests/s over four
    # 10 s rounds, where custom plans held 1,075-1,195 (measured, the same code otherwise).
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=pool_size, reset=keep_session, **arguments)
    store = PostgresStore(pool, pool_size, config, settings.db_pool_timeout)
    try:
        yield store
    finally:
        await store.close()
        await pool.close()
