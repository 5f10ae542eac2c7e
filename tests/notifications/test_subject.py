"""The template's subject: its placeholders are required, and every notification returns it rendered."""

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.notifications.conftest import count_rows, create_template

SINGLE = "/notifications/v1/"
MULTIPLE = "/notifications/v1/multiple"


@pytest.fixture
async def news(client: AsyncClient) -> str:
    """A template whose only placeholder is in its subject."""
    return await create_template(client, "Read all about it.", subject="News about ((topic))")


class TestSubjectPlaceholders:
    @pytest.mark.parametrize("personalization", [None, {}, {"other": "x"}])
    async def test_a_placeholder_only_in_the_subject_is_required(
        self,
        client: AsyncClient,
        connection: AsyncConnection,
        news: str,
        personalization: dict[str, str] | None,
    ) -> None:
        response = await client.post(SINGLE, json={"to": "x", "template_id": news, "personalization": personalization})
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {"type": "value_error", "loc": ["body", "personalization"], "msg": "Missing personalization: topic"}
        ]
        assert await count_rows(connection) == (0, 0)

    async def test_in_a_list_the_item_lacking_a_subject_placeholder_is_named(
        self, client: AsyncClient, connection: AsyncConnection, news: str
    ) -> None:
        good = {"to": "x", "template_id": news, "personalization": {"topic": "rain"}}
        response = await client.post(MULTIPLE, json=[good, {"to": "y", "template_id": news}, good])
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", 1, "personalization"]
        assert response.json()["detail"][0]["msg"] == "Missing personalization: topic"
        assert await count_rows(connection) == (0, 0)

    async def test_names_missing_from_subject_and_content_are_listed_together_sorted(self, client: AsyncClient) -> None:
        template_id = await create_template(client, "((alpha)) ((mid))", subject="((zeta)) ((mid))")
        response = await client.post(SINGLE, json={"to": "x", "template_id": template_id})
        assert response.json()["detail"][0]["msg"] == "Missing personalization: alpha, mid, zeta"


class TestRenderedSubject:
    async def test_every_route_returns_the_subject_rendered(self, client: AsyncClient, news: str) -> None:
        item = {"to": "x", "template_id": news, "personalization": {"topic": "((rain))"}}
        single = (await client.post(SINGLE, json=item)).json()
        many = (await client.post(MULTIPLE, json=[item, item])).json()
        fetched = (await client.get(f"{SINGLE}{single['id']}")).json()
        page = (await client.get(SINGLE)).json()["notifications"]
        notifications: list[dict[str, Any]] = [single, *many, fetched, *page]
        assert len(notifications) == 7
        assert {(n["subject"], n["body"]) for n in notifications} == {("News about ((rain))", "Read all about it.")}

    async def test_the_subject_is_null_without_a_template_or_without_a_subject(self, client: AsyncClient) -> None:
        no_subject = await create_template(client, "Hi ((name))")
        items = [{"to": "x"}, {"to": "y", "template_id": no_subject, "personalization": {"name": "Ada"}}]
        created = (await client.post(MULTIPLE, json=items)).json()
        assert [(n["subject"], n["body"]) for n in created] == [(None, None), (None, "Hi Ada")]
        page = (await client.get(SINGLE)).json()["notifications"]
        assert {(n["subject"], n["body"]) for n in page} == {(None, None), (None, "Hi Ada")}

    async def test_a_page_of_many_templates_renders_each_with_its_own_subject(self, client: AsyncClient) -> None:
        first = await create_template(client, "1 ((n))", subject="First ((n))")
        second = await create_template(client, "2 ((n))", subject="Second ((n))")
        items = [
            {"to": "x", "template_id": t, "personalization": {"n": str(i)}} for i, t in enumerate([first, second] * 3)
        ]
        await client.post(MULTIPLE, json=items)
        page = (await client.get(SINGLE)).json()["notifications"]
        assert sorted((n["subject"], n["body"]) for n in page) == sorted(
            (f"{'First' if i % 2 == 0 else 'Second'} {i}", f"{1 + i % 2} {i}") for i in range(6)
        )
