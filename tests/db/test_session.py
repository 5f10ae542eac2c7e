"""The write-session dependency: commit before the response, roll back on error."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select, text

from fastapi1.app import create_app
from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.db.session import WriteSession
from fastapi1.errors import NotFound
from fastapi1.models import Service
from fastapi1.services import dao


@pytest.fixture
async def app_with_writers(settings: Settings, own_database_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(settings.model_copy(update={"database_url": own_database_url}))

    @app.post("/write-then-fail/{name}")
    async def write_then_fail(name: str, session: WriteSession) -> None:
        await dao.insert_service(session, name, datetime.now(UTC))
        raise NotFound("gone")

    @app.post("/write/{name}", status_code=201)
    async def write(name: str, session: WriteSession) -> None:
        await dao.insert_service(session, name, datetime.now(UTC))

    @app.post("/write-then-fail-to-commit/{name}", status_code=201)
    async def write_then_fail_to_commit(name: str, session: WriteSession) -> None:
        await dao.insert_service(session, name, datetime.now(UTC))
        # A deferred constraint is checked by COMMIT: the handler returns normally and only
        # the session dependency's commit fails.
        await session.execute(
            text("CREATE TEMP TABLE twice (id int UNIQUE DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP")
        )
        await session.execute(text("INSERT INTO twice VALUES (1), (1)"))

    async with app.router.lifespan_context(app):
        yield app


async def stored_services(app: FastAPI, name: str) -> int:
    database: Database = app.state.database
    async with database.write_engine.connect() as connection:
        count = await connection.execute(select(func.count()).select_from(Service).where(Service.name == name))
        return int(count.scalar_one())


class TestWriteSession:
    async def test_a_failed_request_leaves_the_database_as_it_was(self, app_with_writers: FastAPI) -> None:
        async with AsyncClient(transport=ASGITransport(app=app_with_writers), base_url="http://t") as http:
            assert (await http.post("/write-then-fail/rolled-back")).status_code == 404
        assert await stored_services(app_with_writers, "rolled-back") == 0

    async def test_a_successful_request_is_committed(self, app_with_writers: FastAPI) -> None:
        async with AsyncClient(transport=ASGITransport(app=app_with_writers), base_url="http://t") as http:
            assert (await http.post("/write/committed")).status_code == 201
            assert await stored_services(app_with_writers, "committed") == 1

    async def test_the_commit_runs_before_the_response_so_a_failed_commit_is_no_201(
        self, app_with_writers: FastAPI
    ) -> None:
        # The transport hands back what the app sent instead of re-raising: a commit after
        # the response would show up here as the 201 already sent.
        transport = ASGITransport(app=app_with_writers, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post("/write-then-fail-to-commit/uncommitted")
        assert response.is_server_error, response
        assert await stored_services(app_with_writers, "uncommitted") == 0
