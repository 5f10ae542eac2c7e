"""Services: create, read, unique names, limits."""

import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.models import Service
from tests.timestamps import assert_utc_timestamp


async def count_services(connection: AsyncConnection) -> int:
    return int((await connection.execute(select(func.count()).select_from(Service))).scalar_one())


class TestCreateService:
    async def test_a_new_service_is_201_with_id_and_timestamps(self, client: AsyncClient) -> None:
        response = await client.post("/services/v1/", json={"name": "Tour announcements"})
        assert response.status_code == 201
        body = response.json()
        assert body["name"] == "Tour announcements"
        assert uuid.UUID(body["id"]).version == 4
        assert_utc_timestamp(body["created_at"])
        assert body["updated_at"] == body["created_at"]

    async def test_a_duplicate_name_is_409_and_stores_nothing(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        assert (await client.post("/services/v1/", json={"name": "dup"})).status_code == 201
        response = await client.post("/services/v1/", json={"name": "dup"})
        assert response.status_code == 409
        assert response.json() == {"detail": "Service name 'dup' already exists"}
        assert await count_services(connection) == 1

    @pytest.mark.parametrize("length", [1, 255])
    async def test_names_of_1_to_255_characters_are_accepted(self, client: AsyncClient, length: int) -> None:
        assert (await client.post("/services/v1/", json={"name": "n" * length})).status_code == 201

    @pytest.mark.parametrize("name", ["", "n" * 256, None, 5, "nul\x00", " ", "   ", "\t\n", "\u3000\u00a0"])
    async def test_invalid_names_are_422(self, client: AsyncClient, name: object) -> None:
        response = await client.post("/services/v1/", json={"name": name})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "name"]

    async def test_a_name_with_spaces_inside_is_kept_as_sent(self, client: AsyncClient) -> None:
        response = await client.post("/services/v1/", json={"name": " Tour  news "})
        assert (response.status_code, response.json()["name"]) == (201, " Tour  news ")

    @pytest.mark.parametrize("name", [" ", "\t"])
    async def test_a_template_name_of_only_whitespace_is_422(self, client: AsyncClient, name: str) -> None:
        service = (await client.post("/services/v1/", json={"name": "s"})).json()
        response = await client.post(f"/services/v1/{service['id']}/templates", json={"name": name, "content": "c"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "name"]

    async def test_unknown_fields_are_422(self, client: AsyncClient) -> None:
        response = await client.post("/services/v1/", json={"name": "x", "colour": "blue"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "colour"]


class TestGetService:
    async def test_a_stored_service_is_returned(self, client: AsyncClient) -> None:
        created = (await client.post("/services/v1/", json={"name": "s"})).json()
        response = await client.get(f"/services/v1/{created['id']}")
        assert response.status_code == 200
        assert response.json() == created

    async def test_an_unknown_service_is_404(self, client: AsyncClient) -> None:
        missing = uuid.uuid4()
        response = await client.get(f"/services/v1/{missing}")
        assert response.status_code == 404
        assert response.json() == {"detail": f"Service {missing} not found"}

    async def test_an_id_that_is_not_a_uuid_is_422(self, client: AsyncClient) -> None:
        assert (await client.get("/services/v1/not-a-uuid")).status_code == 422
