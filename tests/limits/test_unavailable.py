"""A store that does not answer: a clear 503 within its bound, never a hang nor a request let through."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.errors import LimitsUnavailable, RateLimitExceeded
from fastapi1.limits import Limiter, open_limiter
from tests.limits.conftest import closed_port
from tests.proxy import TcpProxy

Call = Callable[[Limiter], Awaitable[object]]
CALLS: dict[str, Call] = {
    "check_request": lambda limiter: limiter.check_request(uuid.uuid4(), "normal"),
    "reserve_sends": lambda limiter: limiter.reserve_sends(uuid.uuid4(), 1),
}


async def refused_within(limiter: Limiter, call: Call, seconds: float) -> LimitsUnavailable:
    """Make the call; it must fail with LimitsUnavailable within ``seconds``."""
    started = time.monotonic()
    with pytest.raises(LimitsUnavailable) as refused:
        await call(limiter)
    assert time.monotonic() - started < seconds
    assert refused.value.status_code == 503
    return refused.value


@pytest.fixture(params=list(CALLS))
def call(request: pytest.FixtureRequest) -> Call:
    """Each of the limiter's two calls."""
    return CALLS[request.param]


class TestRedisUnavailable:
    async def test_a_redis_nobody_listens_for_is_a_503_at_once(
        self, settings: Settings, limits_database: Database, call: Call
    ) -> None:
        closed = settings.model_copy(update={"redis_url": SecretStr(f"redis://127.0.0.1:{closed_port()}/0")})
        async with open_limiter(closed, limits_database) as limiter:
            refused = await refused_within(limiter, call, 2)
        assert refused.message == "Limits unavailable: Redis does not answer, try again shortly"

    async def test_a_hung_redis_is_a_503_after_redis_timeout_then_calls_succeed_again(
        self, settings: Settings, limits_database: Database, redis_url: str, redis_prefix: str, call: Call
    ) -> None:
        parts = urlsplit(redis_url)
        async with TcpProxy.to_address(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
            proxied = settings.model_copy(
                update={
                    "redis_url": SecretStr(f"redis://127.0.0.1:{proxy.port}{parts.path}"),
                    "redis_prefix": redis_prefix,
                    "redis_timeout_s": 0.5,
                }
            )
            async with open_limiter(proxied, limits_database) as limiter:
                await call(limiter)
                proxy.stall()
                await refused_within(limiter, call, 1.5)
                proxy.resume()
                await call(limiter)

    async def test_a_cut_redis_is_a_503_and_calls_succeed_once_it_is_back(
        self, settings: Settings, limits_database: Database, redis_url: str, redis_prefix: str, call: Call
    ) -> None:
        parts = urlsplit(redis_url)
        async with TcpProxy.to_address(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
            proxied = settings.model_copy(
                update={
                    "redis_url": SecretStr(f"redis://127.0.0.1:{proxy.port}{parts.path}"),
                    "redis_prefix": redis_prefix,
                }
            )
            async with open_limiter(proxied, limits_database) as limiter:
                await call(limiter)
                await proxy.stop()
                await refused_within(limiter, call, 2)
                await proxy.start()
                await call(limiter)


class TestDatabaseUnavailable:
    async def test_a_database_nobody_listens_for_is_a_503_at_once(self, settings: Settings, call: Call) -> None:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/postgres"
        database = Database.connect(url, None, settings)
        try:
            async with open_limiter(settings, database) as limiter:
                refused = await refused_within(limiter, call, 2)
        finally:
            await database.dispose()
        assert refused.message == "Limits unavailable: the database does not answer, try again shortly"
        assert refused.__cause__ is not None

    async def test_a_hung_database_is_a_503_after_the_command_timeout_then_calls_succeed_again(
        self, settings: Settings, database_url: str, call: Call
    ) -> None:
        async with TcpProxy.to_database(database_url) as proxy:
            bounded = settings.model_copy(update={"db_command_timeout_s": 0.5, "db_connect_timeout": 0.5})
            database = Database.connect(proxy.url, None, bounded)
            try:
                async with open_limiter(bounded, database) as limiter:
                    await call(limiter)
                    proxy.stall()
                    await refused_within(limiter, call, 2)
                    proxy.resume()
                    await call(limiter)
            finally:
                await database.dispose()

    async def test_a_cut_database_is_a_503_and_calls_succeed_once_it_is_back(
        self, settings: Settings, database_url: str, call: Call
    ) -> None:
        async with TcpProxy.to_database(database_url) as proxy:
            database = Database.connect(proxy.url, None, settings)
            try:
                async with open_limiter(settings, database) as limiter:
                    await call(limiter)
                    await proxy.stop()
                    await refused_within(limiter, call, 2)
                    await proxy.start()
                    await call(limiter)
            finally:
                await database.dispose()


class TestRefusedKeys:
    async def test_a_refused_key_is_refused_without_the_store_until_its_oldest_request_leaves_the_window(
        self, settings: Settings, database_url: str
    ) -> None:
        async with TcpProxy.to_database(database_url) as proxy:
            limited = settings.model_copy(update={"rate_limit_per_minute": 1})
            database = Database.connect(proxy.url, None, limited)
            try:
                async with open_limiter(limited, database, window_s=2) as limiter:
                    key = uuid.uuid4()
                    await limiter.check_request(key, "normal")
                    with pytest.raises(RateLimitExceeded):
                        await limiter.check_request(key, "normal")
                    await proxy.stop()
                    # No store needed to know: nothing can free the key's request before it is 2 s old.
                    with pytest.raises(RateLimitExceeded) as refused:
                        await limiter.check_request(key, "normal")
                    # Up to a step (2 s / 60) more: the request counts for its step's whole window.
                    assert refused.value.headers["Retry-After"] in {"2", "3"}
                    await asyncio.sleep(2.1)
                    with pytest.raises(LimitsUnavailable):  # then the store is asked again
                        await limiter.check_request(key, "normal")
            finally:
                await database.dispose()


class TestLifecycle:
    async def test_calls_after_shutdown_are_a_503_and_no_task_outlives_the_limiter(
        self, settings: Settings, limits_database: Database, call: Call
    ) -> None:
        before = asyncio.all_tasks()
        async with open_limiter(settings, limits_database) as limiter:
            await call(limiter)
            assert len(asyncio.all_tasks() - before) == 5  # two flushers per limit, the pruning
        assert asyncio.all_tasks() - before == set()
        refused = await refused_within(limiter, call, 1)
        assert refused.message == "Limits unavailable: the service is shutting down"

    async def test_calls_in_flight_at_shutdown_get_a_503_and_a_hung_database_does_not_hold_the_shutdown(
        self, settings: Settings, database_url: str, call: Call
    ) -> None:
        async with TcpProxy.to_database(database_url) as proxy:
            database = Database.connect(proxy.url, None, settings)
            try:
                async with asyncio.timeout(5), open_limiter(settings, database) as limiter:
                    await call(limiter)
                    proxy.stall()
                    caller = asyncio.create_task(call(limiter))
                    await asyncio.sleep(0.2)
                with pytest.raises(LimitsUnavailable, match="shutting down"):
                    await caller
            finally:
                proxy.resume()
                await database.dispose()

    async def test_a_hung_redis_does_not_hold_the_shutdown_either(
        self, settings: Settings, limits_database: Database, redis_url: str, redis_prefix: str, call: Call
    ) -> None:
        parts = urlsplit(redis_url)
        async with TcpProxy.to_address(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
            proxied = settings.model_copy(
                update={
                    "redis_url": SecretStr(f"redis://127.0.0.1:{proxy.port}{parts.path}"),
                    "redis_prefix": redis_prefix,
                }
            )
            try:
                async with asyncio.timeout(2), open_limiter(proxied, limits_database) as limiter:
                    await call(limiter)
                    proxy.stall()
                    caller = asyncio.create_task(call(limiter))
                    await asyncio.sleep(0.2)
                with pytest.raises(LimitsUnavailable, match="shutting down"):
                    await caller
            finally:
                proxy.resume()
