"""A service token sees its own service only: another's notifications and templates are 404, as if absent."""

import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.models import Notification
from tests.auth.conftest import Key, admin_headers, bearer, new_key, new_service

TEAM_REFUSED = "Can\u2019t send to this recipient using a team-only API key"


async def notify(client: AsyncClient, headers: dict[str, str], **fields: object) -> dict[str, object]:
    response = await client.post("/notifications/v1/", json={"to": "ada@example.com", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def template_of(client: AsyncClient, service_id: uuid.UUID) -> str:
    response = await client.post(
        f"/services/v1/{service_id}/templates", json={"name": "t", "content": "Hi ((name))"}, headers=admin_headers()
    )
    assert response.status_code == 201
    return str(response.json()["id"])


@pytest.fixture
async def other(auth_client: AsyncClient) -> Key:
    """A key of a second service."""
    return await new_key(auth_client, await new_service(auth_client))


class TestNotificationsOfAnotherService:
    async def test_reading_another_services_notification_is_404(
        self, auth_client: AsyncClient, key: Key, other: Key
    ) -> None:
        created = await notify(auth_client, key.headers())
        path = f"/notifications/v1/{created['id']}"
        assert (await auth_client.get(path, headers=key.headers())).status_code == 200
        response = await auth_client.get(path, headers=other.headers())
        assert (response.status_code, response.json()) == (404, {"detail": f"Notification {created['id']} not found"})

    async def test_a_list_holds_the_callers_notifications_only(
        self, auth_client: AsyncClient, key: Key, other: Key
    ) -> None:
        mine = [await notify(auth_client, key.headers()) for _ in range(3)]
        theirs = await notify(auth_client, other.headers())
        page = (await auth_client.get("/notifications/v1/", headers=key.headers())).json()
        assert [item["id"] for item in page["notifications"]] == [item["id"] for item in reversed(mine)]
        listed = (await auth_client.get("/notifications/v1/", headers=other.headers())).json()["notifications"]
        assert [item["id"] for item in listed] == [theirs["id"]]

    @pytest.mark.parametrize("query", ["", "&status=created", "&status=failed"])
    async def test_another_services_cursor_is_404(
        self, auth_client: AsyncClient, key: Key, other: Key, query: str
    ) -> None:
        theirs = await notify(auth_client, other.headers())
        response = await auth_client.get(f"/notifications/v1/?older_than={theirs['id']}{query}", headers=key.headers())
        assert response.status_code == 404

    async def test_another_services_template_is_404(self, auth_client: AsyncClient, key: Key, other: Key) -> None:
        template_id = await template_of(auth_client, other.service_id)
        response = await auth_client.post(
            "/notifications/v1/",
            json={"to": "a@b.example", "template_id": template_id, "personalization": {"name": "Ada"}},
            headers=key.headers(),
        )
        assert (response.status_code, response.json()) == (404, {"detail": f"Template {template_id} not found"})
        filtered = await auth_client.get(f"/notifications/v1/?template_id={template_id}", headers=key.headers())
        assert filtered.json()["notifications"] == []

    async def test_a_notification_records_its_service_and_key_type(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        template_id = await template_of(auth_client, key.service_id)
        created = await notify(auth_client, key.headers(), template_id=template_id, personalization={"name": "Ada"})
        row = (
            await auth_connection.execute(
                select(Notification.service_id, Notification.key_type).where(
                    Notification.id == uuid.UUID(created["id"])
                )  # type: ignore[arg-type]
            )
        ).one()
        assert tuple(row) == (key.service_id, "normal")
        assert created["body"] == "Hi Ada"


class TestDevelopment:
    async def test_without_a_token_only_the_notifications_of_no_service_are_seen(
        self, dev_client: AsyncClient, auth_client: AsyncClient, key: Key
    ) -> None:
        owned = await notify(auth_client, key.headers())
        anonymous = await notify(dev_client, {})
        assert (await dev_client.get(f"/notifications/v1/{owned['id']}")).status_code == 404
        assert (await dev_client.get(f"/notifications/v1/{anonymous['id']}")).status_code == 200
        assert (await dev_client.get(f"/notifications/v1/{anonymous['id']}", headers=key.headers())).status_code == 404
        listed = (await dev_client.get("/notifications/v1/?limit=250")).json()["notifications"]
        assert owned["id"] not in {item["id"] for item in listed}

    async def test_a_token_is_checked_and_scoped_even_when_none_is_required(
        self, dev_client: AsyncClient, key: Key
    ) -> None:
        refused = await dev_client.post("/notifications/v1/", json={"to": "a@b.example"}, headers=bearer("nope"))
        assert refused.status_code == 403
        created = await notify(dev_client, key.headers())
        assert (await dev_client.get(f"/notifications/v1/{created['id']}", headers=key.headers())).status_code == 200
        assert (await dev_client.get(f"/notifications/v1/{created['id']}")).status_code == 404

    async def test_a_service_token_on_an_admin_route_is_refused_even_in_development(
        self, dev_client: AsyncClient, key: Key
    ) -> None:
        response = await dev_client.get(f"/services/v1/{key.service_id}", headers=key.headers())
        assert (response.status_code, response.json()["detail"]) == (
            403,
            "Unauthorized: not allowed to perform this action",
        )
        assert (await dev_client.get(f"/services/v1/{key.service_id}")).status_code == 200


class TestTeamKeys:
    @pytest.fixture
    async def team(self, auth_client: AsyncClient) -> Key:
        service_id = await new_service(auth_client)
        for recipient in ("Guest@Example.com", "+44 7700 900123"):
            added = await auth_client.post(
                f"/services/v1/{service_id}/guest-list", json={"recipient": recipient}, headers=admin_headers()
            )
            assert added.status_code == 201
        return await new_key(auth_client, service_id, "team")

    @pytest.mark.parametrize(
        "to", ["guest@example.com", "GUEST@EXAMPLE.COM", "07700900123", "07700 900 123", "447700900123"]
    )
    async def test_a_team_key_sends_to_its_guest_list(self, auth_client: AsyncClient, team: Key, to: str) -> None:
        response = await auth_client.post("/notifications/v1/", json={"to": to}, headers=team.headers())
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize("to", ["stranger@example.com", "07700900124", "not a number"])
    async def test_a_team_key_sends_to_nobody_else(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, team: Key, to: str
    ) -> None:
        response = await auth_client.post("/notifications/v1/", json={"to": to}, headers=team.headers())
        assert (response.status_code, response.json()) == (400, {"detail": TEAM_REFUSED})
        listed = await auth_client.get("/notifications/v1/", headers=team.headers())
        assert listed.json()["notifications"] == []

    async def test_one_stranger_refuses_the_whole_list_naming_the_item(
        self, auth_client: AsyncClient, team: Key
    ) -> None:
        items = [{"to": "guest@example.com"}, {"to": "07700900123"}, {"to": "stranger@example.com"}]
        response = await auth_client.post("/notifications/v1/multiple", json=items, headers=team.headers())
        assert (response.status_code, response.json()) == (400, {"detail": f"{TEAM_REFUSED} (item 2)"})
        assert (await auth_client.get("/notifications/v1/", headers=team.headers())).json()["notifications"] == []

    async def test_another_services_guest_list_does_not_count(self, auth_client: AsyncClient, team: Key) -> None:
        stranger_team = await new_key(auth_client, await new_service(auth_client), "team")
        response = await auth_client.post(
            "/notifications/v1/", json={"to": "guest@example.com"}, headers=stranger_team.headers()
        )
        assert response.status_code == 400
