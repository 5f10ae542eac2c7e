"""The limiter: an API key's requests per sliding window, and a service's notifications per UTC day."""

import asyncio
import contextlib
import logging
import math
import secrets
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import date
from typing import Any

from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.errors import DailyLimitExceeded, LimitsUnavailable, RateLimitExceeded
from fastapi1.limits.coalescer import Coalescer
from fastapi1.limits.postgres_store import open_postgres_store
from fastapi1.limits.redis_store import open_redis_store
from fastapi1.limits.store import POOL_SIZE, Store, StoreConfig
from fastapi1.types import KeyType

logger = logging.getLogger(__name__)

# Notify's window: RATE_LIMIT_PER_MINUTE requests per key in any 60 seconds.
RATE_WINDOW_S = 60.0
# Flushes in flight per process and limit. Two: while one batch is in the store the next is
# sent as soon as it has a call, so a call arriving alone waits at most one round trip before
# its own. Measured with callers that arrive together (scripts/measure_limits.py, 8 and 100
# tasks), 1, 2 and 4 flushers cost the same (17-18 µs per call at 100).
FLUSHERS = 2
# Refused keys remembered at most; beyond, those whose wait is over are forgotten.
FULL_KEYS_MAX = 10_000
# Seconds between two prunings of a process (each waits half to one and a half of it).
PRUNE_INTERVAL_S = 3600.0


def retry_after(seconds: float) -> int:
    """Whole seconds for ``Retry-After``: rounded up, at least 1.

    Args:
        seconds: When a request would be admitted again, from now.
    """
    return max(1, math.ceil(seconds)) if math.isfinite(seconds) else 1


class Reservation:
    """Notifications of one service counted against its day; :meth:`release` gives them back."""

    def __init__(self, store: Store, service_id: uuid.UUID, day: date, count: int) -> None:
        """Keep what to give back.

        Args:
            store: The store that counted them.
            service_id: The service.
            day: The UTC day they count on (a release after midnight gives them back to that day).
            count: How many.
        """
        self.store = store
        self.service_id = service_id
        self.day = day
        self.count = count
        self.released = False

    async def release(self) -> None:
        """Give the notifications back, once (a second call does nothing).

        For a request that failed or rolled back, so that the count equals the notifications
        stored. A store that does not answer is logged, not raised: the count then stays
        ``count`` too high for the day, which errs on the side of the limit.
        """
        if self.released or not self.count:
            return
        self.released = True
        try:
            await self.store.release(self.service_id, self.day, self.count)
        except LimitsUnavailable:
            logger.warning(
                "Could not release %d notifications of service %s: its count for %s stays that much too high",
                self.count,
                self.service_id,
                self.day,
                exc_info=True,
            )


RateOutcome = float | None
DailyOutcome = Reservation | float


