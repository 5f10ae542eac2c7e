"""What is particular to the Redis store: key names under REDIS_PREFIX, and keys that expire on their own."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from pydantic import SecretStr

from fastapi1.config import Settings
from fastapi1.errors import RateLimitExceeded
from fastapi1.limits.redis_store import TAKE, RedisStore
from tests.limits.conftest import LimiterFactory


@pytest.fixture
def store_settings(settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    """Redis only (the shared fixture of the same name also gives PostgreSQL)."""
    return settings.model_copy(update={"redis_url": SecretStr(redis_url), "redis_prefix": redis_prefix})


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client, to look at the keys."""
    connection = redis.asyncio.Redis.from_url(redis_url)
    try:
        yield connection
    finally:
        await connection.aclose()


class TestKeys:
    async def test_a_keys_window_is_named_under_the_prefix_and_expires_after_the_window(
        self, make_limiter: LimiterFactory, client: redis.asyncio.Redis, redis_prefix: str
    ) -> None:
        key = uuid.uuid4()
        async with make_limiter(rate_limit=5, window_s=60) as limiter:
            await limiter.check_request(key, "normal")
            await limiter.check_request(key, "normal")
        name = f"{redis_prefix}:rate:{key}"
        assert await client.zcard(name) == 2
        assert 60_000 < await client.pttl(name) <= 61_000

    async def test_a_services_day_is_named_under_the_prefix_and_expires_after_two_days(
        self, make_limiter: LimiterFactory, client: redis.asyncio.Redis, redis_prefix: str
    ) -> None:
        service_id = uuid.uuid4()
        async with make_limiter(daily_limit=10) as limiter:
            reservation = await limiter.reserve_sends(service_id, 3)
        epoch_day = (reservation.day - reservation.day.replace(year=1970, month=1, day=1)).days
        name = f"{redis_prefix}:daily:{service_id}:{epoch_day}"
        assert await client.get(name) == b"3"
        assert 2 * 86_400 - 5 < await client.ttl(name) <= 2 * 86_400

    async def test_a_release_never_takes_a_count_below_zero(
        self, make_limiter: LimiterFactory, client: redis.asyncio.Redis, redis_prefix: str
    ) -> None:
        service_id = uuid.uuid4()
        async with make_limiter(daily_limit=10) as limiter:
            reservation = await limiter.reserve_sends(service_id, 3)
            epoch_day = (reservation.day - reservation.day.replace(year=1970, month=1, day=1)).days
            name = f"{redis_prefix}:daily:{service_id}:{epoch_day}"
            await client.set(name, 1, keepttl=True)  # as if the counter had been lost and recounted
            await reservation.release()
        assert await client.get(name) == b"0"

    async def test_a_release_after_the_counter_expired_makes_no_key(
        self, make_limiter: LimiterFactory, client: redis.asyncio.Redis, redis_prefix: str
    ) -> None:
        service_id = uuid.uuid4()
        async with make_limiter(daily_limit=10) as limiter:
            reservation = await limiter.reserve_sends(service_id, 3)
            epoch_day = (reservation.day - reservation.day.replace(year=1970, month=1, day=1)).days
            name = f"{redis_prefix}:daily:{service_id}:{epoch_day}"
            await client.delete(name)  # as two days after its last write
            await reservation.release()
        assert await client.exists(name) == 0


class TestLoweredLimit:
    async def test_retry_after_waits_for_the_window_to_hold_less_than_the_lowered_limit(
        self, make_limiter: LimiterFactory
    ) -> None:
        key = uuid.uuid4()
        async with make_limiter(rate_limit=4, window_s=5) as limiter:
            await limiter.check_request(key, "normal")
            await asyncio.sleep(1)
            await limiter.check_request(key, "normal")
            await asyncio.sleep(1)
            await asyncio.gather(limiter.check_request(key, "normal"), limiter.check_request(key, "normal"))
        async with make_limiter(rate_limit=2, window_s=5) as lowered:
            with pytest.raises(RateLimitExceeded) as refused:
                await lowered.check_request(key, "normal")
        # Four in the window, two allowed: three have to leave, the third oldest (made 2 s in, so
        # 5 s from now) last; the oldest alone would have said 3.
        assert refused.value.headers["Retry-After"] == "5"


class TestScripts:
    async def test_a_batch_succeeds_when_redis_does_not_know_the_script(
        self, make_limiter: LimiterFactory, client: redis.asyncio.Redis, redis_prefix: str
    ) -> None:
        first, second = uuid.uuid4(), uuid.uuid4()
        async with make_limiter(rate_limit=5) as limiter:
            store = limiter.store
            assert isinstance(store, RedisStore)
            # The same script under a digest Redis has never seen, as after a restart (SCRIPT FLUSH
            # would do it too, for every other user of this Redis).
            store.take_script = store.client.register_script(f"{TAKE}\n-- {uuid.uuid4()}")
            # Two keys in one turn: one pipeline of EVALSHA, answered NOSCRIPT, sent again.
            await asyncio.gather(limiter.check_request(first, "normal"), limiter.check_request(second, "normal"))
        assert await client.zcard(f"{redis_prefix}:rate:{first}") == 1
        assert await client.zcard(f"{redis_prefix}:rate:{second}") == 1
