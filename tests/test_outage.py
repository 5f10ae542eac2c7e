"""A database that goes away mid-service: a clear 503, then recovery without a restart."""

import asyncio

import asyncpg
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from fastapi1.app import create_app
from fastapi1.config import Settings
from fastapi1.db.session import ReadSession
from tests.conftest import asyncpg_dsn
from tests.proxy import TcpProxy


class TestDatabaseOutage:
    @pytest.mark.parametrize(
        ("method", "path", "payload"),
        [
            ("POST", "/notifications/v1/multiple", [{"to": "a"}, {"to": "b"}]),
            ("GET", "/notifications/v1/?limit=5", None),
            ("POST", "/services/v1/", {"name": "outage"}),
        ],
    )
    async def test_requests_get_503_while_the_database_is_gone_and_succeed_after(
        self, settings: Settings, own_database_url: str, method: str, path: str, payload: object
    ) -> None:
        async with TcpProxy.to_database(own_database_url) as proxy:
            app = create_app(settings.model_copy(update={"database_url": proxy.url}))
            transport = ASGITransport(app=app)
            async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as http:
                assert (await http.get("/status/ready")).status_code == 200  # a pooled connection exists
                await proxy.stop()
                failed = await http.request(method, path, json=payload)
                assert failed.status_code == 503
                assert failed.json() == {"detail": "Database unavailable, try again shortly"}
                await proxy.start()
                recovered = await http.request(method, path, json=payload)
                assert recovered.status_code in {200, 201}, recovered.text


class TestPoolExhausted:
    async def test_a_request_that_cannot_get_a_connection_in_time_is_503(
        self, settings: Settings, own_database_url: str
    ) -> None:
        tight = settings.model_copy(
            update={"database_url": own_database_url, "db_pool_size": 1, "db_pool_timeout": 0.2}
        )
        app = create_app(tight)
        transport = ASGITransport(app=app)
        async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as http:
            async with app.state.database.write_engine.connect():  # the only connection, held
                response = await http.get("/notifications/v1/?limit=1")
            assert response.status_code == 503
            assert (await http.get("/notifications/v1/?limit=1")).status_code == 200


class TestConnectionCutMidStatement:
    async def test_a_request_whose_connection_is_cut_during_its_statement_gets_503(
        self, settings: Settings, own_database_url: str
    ) -> None:
        async with TcpProxy.to_database(own_database_url) as proxy:
            app = create_app(settings.model_copy(update={"database_url": proxy.url}))
            in_statement = asyncio.Event()

            @app.get("/sleep-in-the-database")
            async def sleep_in_the_database(session: ReadSession) -> None:
                in_statement.set()
                await session.execute(text("SELECT pg_sleep(30)"))

            transport = ASGITransport(app=app)
            async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as http:
                request = asyncio.create_task(http.get("/sleep-in-the-database"))
                await asyncio.wait_for(in_statement.wait(), timeout=10)
                await until_sleeping(own_database_url)
                await proxy.stop()
                response = await asyncio.wait_for(request, timeout=10)
                assert response.status_code == 503, response.text
                assert response.json() == {"detail": "Database unavailable, try again shortly"}
                await proxy.start()
                assert (await http.get("/notifications/v1/?limit=1")).status_code == 200


SLEEPING = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'"


async def until_sleeping(database_url: str) -> None:
    """Poll until a backend of the database runs pg_sleep, so the cut lands mid-statement."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with asyncio.timeout(10):
            while True:
                if await connection.fetchval(SLEEPING):
                    return
                await asyncio.sleep(0.02)
    finally:
        await connection.close()
