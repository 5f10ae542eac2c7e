"""Creating notifications: one, many, from templates, and every limit at and past its edge."""

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.services import templating
from tests.notifications.conftest import count_rows, create_template
from tests.statements import recorded_statements
from tests.timestamps import assert_utc_timestamp

SINGLE = "/notifications/v1/"
MULTIPLE = "/notifications/v1/multiple"


class TestCreateOne:
    async def test_the_created_notification_is_201_with_every_field(self, client: AsyncClient) -> None:
        response = await client.post(SINGLE, json={"to": "example@gmail.com", "personalization": {"band": "Incubus"}})
        assert response.status_code == 201
        body = response.json()
        assert uuid.UUID(body["id"]).version == 4
        assert body["to"] == "example@gmail.com"
        assert body["personalization"] == {"band": "Incubus"}
        assert (body["template_id"], body["status"], body["body"], body["sent_at"]) == (None, "created", None, None)
        assert assert_utc_timestamp(body["created_at"]) == assert_utc_timestamp(body["updated_at"])

    @pytest.mark.parametrize("personalization", [None, {}])
    async def test_no_personalization_reads_as_an_empty_object(
        self, client: AsyncClient, personalization: dict[str, str] | None
    ) -> None:
        response = await client.post(SINGLE, json={"to": "x", "personalization": personalization})
        assert response.status_code == 201
        assert response.json()["personalization"] == {}

    async def test_the_notification_is_stored(self, client: AsyncClient) -> None:
        created = (await client.post(SINGLE, json={"to": "x", "personalization": {"a": "1", "b": "2"}})).json()
        assert (await client.get(f"{SINGLE}{created['id']}")).json() == created


