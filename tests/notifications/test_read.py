"""Reading notifications back: by id, and newest first in keyset pages."""

import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi1.notifications.schemas import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, Notification, NotificationPage
from fastapi1.services import templating
from tests.notifications.conftest import create_template

LIST = "/notifications/v1/"


async def create(client: AsyncClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.post("/notifications/v1/multiple", json=items)
    assert response.status_code == 201, response.text
    return list(response.json())


def newest_first(notifications: list[dict[str, Any]]) -> list[str]:
    ordered = sorted(notifications, key=lambda n: (n["created_at"], uuid.UUID(n["id"])), reverse=True)
    return [n["id"] for n in ordered]


class TestGetOne:
    async def test_an_unknown_id_is_404(self, client: AsyncClient) -> None:
        missing = uuid.uuid4()
        response = await client.get(f"{LIST}{missing}")
        assert response.status_code == 404
        assert response.json() == {"detail": f"Notification {missing} not found"}

    @pytest.mark.parametrize("bad_id", ["123", "not-a-uuid", "0" * 33])
    async def test_an_id_that_is_not_a_uuid_is_422(self, client: AsyncClient, bad_id: str) -> None:
        assert (await client.get(f"{LIST}{bad_id}")).status_code == 422


class TestList:
    async def test_an_empty_database_gives_an_empty_page(self, client: AsyncClient) -> None:
        response = await client.get(LIST)
        assert response.status_code == 200
        assert response.json() == {"notifications": [], "next": None}

    async def test_pages_walk_every_notification_once_newest_first(self, client: AsyncClient) -> None:
        created = []
        for batch in range(4):
            created += await create(client, [{"to": f"{batch}-{index}"} for index in range(2)])
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 3} | ({"older_than": cursor} if cursor else {})
            page = (await client.get(LIST, params=params)).json()
            seen += [n["id"] for n in page["notifications"]]
            cursor = page["next"]
            if cursor is None:
                break
            assert cursor == page["notifications"][-1]["id"]
        assert seen == newest_first(created)

    async def test_a_full_last_page_has_no_next(self, client: AsyncClient) -> None:
        await create(client, [{"to": "a"}, {"to": "b"}])
        assert (await client.get(LIST, params={"limit": 2})).json()["next"] is None

    async def test_the_default_page_holds_50(self, client: AsyncClient) -> None:
        await create(client, [{"to": "x"}] * (PAGE_LIMIT_DEFAULT + 1))
        page = (await client.get(LIST)).json()
        assert len(page["notifications"]) == PAGE_LIMIT_DEFAULT
        assert page["next"] is not None

    @pytest.mark.parametrize(("limit", "status"), [(0, 422), (1, 200), (250, 200), (251, 422), ("x", 422)])
    async def test_limit_is_1_to_250(self, client: AsyncClient, limit: object, status: int) -> None:
        assert (await client.get(LIST, params={"limit": limit})).status_code == status

    async def test_a_page_of_250_is_served_whole(self, client: AsyncClient) -> None:
        await create(client, [{"to": "x", "personalization": {"k": "v"}}] * 251)
        page = (await client.get(LIST, params={"limit": 250})).json()
        assert len(page["notifications"]) == 250
        assert all(n["personalization"] == {"k": "v"} for n in page["notifications"])

    async def test_an_unknown_cursor_is_404(self, client: AsyncClient) -> None:
        assert (await client.get(LIST, params={"older_than": str(uuid.uuid4())})).status_code == 404

    async def test_the_template_filter_keeps_only_that_template(
        self, client: AsyncClient, template: dict[str, Any]
    ) -> None:
        templated = {"to": "t", "template_id": template["id"], "personalization": {"band": "Korn", "name": "A"}}
        created = await create(client, [templated, {"to": "plain"}, templated])
        page = (await client.get(LIST, params={"template_id": template["id"]})).json()
        assert [n["id"] for n in page["notifications"]] == newest_first([created[0], created[2]])
        assert {n["body"] for n in page["notifications"]} == {"Hello A, Korn plays tonight."}

    async def test_the_status_filter_keeps_only_that_status(self, client: AsyncClient) -> None:
        await create(client, [{"to": "x"}])
        assert len((await client.get(LIST, params={"status": "created"})).json()["notifications"]) == 1
        assert (await client.get(LIST, params={"status": "delivered"})).json()["notifications"] == []

    async def test_an_unknown_status_is_422(self, client: AsyncClient) -> None:
        assert (await client.get(LIST, params={"status": "lost"})).status_code == 422

    async def test_a_page_scans_each_template_once(self, client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
        template_id = await create_template(client, "Hi ((name)) " + "x" * 99_000, subject="For ((name))")
        await create(
            client, [{"to": "x", "template_id": template_id, "personalization": {"name": "A"}}] * PAGE_LIMIT_MAX
        )
        scanned: list[str] = []
        parse = templating.parse
        monkeypatch.setattr(templating, "parse", lambda text: scanned.append(text) or parse(text))
        page = (await client.get(LIST, params={"limit": PAGE_LIMIT_MAX})).json()
        assert {n["subject"] for n in page["notifications"]} == {"For A"}
        assert len(scanned) == 2, "subject and content, once per page, not once per row"


keys = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), min_size=1, max_size=64)
values = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=200)


class TestPersonalizationRoundTrip:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(personalization=st.dictionaries(keys, values, max_size=100))
    async def test_any_valid_personalization_comes_back_exactly(
        self, client: AsyncClient, personalization: dict[str, str]
    ) -> None:
        created = await client.post("/notifications/v1/", json={"to": "x", "personalization": personalization})
        assert created.status_code == 201
        assert created.json()["personalization"] == personalization
        stored = await client.get(f"{LIST}{created.json()['id']}")
        assert stored.json()["personalization"] == personalization


class TestDocumentedShape:
    async def test_every_route_answers_exactly_the_documented_models(
        self, client: AsyncClient, template: dict[str, Any]
    ) -> None:
        templated = {"to": "t", "template_id": template["id"], "personalization": {"band": "Korn", "name": "A"}}
        single = (await client.post("/notifications/v1/", json=templated)).json()
        many = (await client.post("/notifications/v1/multiple", json=[{"to": "x"}, templated])).json()
        fetched = (await client.get(f"{LIST}{single['id']}")).json()
        page = (await client.get(LIST, params={"limit": 2})).json()
        for notification in [single, *many, fetched]:
            assert Notification.model_validate(notification).model_dump(mode="json") == notification
        assert NotificationPage.model_validate(page).model_dump(mode="json") == page
