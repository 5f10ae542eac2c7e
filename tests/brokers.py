"""Fixtures of the broker tests: the machine's RabbitMQ, under a queue prefix of each test's own, deleted afterwards.

Registered for the whole suite by the root conftest (``pytest_plugins``), so delivery and
prediction tests use them too. Tests that need a broker skip, with the reason, when none answers.
"""

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from fastapi1.broker.connection import Broker, delete_prefix, open_broker
from fastapi1.config import Settings

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"


def broker_answers(url: str) -> bool:
    """Whether something accepts TCP connections where ``url`` points."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker_url() -> str:
    """``TEST_BROKER_URL`` or the machine's RabbitMQ; the tests that need it skip when none answers."""
    url = os.environ.get("TEST_BROKER_URL", DEFAULT_BROKER_URL)
    if not broker_answers(url):
        pytest.skip(f"no RabbitMQ answers at {urlsplit(url).netloc.rpartition('@')[2]} (set TEST_BROKER_URL)")
    return url


def with_broker(settings: Settings, url: str) -> Settings:
    """``settings`` on the broker at ``url``, under a queue prefix no other run uses."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    return settings.model_copy(update={"broker_url": SecretStr(url), "broker_prefix": prefix})


@pytest.fixture
async def broker_settings(settings: Settings, broker_url: str) -> AsyncIterator[Settings]:
    """The test settings with the broker under a fresh prefix, whose queues are deleted afterwards."""
    chosen = with_broker(settings, broker_url)
    try:
        yield chosen
    finally:
        assert chosen.broker_url is not None
        await asyncio.shield(delete_prefix(chosen.broker_url.get_secret_value(), chosen.broker_prefix))


@pytest.fixture
async def broker(broker_settings: Settings) -> AsyncIterator[Broker]:
    """An open broker whose queues are deleted after the test."""
    async with open_broker(broker_settings) as opened:
        try:
            yield opened
        finally:
            await asyncio.shield(opened.delete_declared())