class Limiter:
    """RATE_LIMIT_PER_MINUTE per API key over a sliding window, SERVICE_DAILY_LIMIT per service and UTC day.

    The state lives in the store (PostgreSQL or Redis), so the limits hold across processes
    and instances; what this object keeps is only the calls waiting for their batch.
    """

    def __init__(self, store: Store, config: StoreConfig, *, batched: bool = True) -> None:
        """Wrap a store.

        Args:
            store: Where the counts live.
            config: The limits and the window the store enforces.
            batched: Coalesce concurrent calls of this process (False: one store call each, to compare).
        """
        self.store = store
        self.config = config
        self.window_label = round(config.window_s)
        self.requests = Coalescer[uuid.UUID, RateOutcome](self.flush_requests)
        self.sends = Coalescer[tuple[uuid.UUID, int], DailyOutcome](self.flush_sends, self.give_back)
        self.batched = batched
        # Keys refused until then (monotonic clock), see remember_full.
        self.full_until: dict[uuid.UUID, float] = {}

    async def check_request(self, key_id: uuid.UUID, key_type: KeyType) -> None:
        """Count one request of an API key in its sliding window; a refused request is not counted.

        Args:
            key_id: The API key.
            key_type: Its type, for the message.

        Raises:
            RateLimitExceeded: When the key already made RATE_LIMIT_PER_MINUTE requests in the window.
            LimitsUnavailable: When the store does not answer.
        """
        deadline = self.full_until.get(key_id)
        if deadline is not None and (left := deadline - time.monotonic()) > 0:
            raise RateLimitExceeded(key_type, self.config.rate_limit, self.window_label, retry_after(left))
        wait = await self.requests.submit(key_id) if self.batched else (await self.flush_requests([key_id]))[0]
        if wait is not None:
            self.remember_full(key_id, wait)
            raise RateLimitExceeded(key_type, self.config.rate_limit, self.window_label, retry_after(wait))

    def remember_full(self, key_id: uuid.UUID, wait: float) -> None:
        """Refuse the key here, without asking the store, until its oldest counted request leaves the window.

        Exact: an admitted request leaves the window only with time, so no request of the key
        can be admitted before then, by any process. It spares the store an abusive key's
        requests. A wait of 0 is not remembered.

        Args:
            key_id: The refused API key.
            wait: Seconds until its oldest counted request leaves the window.
        """
        if wait <= 0:
            return
        if len(self.full_until) >= FULL_KEYS_MAX:
            now = time.monotonic()
            self.full_until = {key: until for key, until in self.full_until.items() if until > now}
        self.full_until[key_id] = time.monotonic() + wait

    async def reserve_sends(self, service_id: uuid.UUID, count: int) -> Reservation:
        """Reserve ``count`` notifications of a service for the current UTC day, all or none.

        Args:
            service_id: The service.
            count: Notifications about to be stored (a ``/multiple`` of 100 is 100).

        Raises:
            DailyLimitExceeded: When they do not all fit in today's limit (nothing is reserved).
            LimitsUnavailable: When the store does not answer.
            ValueError: When ``count`` is negative.
        """
        if count < 0:
            raise ValueError(f"cannot reserve {count} notifications")
        if not count:
            return Reservation(self.store, service_id, date.min, 0)
        item = (service_id, count)
        outcome = await self.sends.submit(item) if self.batched else (await self.flush_sends([item]))[0]
        if not isinstance(outcome, Reservation):
            raise DailyLimitExceeded(self.config.daily_limit, retry_after(outcome))
        return outcome

    async def flush_requests(self, keys: list[uuid.UUID]) -> list[RateOutcome]:
        """Count a batch of requests in their keys' windows; each key's admissions go in arrival order.

        Args:
            keys: The API key of each request.

        Returns:
            None for an admitted request, else seconds until its key's window has room.
        """
        taken = await self.store.take(Counter(keys))
        handed: Counter[uuid.UUID] = Counter()
        outcomes: list[RateOutcome] = []
        for key in keys:
            admitted = handed[key] < taken[key].granted
            handed[key] += admitted
            outcomes.append(None if admitted else taken[key].retry_after_s)
        return outcomes

    async def flush_sends(self, items: list[tuple[uuid.UUID, int]]) -> list[DailyOutcome]:
        """Reserve a batch of sends; a service's are decided in arrival order.

        Args:
            items: ``(service_id, count)`` of each call.

        Returns:
            A reservation for each admitted call, else seconds until the next UTC midnight.
        """
        asked: defaultdict[uuid.UUID, list[int]] = defaultdict(list)
        for service_id, count in items:
            asked[service_id].append(count)
        reserved = await self.store.reserve(asked)
        position: Counter[uuid.UUID] = Counter()
        outcomes: list[DailyOutcome] = []
        for service_id, count in items:
            decided = reserved[service_id]
            admitted = decided.admitted[position[service_id]]
            position[service_id] += 1
            outcomes.append(
                Reservation(self.store, service_id, decided.day, count) if admitted else decided.retry_after_s
            )
        return outcomes

    async def give_back(self, outcome: DailyOutcome) -> None:
        """Release a reservation whose caller was cancelled while it was made.

        Args:
            outcome: What the batch decided for that caller.
        """
        if isinstance(outcome, Reservation):
            await outcome.release()

    def tasks(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """The long-lived tasks this limiter needs: the flushers of both limits, and the pruning."""
        flushers = [self.requests.run, self.sends.run] * FLUSHERS if self.batched else []
        return [*flushers, self.prune_periodically]

    async def prune_periodically(self) -> None:
        """Prune the store now and then, at a jittered interval so processes started together spread out."""
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S * (0.5 + secrets.randbelow(1000) / 1000))
            try:
                await self.store.prune()
            except LimitsUnavailable:
                logger.warning("Pruning the limits' state failed; next attempt later", exc_info=True)
            except Exception:  # bookkeeping: an unexpected failure must not end the limiter's tasks
                logger.exception("Pruning the limits' state failed unexpectedly; next attempt later")


@contextlib.asynccontextmanager
async def open_limiter(
    settings: Settings,
    database: Database,
    *,
    window_s: float = RATE_WINDOW_S,
    clock_offset_s: float = 0.0,
    batched: bool = True,
) -> AsyncIterator[Limiter]:
    """Open the store (Redis when REDIS_URL is set, else PostgreSQL) and the limiter's tasks, for a lifespan.

    Args:
        settings: The limits, the Redis URL and prefix, the database timeouts.
        database: The application's database (the PostgreSQL store opens a small pool of its own on it).
        window_s: The rate window (60 s; shorter in tests, to watch it slide).
        clock_offset_s: Shifts the store's clock (tests only: to cross a UTC midnight).
        batched: Coalesce concurrent calls (False in the measurements only).

    Yields:
        The limiter; on exit its tasks are cancelled and awaited, then the store closes.
    """
    config = StoreConfig(settings.rate_limit_per_minute, settings.service_daily_limit, window_s, clock_offset_s)
    # Unbatched, every concurrent call holds a connection: the request pool's size then.
    pool_size = POOL_SIZE if batched else settings.db_pool_size
    async with open_store(settings, database, config, pool_size) as store, asyncio.TaskGroup() as group:
        limiter = Limiter(store, config, batched=batched)
        running = [group.create_task(task()) for task in limiter.tasks()]
        await asyncio.sleep(0)  # the flushers start before the first call
        try:
            yield limiter
        finally:
            for task in running:
                task.cancel()


@contextlib.asynccontextmanager
async def open_store(
    settings: Settings, database: Database, config: StoreConfig, pool_size: int = POOL_SIZE
) -> AsyncIterator[Store]:
    """Open the configured store.

    Args:
        settings: REDIS_URL and the rest of the connection settings.
        database: The application's database.
        config: The limits.
        pool_size: Connections of the store's pool.

    Yields:
        The store, closed on exit.
    """
    if settings.redis_url is not None:
        async with open_redis_store(settings, config, pool_size) as redis_store:
            yield redis_store
        return
    async with open_postgres_store(settings, database, config, pool_size) as postgres_store:
        yield postgres_store
