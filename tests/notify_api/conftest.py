"""Fixtures of the ``/v2`` tests: the auth tests' application, a service with a key, and its templates."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from fastapi1.app import create_app
from fastapi1.config import Settings
from tests.auth.conftest import (  # noqa: F401 (fixtures)
    Key,
    admin_headers,
    auth_app,
    auth_client,
    auth_connection,
    auth_database_url,
    auth_settings,
    dev_app,
    dev_client,
    new_key,
    new_service,
)


@dataclass(frozen=True)
class Service:
    """A service with a key and one template of each type."""

    id: uuid.UUID
    key: Key
    email_template: str
    sms_template: str


async def new_template(client: AsyncClient, service_id: uuid.UUID, **fields: object) -> dict[str, object]:
    """Create a template through the admin API.

    Args:
        client: The client.
        service_id: The service.
        fields: The template's fields.
    """
    body = {"name": f"t-{uuid.uuid4().hex[:8]}", **fields}
    response = await client.post(f"/services/v1/{service_id}/templates", json=body, headers=admin_headers())
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
async def service(auth_client: AsyncClient) -> Service:  # noqa: F811 (the fixture)
    """A new service with a normal key, an e-mail template and a text message template."""
    service_id = await new_service(auth_client)
    key = await new_key(auth_client, service_id)
    email = await new_template(
        auth_client, service_id, template_type="email", subject="Hi ((name))", content="Dear ((name)), ((band)) plays."
    )
    sms = await new_template(auth_client, service_id, template_type="sms", content="((name)): doors at 7")
    return Service(service_id, key, str(email["id"]), str(sms["id"]))


def v2_error(status: int, error: str, message: str) -> dict[str, object]:
    """Notify's error body with one error.

    Args:
        status: The status code.
        error: The error's name.
        message: Its message.
    """
    return {"status_code": status, "errors": [{"error": error, "message": message}]}


@pytest.fixture(scope="session")
async def limited_app(auth_settings: Settings) -> AsyncIterator[FastAPI]:  # noqa: F811 (the fixture)
    """The application with small limits: 3 requests a minute per key, 4 notifications a day per service."""
    settings = auth_settings.model_copy(update={"rate_limit_per_minute": 3, "service_daily_limit": 4})
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def limited_client(limited_app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client of :func:`limited_app`."""
    async with AsyncClient(transport=ASGITransport(app=limited_app), base_url="http://limited") as http:
        yield http
