"""Liveness and readiness, including a database that is gone or never answers."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from fastapi1.app import create_app
from fastapi1.config import Settings
from fastapi1.draining import reset_draining, start_draining
from tests.proxy import TcpProxy


async def get_with_app(settings: Settings, path: str) -> tuple[int, dict[str, object], float]:
    """Start an app with ``settings``, GET ``path`` once, and time the answer."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http,
    ):
        started = time.perf_counter()
        response = await http.get(path)
        return response.status_code, response.json(), time.perf_counter() - started


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says a word (a hung database)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


class TestHeartbeat:
    async def test_heartbeat_answers_204_with_an_empty_body(self, client: AsyncClient) -> None:
        response = await client.get("/status/heartbeat")
        assert response.status_code == 204
        assert response.content == b""


class TestReady:
    async def test_ready_reports_the_database_ok(self, client: AsyncClient) -> None:
        response = await client.get("/status/ready")
        assert response.status_code == 200
        assert response.json() == {"database": "ok"}

    async def test_ready_is_503_while_the_process_drains_and_the_heartbeat_still_answers(
        self, client: AsyncClient
    ) -> None:
        start_draining()
        try:
            ready = await client.get("/status/ready")
            heartbeat = await client.get("/status/heartbeat")
        finally:
            reset_draining()
        assert (ready.status_code, ready.json()) == (503, {"detail": "Shutting down"})
        assert heartbeat.status_code == 204
        assert (await client.get("/status/ready")).status_code == 200

    async def test_ready_is_503_within_two_seconds_when_the_port_is_closed(self, settings: Settings) -> None:
        closed = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"})
        status, body, elapsed = await get_with_app(closed, "/status/ready")
        assert status == 503
        assert "Database unavailable" in str(body["detail"])
        assert elapsed < 2.0

    async def test_ready_is_503_within_two_seconds_when_the_database_hangs(
        self, settings: Settings, silent_server: int
    ) -> None:
        hung = settings.model_copy(
            update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{silent_server}/postgres"}
        )
        status, body, elapsed = await get_with_app(hung, "/status/ready")
        assert status == 503
        assert "Traceback" not in str(body)
        assert elapsed < 2.0

    async def test_ready_recovers_when_the_database_comes_back(self, settings: Settings, database_url: str) -> None:
        async with TcpProxy.to_database(database_url) as proxy:
            app = create_app(settings.model_copy(update={"database_url": proxy.url}))
            transport = ASGITransport(app=app)
            async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as http:
                assert (await http.get("/status/ready")).status_code == 200
                await proxy.stop()
                assert (await http.get("/status/ready")).status_code == 503
                await proxy.start()
                assert (await http.get("/status/ready")).status_code == 200
