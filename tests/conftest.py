"""Fixtures: one throwaway PostgreSQL database per test run, and per-test isolation.

The database comes from ``$DATABASE_URL`` when it is set (a database is created on that
server and dropped at the end), else from the embedded PostgreSQL. It is migrated with
alembic once. Each test runs in an outer transaction that is rolled back afterwards;
the application's sessions join it through savepoints, so commits inside a request are
real (constraints fire, a failed request rolls back) yet no test sees another's rows.
"""

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from fastapi1.app import create_app
from fastapi1.config import Settings, to_async_url
from fastapi1.db.embedded import embedded_postgres
from fastapi1.db.engine import Database
from fastapi1.db.migrate import upgrade_to_head
from fastapi1.db.session import WriteTransactions, get_read_session, get_write_session, get_write_transactions

PROJECT_ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["tests.brokers"]


def asyncpg_dsn(url: str) -> str:
    """Turn a SQLAlchemy asyncpg URL into a DSN that asyncpg.connect accepts."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def execute_admin(admin_url: str, statement: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
    connection = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def throwaway_database(admin_url: str, *, migrate: bool = True) -> Iterator[str]:
    """Create a uniquely named database on the admin URL's server, dropped on exit."""
    name = f"fastapi1_test_{secrets.token_hex(6)}"
    asyncio.run(execute_admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(execute_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    """URL of a database on the server the tests may create databases on."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield to_async_url(configured)
        return
    with embedded_postgres(PROJECT_ROOT / ".data" / "postgres") as url:
        yield url


@pytest.fixture(scope="session")
def database_url(admin_url: str) -> Iterator[str]:
    """URL of this run's database, migrated to head."""
    with throwaway_database(admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def own_database_url(admin_url: str) -> Iterator[str]:
    """A migrated database for one test module whose requests commit for real (no outer transaction)."""
    with throwaway_database(admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """Settings pointing at this run's database, with the mock model backend at millisecond delays."""
    return Settings(
        database_url=database_url, database_read_url=None, backend_delay_min_s=0.001, backend_delay_max_s=0.005
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The application with its lifespan entered once for the whole run."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def connection(app: FastAPI) -> AsyncIterator[AsyncConnection]:
    """A connection in an outer transaction that is rolled back after the test."""
    database: Database = app.state.database
    async with database.write_engine.connect() as outer:
        transaction = await outer.begin()
        try:
            yield outer
        finally:
            await transaction.rollback()


@contextlib.asynccontextmanager
async def joined_client(app: FastAPI, connection: AsyncConnection) -> AsyncIterator[AsyncClient]:
    """An HTTP client of ``app`` whose requests run in the outer transaction of ``connection``."""

    @contextlib.asynccontextmanager
    async def joined_write_transaction() -> AsyncIterator[AsyncSession]:
        async with (
            AsyncSession(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    async def joined_write_session() -> AsyncIterator[AsyncSession]:
        async with joined_write_transaction() as session:
            yield session

    async def joined_write_transactions() -> WriteTransactions:
        return joined_write_transaction

    async def joined_read_session() -> AsyncIterator[AsyncSession]:
        async with AsyncSession(bind=connection, join_transaction_mode="create_savepoint") as session:
            yield session

    app.dependency_overrides[get_write_session] = joined_write_session
    app.dependency_overrides[get_read_session] = joined_read_session
    app.dependency_overrides[get_write_transactions] = joined_write_transactions
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
            yield http
    finally:
        app.dependency_overrides.clear()


@pytest.fixture
async def client(app: FastAPI, connection: AsyncConnection) -> AsyncIterator[AsyncClient]:
    """An HTTP client whose requests run in the test's outer transaction."""
    async with joined_client(app, connection) as http:
        yield http
