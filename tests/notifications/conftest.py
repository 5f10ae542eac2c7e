"""Helpers for the notification tests: a template to send from, row counts."""

import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.models import Notification, NotificationPersonalization


async def count_rows(connection: AsyncConnection) -> tuple[int, int]:
    """Numbers of notification and personalization rows visible to the test."""
    notifications = await connection.execute(select(func.count()).select_from(Notification))
    personalizations = await connection.execute(select(func.count()).select_from(NotificationPersonalization))
    return int(notifications.scalar_one()), int(personalizations.scalar_one())


async def create_template(client: AsyncClient, content: str, subject: str | None = None) -> str:
    """Create a template (in a service of its own) and return its id."""
    service = await client.post("/services/v1/", json={"name": f"service {uuid.uuid4()}"})
    response = await client.post(
        f"/services/v1/{service.json()['id']}/templates", json={"name": "t", "subject": subject, "content": content}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
async def template(client: AsyncClient) -> dict[str, Any]:
    """A template with the placeholders ``band`` and ``name``."""
    service = await client.post("/services/v1/", json={"name": "Tours"})
    response = await client.post(
        f"/services/v1/{service.json()['id']}/templates",
        json={"name": "reminder", "subject": "((band))", "content": "Hello ((name)), ((band)) plays tonight."},
    )
    assert response.status_code == 201
    return dict(response.json())
