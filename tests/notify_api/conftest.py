"""Fixtures of the ``/v2`` tests: the auth tests' application, a service with a key, and its templates."""

import uuid
from dataclasses import dataclass

import pytest
from httpx import AsyncClient

from tests.auth.conftest import (  # noqa: F401 (fixtures)
    Key,
    admin_headers,
    auth_app,
    auth_client,
    auth_database_url,
    auth_settings,
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
async def service(auth_client: AsyncClient) -> Service:
    """A new service with a normal key, an e-mail template and a text message template."""
    service_id = await new_service(auth_client)
    key = await new_key(auth_client, service_id)
    email = await new_template(
        auth_client, service_id, template_type="email", subject="Hi ((name))", content="Dear ((name)), ((band)) plays."
    )
    sms = await new_template(auth_client, service_id, template_type="sms", content="((name)): doors at 7")
    return Service(service_id, key, str(email["id"]), str(sms["id"]))
