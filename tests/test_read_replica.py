"""DATABASE_READ_URL: GET routes read the replica, writes go to the primary."""

from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from fastapi1.app import create_app
from fastapi1.config import Settings
from tests.conftest import throwaway_database


@pytest.fixture(scope="module")
def primary_and_replica(admin_url: str) -> AsyncIterator[tuple[str, str]]:
    """Two separate migrated databases standing in for a primary and a (never-synced) replica."""
    with throwaway_database(admin_url) as primary, throwaway_database(admin_url) as replica:
        yield primary, replica


class TestReadReplica:
    async def test_reads_go_to_the_replica_and_writes_to_the_primary(
        self, settings: Settings, primary_and_replica: tuple[str, str]
    ) -> None:
        primary, replica = primary_and_replica
        app = create_app(settings.model_copy(update={"database_url": primary, "database_read_url": replica}))
        async with (
            app.router.lifespan_context(app),
            AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http,
        ):
            created = await http.post("/notifications/v1/", json={"to": "x"})
            assert created.status_code == 201
            # The stand-in replica never receives the row: a read that finds it went to the primary.
            assert (await http.get(f"/notifications/v1/{created.json()['id']}")).status_code == 404
            assert (await http.get("/status/ready")).json() == {"database": "ok"}