class TestLimits:
    @pytest.mark.parametrize("to", ["x", "x" * 320])
    async def test_to_of_1_to_320_characters_is_accepted(self, client: AsyncClient, to: str) -> None:
        assert (await client.post(SINGLE, json={"to": to})).status_code == 201

    @pytest.mark.parametrize("to", ["", "x" * 321, None, 42, ["x"], "nul\x00"])
    async def test_to_outside_its_limits_is_422(self, client: AsyncClient, to: object) -> None:
        response = await client.post(SINGLE, json={"to": to})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][:2] == ["body", "to"]

    async def test_a_missing_to_is_422(self, client: AsyncClient) -> None:
        assert (await client.post(SINGLE, json={"personalization": {}})).status_code == 422

    async def test_personalization_at_every_limit_is_accepted_and_returned(self, client: AsyncClient) -> None:
        personalization = {f"{index:064d}": "v" * 10_000 for index in range(100)}
        personalization["k"] = ""
        del personalization[f"{0:064d}"]
        response = await client.post(SINGLE, json={"to": "x", "personalization": personalization})
        assert response.status_code == 201
        assert response.json()["personalization"] == personalization

    @pytest.mark.parametrize(
        "personalization",
        [
            {f"k{index}": "v" for index in range(101)},
            {"": "v"},
            {"k" * 65: "v"},
            {"k": "v" * 10_001},
            {"k": 1},
            {"k": None},
            {"k": ["v"]},
            {"k": "nul\x00"},
            {"nul\x00": "v"},
            ["k", "v"],
            "k=v",
        ],
    )
    async def test_personalization_past_its_limits_is_422_and_stores_nothing(
        self, client: AsyncClient, connection: AsyncConnection, personalization: object
    ) -> None:
        response = await client.post(SINGLE, json={"to": "x", "personalization": personalization})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][:2] == ["body", "personalization"]
        assert await count_rows(connection) == (0, 0)

    async def test_unknown_fields_are_422(self, client: AsyncClient) -> None:
        response = await client.post(SINGLE, json={"to": "x", "cc": "y"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "cc"]

    @pytest.mark.parametrize("content", [b"not json", b'{"to": ', b"", b"[]", b'[{"to": "x"}]', b'"x"'])
    async def test_a_body_that_is_not_a_json_object_is_422(self, client: AsyncClient, content: bytes) -> None:
        response = await client.post(SINGLE, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422


class TestUnstorableText:
    @pytest.mark.parametrize(
        ("content", "loc"),
        [
            (b'{"to": "\\ud800"}', ["body", "to"]),
            (b'{"to": "x", "personalization": {"k": "\\udfff"}}', ["body", "personalization", "k"]),
            (b'{"to": "x", "personalization": {"\\ud800": "v"}}', ["body", "personalization"]),
            (b'{"to": "\\u0000"}', ["body", "to"]),
        ],
    )
    async def test_lone_surrogates_and_nul_are_422_naming_the_field(
        self, client: AsyncClient, connection: AsyncConnection, content: bytes, loc: list[str]
    ) -> None:
        response = await client.post(SINGLE, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][: len(loc)] == loc
        assert await count_rows(connection) == (0, 0)


class TestCreateMany:
    async def test_the_original_example_is_201_in_request_order(self, client: AsyncClient) -> None:
        items = [
            {"to": "example@gmail.com", "personalization": {"band": "Korn"}},
            {"to": "another-example@gmail.com", "personalization": {"band": "Soundgarden"}},
        ]
        response = await client.post(MULTIPLE, json=items)
        assert response.status_code == 201
        assert [(n["to"], n["personalization"]) for n in response.json()] == [
            (item["to"], item["personalization"]) for item in items
        ]

    async def test_1000_items_are_accepted_in_order_and_all_stored(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        items = [{"to": f"user{index}@example.com", "personalization": {"n": str(index)}} for index in range(1000)]
        response = await client.post(MULTIPLE, json=items)
        assert response.status_code == 201
        assert [n["to"] for n in response.json()] == [item["to"] for item in items]
        assert len({n["id"] for n in response.json()}) == 1000
        assert await count_rows(connection) == (1000, 1000)

    @pytest.mark.parametrize("count", [0, 1001])
    async def test_an_empty_or_oversized_list_is_422_and_stores_nothing(
        self, client: AsyncClient, connection: AsyncConnection, count: int
    ) -> None:
        response = await client.post(MULTIPLE, json=[{"to": "x"}] * count)
        assert response.status_code == 422
        assert len(response.content) < 500, "the rejected list must not be echoed back"
        assert await count_rows(connection) == (0, 0)

    async def test_one_bad_item_rejects_the_list_naming_its_index(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        items: list[dict[str, Any]] = [{"to": "ok", "personalization": {"k": "v"}}] * 5
        items[3] = {"to": ""}
        response = await client.post(MULTIPLE, json=items)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", 3, "to"]
        assert await count_rows(connection) == (0, 0)

    async def test_an_object_where_a_list_is_expected_is_422(self, client: AsyncClient) -> None:
        assert (await client.post(MULTIPLE, json={"to": "x"})).status_code == 422


class TestTemplates:
    async def test_the_body_is_the_content_rendered_with_the_personalization(
        self, client: AsyncClient, template: dict[str, Any]
    ) -> None:
        personalization = {"band": "Incubus", "name": "Ada", "unused": "fine"}
        response = await client.post(
            SINGLE, json={"to": "x", "template_id": template["id"], "personalization": personalization}
        )
        assert response.status_code == 201
        assert response.json()["body"] == "Hello Ada, Incubus plays tonight."
        assert response.json()["template_id"] == template["id"]
        stored = (await client.get(f"{SINGLE}{response.json()['id']}")).json()
        assert stored["body"] == "Hello Ada, Incubus plays tonight."

    async def test_missing_placeholders_are_422_named_in_alphabetical_order(
        self, client: AsyncClient, connection: AsyncConnection, template: dict[str, Any]
    ) -> None:
        response = await client.post(SINGLE, json={"to": "x", "template_id": template["id"]})
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {"type": "value_error", "loc": ["body", "personalization"], "msg": "Missing personalization: band, name"}
        ]
        assert await count_rows(connection) == (0, 0)

    async def test_in_a_list_the_missing_placeholder_error_names_the_index(
        self, client: AsyncClient, connection: AsyncConnection, template: dict[str, Any]
    ) -> None:
        good = {"to": "x", "template_id": template["id"], "personalization": {"band": "Korn", "name": "A"}}
        bad = {"to": "y", "template_id": template["id"], "personalization": {"band": "Korn"}}
        response = await client.post(MULTIPLE, json=[good, good, bad])
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", 2, "personalization"]
        assert response.json()["detail"][0]["msg"] == "Missing personalization: name"
        assert await count_rows(connection) == (0, 0)

    async def test_an_unknown_template_is_404_and_stores_nothing(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        missing = uuid.uuid4()
        response = await client.post(MULTIPLE, json=[{"to": "x"}, {"to": "y", "template_id": str(missing)}])
        assert response.status_code == 404
        assert response.json() == {"detail": f"Template {missing} not found"}
        assert await count_rows(connection) == (0, 0)


class TestRoundTrips:
    async def test_creating_1000_costs_the_same_statements_as_creating_one(
        self, app: FastAPI, client: AsyncClient, template: dict[str, Any]
    ) -> None:
        item = {"to": "x", "template_id": template["id"], "personalization": {"band": "Korn", "name": "A"}}
        counts = []
        for size in (1, 1000):
            with recorded_statements(app) as statements:
                response = await client.post(MULTIPLE, json=[item] * size)
            assert response.status_code == 201
            counts.append(len(statements))
        assert counts[0] == counts[1]
        assert counts[0] <= 5, statements


class TestTemplateScans:
    async def test_a_list_of_1000_items_scans_its_template_once(
        self, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        template_id = await create_template(client, "Hi ((name)) " + "x" * 99_000, subject="For ((name))")
        scanned: list[str] = []
        parse = templating.parse
        monkeypatch.setattr(templating, "parse", lambda text: scanned.append(text) or parse(text))
        item = {"to": "x", "template_id": template_id, "personalization": {"name": "Ada"}}
        response = await client.post(MULTIPLE, json=[item] * 1000)
        assert response.status_code == 201
        assert len(scanned) == 2, "subject and content, once per request, not once per item"
        assert response.json()[999]["subject"] == "For Ada"
