"""Delivery fixtures: a database whose rows really commit, the API on it, relays run in-process."""

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from fastapi1.app import create_app
from fastapi1.broker.connection import open_broker
from fastapi1.config import DeliverySettings, Settings
from fastapi1.db.engine import Database
from fastapi1.delivery.brokered import BrokeredRelay
from fastapi1.delivery.controller import Relay
from fastapi1.delivery.providers import Message, Providers, Simulator
from fastapi1.worker.main import deliver_until_stopped
from tests.conftest import throwaway_database

FINAL = {"delivered", "permanent-failure", "temporary-failure", "technical-failure"}


def fast_settings(**overrides: Any) -> DeliverySettings:
    """Delivery settings for tests: quick retries, a poll slow enough that NOTIFY must do the waking."""
    values: dict[str, Any] = {
        "delivery_poll_interval_s": 30.0,
        "delivery_retry_base_s": 0.02,
        "delivery_max_attempts": 3,
        "delivery_shutdown_timeout_s": 5.0,
        "smtp_host": None,
    }
    return DeliverySettings(**(values | overrides))


class RecordingProvider:
    """The simulator, counting every send per notification and when it happened."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.simulator = Simulator(delay_s)
        self.sends: Counter[uuid.UUID] = Counter()
        self.times: dict[uuid.UUID, list[float]] = {}

    async def send(self, message: Message) -> None:
        self.sends[message.id] += 1
        self.times.setdefault(message.id, []).append(time.monotonic())
        await self.simulator.send(message)

    def providers(self) -> Providers:
        return Providers(email=self, sms=self, simulator=self)


@pytest.fixture
def delivery_url(admin_url: str) -> Iterator[str]:
    """A migrated database of the test's own: the worker's transactions commit for real."""
    with throwaway_database(admin_url) as url:
        yield url


@pytest.fixture
async def database(delivery_url: str, settings: Settings) -> AsyncIterator[Database]:
    """Engines on the test's database, for the test's own queries."""
    database = Database.connect(delivery_url, None, settings)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def api(delivery_url: str, settings: Settings) -> AsyncIterator[AsyncClient]:
    """The HTTP API on the test's database; its create transactions NOTIFY the workers."""
    app: FastAPI = create_app(settings.model_copy(update={"database_url": delivery_url, "compute_workers": 1}))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


@contextlib.asynccontextmanager
async def running_relay(
    database_url: str, settings: Settings, delivery: DeliverySettings, providers: Providers
) -> AsyncIterator[Relay]:
    """A relay with its listener, as a worker process runs them, stopped and awaited on exit."""
    database = Database.connect(database_url, None, settings)
    relay = Relay(database, delivery, providers)
    task = asyncio.create_task(deliver_until_stopped(relay, database_url))
    try:
        yield relay
    finally:
        relay.stop()
        await task
        await database.dispose()


RunRelay = Callable[..., contextlib.AbstractAsyncContextManager[Relay]]


@contextlib.asynccontextmanager
async def running_brokered(
    database_url: str,
    settings: Settings,
    delivery: DeliverySettings,
    providers: Providers,
    relay_class: type[BrokeredRelay] = BrokeredRelay,
) -> AsyncIterator[BrokeredRelay]:
    """A relay through the broker of ``settings``, with its listener, as a worker process runs them.

    Every queue it declared is deleted on exit.
    """
    database = Database.connect(database_url, None, settings)
    async with open_broker(settings) as broker:
        relay = relay_class(database, delivery, providers, broker, settings.broker_prefetch)
        task = asyncio.create_task(deliver_until_stopped(relay, database_url))
        try:
            yield relay
        finally:
            relay.stop()
            try:
                await task
            finally:
                await asyncio.shield(broker.delete_declared())
                await database.dispose()


RunBrokered = Callable[..., contextlib.AbstractAsyncContextManager[BrokeredRelay]]


@pytest.fixture
def run_brokered(delivery_url: str, broker_settings: Settings) -> RunBrokered:
    """Start a relay through the broker (a queue prefix of the test's own) on the test's database.

    ``async with run_brokered(providers, **delivery_settings) as relay``; ``settings=`` replaces
    the broker settings (to go through a proxy, say).
    """

    def run(
        providers: Providers,
        settings: Settings | None = None,
        relay_class: type[BrokeredRelay] = BrokeredRelay,
        **overrides: Any,
    ) -> contextlib.AbstractAsyncContextManager[BrokeredRelay]:
        delivery = fast_settings(**overrides)
        return running_brokered(delivery_url, settings or broker_settings, delivery, providers, relay_class)

    return run


@pytest.fixture
def run_relay(delivery_url: str, settings: Settings) -> RunRelay:
    """Start a relay on the test's database: ``async with run_relay(providers, **settings) as relay``."""

    def run(
        providers: Providers, url: str | None = None, **overrides: Any
    ) -> contextlib.AbstractAsyncContextManager[Relay]:
        return running_relay(url or delivery_url, settings, fast_settings(**overrides), providers)

    return run


async def create(api: AsyncClient, recipients: list[str], **fields: Any) -> list[str]:
    """Create one notification per recipient through the API; their ids."""
    response = await api.post("/notifications/v1/multiple", json=[{"to": to, **fields} for to in recipients])
    assert response.status_code == 201, response.text
    return [item["id"] for item in response.json()]


async def statuses(database: Database, ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The delivery columns of the notifications (all, or those of ``ids``), by id."""
    query = "SELECT id::text, status, attempts, sent_at, completed_at, next_attempt_at FROM notifications"
    async with database.write_engine.connect() as connection:
        rows = (await connection.execute(text(query))).mappings().all()
    found = {row["id"]: dict(row) for row in rows}
    return found if ids is None else {key: found[key] for key in ids}


async def wait_until(check: Callable[[], Awaitable[bool]], within: float, interval: float = 0.02) -> float:
    """Poll ``check`` until it holds; the seconds it took. Fails at the deadline."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"not reached within {within}s"
        await asyncio.sleep(interval)
    return time.monotonic() - started


async def wait_final(database: Database, ids: list[str], within: float = 20) -> dict[str, dict[str, Any]]:
    """Wait until every notification of ``ids`` is final; their rows."""

    async def all_final() -> bool:
        return all(row["status"] in FINAL for row in (await statuses(database, ids)).values())

    await wait_until(all_final, within)
    return await statuses(database, ids)
