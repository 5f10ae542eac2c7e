"""Templates: create within a service, placeholders derived from the text, read back."""

import uuid
from typing import Any

import pytest
from httpx import AsyncClient

from tests.timestamps import assert_utc_timestamp


async def create_service(client: AsyncClient, name: str = "svc") -> str:
    response = await client.post("/services/v1/", json={"name": name})
    assert response.status_code == 201
    return str(response.json()["id"])


async def create_template(client: AsyncClient, service_id: str, **fields: Any) -> dict[str, Any]:
    payload = {"name": "reminder", "subject": "((band)) tonight", "content": "Hello ((name)), ((band)) plays."} | fields
    response = await client.post(f"/services/v1/{service_id}/templates", json=payload)
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestCreateTemplate:
    async def test_a_template_is_201_with_placeholders_from_subject_then_content(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id)
        assert template["service_id"] == service_id
        assert template["placeholders"] == ["band", "name"]
        assert template["subject"] == "((band)) tonight"
        assert_utc_timestamp(template["created_at"])

    async def test_the_subject_is_optional(self, client: AsyncClient) -> None:
        template = await create_template(client, await create_service(client), subject=None, content="Hi ((x))")
        assert template["subject"] is None
        assert template["placeholders"] == ["x"]

    async def test_an_unknown_service_is_404(self, client: AsyncClient) -> None:
        missing = uuid.uuid4()
        response = await client.post(f"/services/v1/{missing}/templates", json={"name": "t", "content": "c"})
        assert response.status_code == 404
        assert response.json() == {"detail": f"Service {missing} not found"}

    async def test_a_duplicate_name_in_the_same_service_is_409(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        await create_template(client, service_id, name="same")
        response = await client.post(f"/services/v1/{service_id}/templates", json={"name": "same", "content": "c"})
        assert response.status_code == 409

    async def test_the_same_name_in_another_service_is_fine(self, client: AsyncClient) -> None:
        await create_template(client, await create_service(client, "a"), name="same")
        await create_template(client, await create_service(client, "b"), name="same")

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("content", ""),
            ("content", "c" * 100_001),
            ("name", ""),
            ("name", "n" * 256),
            ("subject", "s" * 1_001),
            ("content", "((" + "k" * 65 + "))"),
        ],
    )
    async def test_values_past_their_limits_are_422(self, client: AsyncClient, field: str, value: str) -> None:
        service_id = await create_service(client)
        payload = {"name": "t", "content": "c"} | {field: value}
        response = await client.post(f"/services/v1/{service_id}/templates", json=payload)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", field]

    async def test_values_at_their_limits_are_accepted(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        await create_template(
            client, service_id, name="n" * 255, subject="s" * 1_000, content="((" + "k" * 64 + "))" + "c" * 99_932
        )


class TestReadTemplates:
    async def test_the_list_is_sorted_by_name(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        for name in ("b", "c", "a"):
            await create_template(client, service_id, name=name)
        response = await client.get(f"/services/v1/{service_id}/templates")
        assert response.status_code == 200
        assert [template["name"] for template in response.json()] == ["a", "b", "c"]

    async def test_the_list_of_an_unknown_service_is_404(self, client: AsyncClient) -> None:
        assert (await client.get(f"/services/v1/{uuid.uuid4()}/templates")).status_code == 404

    async def test_one_template_is_returned_as_created(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id)
        response = await client.get(f"/services/v1/{service_id}/templates/{template['id']}")
        assert response.status_code == 200
        assert response.json() == template

    async def test_a_template_of_another_service_is_404(self, client: AsyncClient) -> None:
        template = await create_template(client, await create_service(client, "owner"))
        other = await create_service(client, "other")
        response = await client.get(f"/services/v1/{other}/templates/{template['id']}")
        assert response.status_code == 404
        assert response.json() == {"detail": f"Template {template['id']} not found"}
