"""The limits' state in Redis (``REDIS_URL`` set): a sorted set per API key, a counter per service and day.

Each operation is one Lua script, atomic in Redis, reading Redis's clock (``TIME``), one
clock for every process and host. Keys are named under REDIS_PREFIX and expire on their own:
a key's window a little after its last request left it, a day's counter two days after its
last write. Every call is bounded by REDIS_TIMEOUT_S; a Redis that does not answer is a 503.
"""

import asyncio
import contextlib
import itertools
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import redis.asyncio
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from fastapi1.config import Settings
from fastapi1.errors import LimitsUnavailable
from fastapi1.limits.store import POOL_SIZE, Reserved, StoreConfig, Taken

UNAVAILABLE = "Limits unavailable: Redis does not answer, try again shortly"
EPOCH = date(1970, 1, 1)
# Seconds a day's counter outlives its last write: a release may come after midnight.
DAY_TTL_S = 2 * 86_400

# KEYS[1]: the key's window; ARGV: limit, window (µs), wanted, member prefix, clock offset (µs).
# The window holds one member per counted request, scored with its time; members leave it
# once a window old. Returns the requests granted and, when short, µs until the oldest leaves.
TAKE = """
local key = KEYS[1]
local limit, window, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2]) + tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local granted = math.min(wanted, math.max(0, limit - redis.call('ZCARD', key)))
for i = 1, granted do
    redis.call('ZADD', key, now, ARGV[4] .. ':' .. i)
end
if granted > 0 then
    redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1000)
end
local wait = 0
if granted < wanted then
    -- The next request fits once the window holds limit - 1: when its (n - limit + 1)th oldest
    -- leaves (the oldest, but for a limit lowered below what the window holds).
    local n = redis.call('ZCARD', key)
    local oldest = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
    if oldest[2] then
        wait = tonumber(oldest[2]) + window - now
    end
end
return {granted, wait}
"""

