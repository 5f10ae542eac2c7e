"""Fixtures of the limits tests: a limiter on each store, the real PostgreSQL and the machine's Redis.

Each test uses ids of its own, so tests never share a count. Redis keys live under a prefix of
this run's own, deleted at the end; the Redis tests skip, with the reason, when no Redis answers.
"""

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
import redis.asyncio
from pydantic import SecretStr

from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.limits import Limiter, open_limiter

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
STORES = ("postgres", "redis")

LimiterFactory = Callable[..., contextlib.AbstractAsyncContextManager[Limiter]]


def answers(url: str, default_port: int) -> bool:
    """Whether something accepts TCP connections where ``url`` points."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every Redis key under ``prefix``."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``TEST_REDIS_URL`` or the machine's Redis; the tests that need it skip when none answers."""
    url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
    if not answers(url, 6379):
        pytest.skip(f"no Redis answers at {urlsplit(url).netloc.rpartition('@')[2]} (set TEST_REDIS_URL)")
    return url


@pytest.fixture(scope="session")
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A Redis key prefix of this run's own, whose keys are deleted at the end."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        await delete_prefix(redis_url, prefix)


@pytest.fixture(params=STORES)
def store_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The test settings on one store: PostgreSQL (this run's database), or Redis under this run's prefix."""
    if request.param == "postgres":
        return settings
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    return settings.model_copy(update={"redis_url": SecretStr(url), "redis_prefix": prefix})


@pytest.fixture(scope="session")
async def limits_database(database_url: str, settings: Settings) -> AsyncIterator[Database]:
    """A database handle on this run's database, as the application's lifespan makes one."""
    database = Database.connect(database_url, None, settings)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def make_limiter(store_settings: Settings, limits_database: Database) -> LimiterFactory:
    """Open a limiter on the test's store with the limits (and window, clock) a test asks for."""

    @contextlib.asynccontextmanager
    async def opened(
        rate_limit: int = 5,
        daily_limit: int = 10,
        *,
        window_s: float = 60.0,
        clock_offset_s: float = 0.0,
        batched: bool = True,
        settings: Settings | None = None,
        database: Database | None = None,
    ) -> AsyncIterator[Limiter]:
        chosen = (settings or store_settings).model_copy(
            update={"rate_limit_per_minute": rate_limit, "service_daily_limit": daily_limit}
        )
        async with open_limiter(
            chosen, database or limits_database, window_s=window_s, clock_offset_s=clock_offset_s, batched=batched
        ) as limiter:
            yield limiter

    return opened


@pytest.fixture
def store_name(store_settings: Settings) -> str:
    """``postgres`` or ``redis``."""
    return "redis" if store_settings.redis_url is not None else "postgres"


@pytest.fixture
def limits_env(store_settings: Settings) -> dict[str, str | None]:
    """What a process of its own needs to open a limiter on the test's store."""
    return {
        "database_url": store_settings.database_url,
        "redis_url": store_settings.redis_url.get_secret_value() if store_settings.redis_url else None,
        "redis_prefix": store_settings.redis_prefix,
    }
