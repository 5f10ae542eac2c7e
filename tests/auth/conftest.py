"""An application with AUTH_REQUIRED on, its admin token, and services with keys made through the API."""

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.app import create_app
from fastapi1.auth.tokens import create_token
from fastapi1.config import Settings
from fastapi1.db.engine import Database
from tests.conftest import throwaway_database

ADMIN_SECRET = secrets.token_urlsafe(32)
SECRET_KEYS = [secrets.token_urlsafe(32)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin_headers(now: float | None = None) -> dict[str, str]:
    return bearer(create_token(ADMIN_SECRET, "fastapi1-admin", now))


@dataclass(frozen=True)
class Key:
    """A key as its service's client holds it: the combined form Notify's libraries take."""

    id: uuid.UUID
    service_id: uuid.UUID
    combined: str

    @property
    def secret(self) -> str:
        return self.combined[-36:]

    def headers(self, now: float | None = None) -> dict[str, str]:
        return bearer(create_token(self.secret, str(self.service_id), now))


@pytest.fixture(scope="session")
def auth_database_url(admin_url: str) -> Iterator[str]:
    """A database of its own: requests here commit for real (key lookups run on a connection of their own)."""
    with throwaway_database(admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def auth_settings(settings: Settings, auth_database_url: str) -> Settings:
    """Authentication required, the key cache short enough to wait out in a test."""
    return settings.model_copy(
        update={
            "database_url": auth_database_url,
            "auth_required": True,
            "admin_client_secret": SecretStr(ADMIN_SECRET),
            "secret_key": [SecretStr(key) for key in SECRET_KEYS],
            "auth_key_cache_s": 0.5,
        }
    )


@pytest.fixture(scope="session")
async def auth_app(auth_settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(auth_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def auth_connection(auth_app: FastAPI) -> AsyncIterator[AsyncConnection]:
    """A connection for looking at what requests stored (they commit: each test uses services of its own)."""
    database: Database = auth_app.state.database
    async with database.write_engine.connect() as connection:
        yield connection


@pytest.fixture
async def auth_client(auth_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=auth_app), base_url="http://test") as http:
        yield http


async def new_service(client: AsyncClient, name: str | None = None) -> uuid.UUID:
    response = await client.post(
        "/services/v1/", json={"name": name or f"service-{uuid.uuid4()}"}, headers=admin_headers()
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def new_key(client: AsyncClient, service_id: uuid.UUID, key_type: str = "normal", name: str = "key") -> Key:
    response = await client.post(
        f"/services/v1/{service_id}/api-keys", json={"name": name, "key_type": key_type}, headers=admin_headers()
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Key(uuid.UUID(body["id"]), service_id, body["key"])


@pytest.fixture
async def key(auth_client: AsyncClient) -> Key:
    """A normal key of a new service."""
    return await new_key(auth_client, await new_service(auth_client))


@pytest.fixture(scope="session")
async def dev_app(auth_settings: Settings) -> AsyncIterator[FastAPI]:
    """Development: AUTH_REQUIRED off, on the same database as ``auth_app``."""
    application = create_app(auth_settings.model_copy(update={"auth_required": False}))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def dev_client(dev_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=dev_app), base_url="http://dev") as http:
        yield http