# KEYS[1]: the service's counters' prefix (the day is appended here, from Redis's clock);
# ARGV: limit, clock offset (µs), TTL (s), then the counts in arrival order. Each count is
# added if it fits. Returns the day (days since 1970-01-01), ms until the next UTC midnight,
# then 1 or 0 per count.
RESERVE = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor((tonumber(clock[2]) + tonumber(ARGV[2])) / 1000)
local day = math.floor(now_ms / 86400000)
local key = KEYS[1] .. day
local limit = tonumber(ARGV[1])
local count = tonumber(redis.call('GET', key) or '0')
local reply = {day, (day + 1) * 86400000 - now_ms}
local changed = false
for i = 4, #ARGV do
    local n = tonumber(ARGV[i])
    if count + n <= limit then
        count = count + n
        changed = true
        reply[#reply + 1] = 1
    else
        reply[#reply + 1] = 0
    end
end
if changed then
    redis.call('SET', key, count, 'EX', tonumber(ARGV[3]))
end
return reply
"""

# KEYS[1]: a day's counter; ARGV: the count given back. Never below zero, and a counter that
# expired stays gone (DECRBY would make it again, without a TTL).
RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
local count = redis.call('DECRBY', KEYS[1], tonumber(ARGV[1]))
if count < 0 then
    redis.call('SET', KEYS[1], 0, 'KEEPTTL')
end
return count
"""


class RedisStore:
    """The limits' state under ``{REDIS_PREFIX}:rate:{api_key_id}`` and ``{REDIS_PREFIX}:daily:{service_id}:{day}``."""

    def __init__(self, client: "redis.asyncio.Redis", config: StoreConfig, prefix: str, timeout_s: float) -> None:
        """Register the scripts on a client.

        Args:
            client: The Redis client.
            config: The limits.
            prefix: REDIS_PREFIX.
            timeout_s: REDIS_TIMEOUT_S, the bound of each call.
        """
        self.client = client
        self.config = config
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.take_script: AsyncScript = client.register_script(TAKE)
        self.reserve_script: AsyncScript = client.register_script(RESERVE)
        self.release_script: AsyncScript = client.register_script(RELEASE)
        self.window_us = round(config.window_s * 1_000_000)
        self.offset_us = round(config.clock_offset_s * 1_000_000)
        # Members of a window are unique across processes (token) and calls (counter).
        self.token = secrets.token_hex(6)
        self.calls = itertools.count()

    @contextlib.asynccontextmanager
    async def bounded(self) -> AsyncIterator[None]:
        """Bound a call by REDIS_TIMEOUT_S; a Redis that does not answer in time, or at all, is a 503.

        Yields:
            Control for the call.
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                yield
        except (RedisError, OSError, TimeoutError) as error:
            raise LimitsUnavailable(UNAVAILABLE) from error

    async def run(self, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run a script once per ``(keys, args)`` in one round trip.

        Args:
            script: The registered script.
            calls: Its keys and arguments for each run.
        """
        async with self.bounded():
            if len(calls) == 1:
                return [await script(*calls[0])]
            try:
                return await self.pipelined(script, calls)
            except NoScriptError:  # Redis restarted or flushed its scripts: none of the calls ran
                await self.client.script_load(script.script)
                return await self.pipelined(script, calls)

    async def pipelined(self, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Send every run of the script at once and read the replies.

        ``EVALSHA`` by hand: a pipeline given the script itself asks ``SCRIPT EXISTS`` first, a
        second round trip on every batch.

        Args:
            script: The registered script.
            calls: Its keys and arguments for each run.
        """
        pipeline = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipeline.evalsha(script.sha, len(keys), *keys, *args)
        return list(await pipeline.execute())

    async def take(self, wanted: Mapping[uuid.UUID, int]) -> dict[uuid.UUID, Taken]:
        """Take up to ``wanted[key]`` places in each key's window.

        Args:
            wanted: Requests per API key.
        """
        limit = self.config.rate_limit
        calls = [
            (
                [f"{self.prefix}:rate:{key}"],
                [limit, self.window_us, count, f"{self.token}:{next(self.calls)}", self.offset_us],
            )
            for key, count in wanted.items()
        ]
        replies = await self.run(self.take_script, calls)
        return {key: Taken(int(granted), int(wait) / 1e6) for key, (granted, wait) in zip(wanted, replies, strict=True)}

    async def reserve(self, asked: Mapping[uuid.UUID, Sequence[int]]) -> dict[uuid.UUID, Reserved]:
        """Add each count to its service's counter of today if it fits, in arrival order.

        Args:
            asked: Counts per service.
        """
        head = [self.config.daily_limit, self.offset_us, DAY_TTL_S]
        calls = [([f"{self.prefix}:daily:{service_id}:"], [*head, *counts]) for service_id, counts in asked.items()]
        replies = await self.run(self.reserve_script, calls)
        return {
            service_id: Reserved([bool(flag) for flag in flags], EPOCH + timedelta(days=int(day)), int(wait) / 1000)
            for service_id, (day, wait, *flags) in zip(asked, replies, strict=True)
        }

    async def release(self, service_id: uuid.UUID, day: date, count: int) -> None:
        """Give back ``count`` to the counter of ``day``.

        Args:
            service_id: The service.
            day: The UTC day the reservation counted on.
            count: How many.
        """
        await self.run(self.release_script, [([f"{self.prefix}:daily:{service_id}:{(day - EPOCH).days}"], [count])])

    async def prune(self) -> None:
        """Nothing to prune: every key expires on its own."""


@contextlib.asynccontextmanager
async def open_redis_store(
    settings: Settings, config: StoreConfig, pool_size: int = POOL_SIZE
) -> AsyncIterator[RedisStore]:
    """Open a Redis client with bounded connects and reads, on a pool whose callers wait for a connection.

    redis-py's default pool refuses a call beyond its 100 connections at once (``Too many
    connections``, seen with 165 unbatched calls); this one makes it wait, within the call's
    REDIS_TIMEOUT_S. One retry without backoff: a pooled connection that Redis closed meanwhile
    is replaced at once.

    Args:
        settings: REDIS_URL, REDIS_PREFIX, REDIS_TIMEOUT_S.
        config: The limits.
        pool_size: Connections of the pool.

    Yields:
        The store; the client and its pool are closed on exit.
    """
    assert settings.redis_url is not None
    timeout = settings.redis_timeout_s
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=pool_size,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )
    client = redis.asyncio.Redis.from_pool(pool)
    try:
        yield RedisStore(client, config, settings.redis_prefix, timeout)
    finally:
        await client.aclose()
