"""Database bounds: session settings, a hung database, readiness beside a busy pool, a full pool, honest 500s."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from fastapi1.app import create_app
from fastapi1.config import Settings
from fastapi1.db.session import ReadSession
from tests.proxy import TcpProxy

OUTAGE = {"detail": "Database unavailable, try again shortly"}
# Generous against a loaded machine, yet far below "the whole stall": the proxy stays stalled
# until the test resumes it, so an answer within this wait is an answer during the stall.
ANSWER_WITHIN_STALL_S = 20


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    """An application with its lifespan entered, and a client for it."""
    app = create_app(settings)
    transport = ASGITransport(app=app)
    async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as http:
        yield app, http


class TestSessionSettings:
    async def test_every_connection_has_the_timeouts_and_application_name(
        self, settings: Settings, own_database_url: str
    ) -> None:
        custom = settings.model_copy(
            update={
                "database_url": own_database_url,
                "db_statement_timeout_s": 7.5,
                "db_idle_in_transaction_timeout_s": 4,
                "db_application_name": "fastapi1-test",
            }
        )
        async with serving(custom) as (app, _), app.state.database.write_engine.connect() as connection:
            shown = [
                (await connection.execute(text(f"SHOW {name}"))).scalar_one()
                for name in ("statement_timeout", "idle_in_transaction_session_timeout", "application_name")
            ]
        assert shown == ["7500ms", "4s", "fastapi1-test"]

    async def test_a_statement_over_statement_timeout_is_a_503(self, settings: Settings, own_database_url: str) -> None:
        app = create_app(settings.model_copy(update={"database_url": own_database_url, "db_statement_timeout_s": 0.2}))

        @app.get("/slow-statement")
        async def slow_statement(session: ReadSession) -> None:
            await session.execute(text("SELECT pg_sleep(5)"))

        transport = ASGITransport(app=app)
        async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as http:
            response = await asyncio.wait_for(http.get("/slow-statement"), timeout=ANSWER_WITHIN_STALL_S)
            assert (response.status_code, response.json()) == (503, OUTAGE)
            assert (await http.get("/notifications/v1/?limit=1")).status_code == 200


class TestHungDatabase:
    @pytest.mark.parametrize(
        ("method", "path", "payload"),
        [
            ("GET", "/notifications/v1/?limit=5", None),
            ("POST", "/notifications/v1/multiple", [{"to": "a"}, {"to": "b"}]),
            ("POST", "/services/v1/", {"name": "hung"}),
        ],
    )
    async def test_a_stalled_connection_is_a_503_during_the_stall_and_the_service_recovers(
        self, settings: Settings, own_database_url: str, method: str, path: str, payload: object
    ) -> None:
        async with TcpProxy.to_database(own_database_url) as proxy:
            bounded = settings.model_copy(
                update={"database_url": proxy.url, "db_command_timeout_s": 0.5, "db_connect_timeout": 0.5}
            )
            async with serving(bounded) as (_, http):
                assert (await http.get("/notifications/v1/?limit=1")).status_code == 200  # a pooled connection
                proxy.stall()
                loop = asyncio.get_running_loop()
                started = loop.time()
                failed = await asyncio.wait_for(http.request(method, path, json=payload), ANSWER_WITHIN_STALL_S)
                stalled_for = loop.time() - started
                # a second request meets a fresh connection attempt, which stalls too
                again = await asyncio.wait_for(http.request(method, path, json=payload), ANSWER_WITHIN_STALL_S)
                proxy.resume()
                assert (failed.status_code, failed.json()) == (503, OUTAGE)
                assert (again.status_code, again.json()) == (503, OUTAGE)
                # bounded by the command timeout, not by the stall (which lasted until resume)
                assert stalled_for < ANSWER_WITHIN_STALL_S / 2
                recovered = await http.request(method, path, json=payload)
                assert recovered.status_code in {200, 201}, recovered.text


class TestReadiness:
    async def test_ready_answers_200_while_every_pooled_connection_is_held(
        self, settings: Settings, own_database_url: str
    ) -> None:
        tight = settings.model_copy(
            update={"database_url": own_database_url, "db_pool_size": 2, "db_pool_timeout": 30, "ready_timeout": 5}
        )
        async with serving(tight) as (app, http), contextlib.AsyncExitStack() as held:
            for _ in range(2):
                await held.enter_async_context(app.state.database.write_engine.connect())
            waiting = asyncio.create_task(http.get("/notifications/v1/?limit=1"))  # queued on the pool
            ready = await asyncio.wait_for(http.get("/status/ready"), timeout=ANSWER_WITHIN_STALL_S)
            assert not waiting.done()
            assert (ready.status_code, ready.json()) == (200, {"database": "ok"})
            await held.aclose()
            assert (await waiting).status_code == 200

    async def test_ready_is_503_within_its_budget_when_the_database_stalls(
        self, settings: Settings, own_database_url: str
    ) -> None:
        async with (
            TcpProxy.to_database(own_database_url) as proxy,
            serving(settings.model_copy(update={"database_url": proxy.url, "ready_timeout": 0.5})) as (_, http),
        ):
            assert (await http.get("/status/ready")).status_code == 200
            proxy.stall()
            ready = await asyncio.wait_for(http.get("/status/ready"), ANSWER_WITHIN_STALL_S)
            proxy.resume()
            assert ready.status_code == 503
            assert ready.json()["detail"] == "Database unavailable: TimeoutError"
            assert (await http.get("/status/ready")).status_code == 200


class TestFullPool:
    async def test_a_full_pool_on_a_healthy_database_is_503_busy_with_retry_after(
        self, settings: Settings, own_database_url: str
    ) -> None:
        tight = settings.model_copy(
            update={"database_url": own_database_url, "db_pool_size": 1, "db_pool_timeout": 0.2}
        )
        async with serving(tight) as (app, http):
            async with app.state.database.write_engine.connect():  # the only connection, held
                busy = await http.get("/notifications/v1/?limit=1")
                ready = await http.get("/status/ready")
            assert (busy.status_code, busy.json()) == (503, {"detail": "Server busy, try again shortly."})
            assert busy.headers["retry-after"] == "1"
            assert ready.status_code == 200
            assert (await http.get("/notifications/v1/?limit=1")).status_code == 200


class TestHonestErrors:
    @pytest.mark.parametrize("error", [OSError("disk full"), TimeoutError("an HTTP call timed out")])
    async def test_an_oserror_or_timeout_outside_the_database_is_a_500_with_its_traceback(
        self, settings: Settings, error: Exception, caplog: pytest.LogCaptureFixture
    ) -> None:
        app = create_app(settings)

        @app.get("/not-the-database")
        async def not_the_database() -> None:
            raise error

        transport = ASGITransport(app=app, raise_app_exceptions=False)
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            async with AsyncClient(transport=transport, base_url="http://t") as http:
                response = await http.get("/not-the-database")
        assert (response.status_code, response.json()) == (500, {"detail": "Internal server error"})
        (logged,) = [record for record in caplog.records if record.exc_info]
        assert logged.exc_info is not None
        assert logged.exc_info[1] is error

    async def test_a_refused_connection_is_still_the_database_503(self, settings: Settings) -> None:
        refused = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"})
        async with serving(refused) as (_, http):
            response = await http.get("/notifications/v1/?limit=1")
        assert (response.status_code, response.json()) == (503, OUTAGE)
