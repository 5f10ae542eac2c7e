"""Every JSON-body route reads its body the same way: content type, encodings, nesting, errors."""

import codecs
import json
import logging
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Body, FastAPI
from httpx import AsyncClient
from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import Message

from fastapi1.bodies import JsonBodyRoute, parse_json_body
from fastapi1.errors import BodyValidationError
from fastapi1.models import AddBatch, Notification, Prediction, Service, Template

JSON = {"content-type": "application/json"}
KEYS = [f"k{index}" for index in range(100)]


def valid_bodies(service_id: str) -> dict[str, Any]:
    """A valid body for each route that takes one (a new batch id and service name each time)."""
    return {
        "/notifications/v1/": {"to": "x"},
        "/notifications/v1/multiple": [{"to": "x"}, {"to": "y"}],
        "/services/v1/": {"name": "another service"},
        f"/services/v1/{service_id}/templates": {"name": "t", "content": "Hello ((name))"},
        "/add": {"batchid": "b1", "payload": [[1, 2]]},
        "/process_batch": {"batchid": "b2", "payload": [[1, 2]]},
        "/add_numbers": {"numbers": [1, 2]},
    }


ROUTES = [
    "/notifications/v1/",
    "/notifications/v1/multiple",
    "/services/v1/",
    "/services/v1/{service_id}/templates",
    "/add",
    "/process_batch",
    "/add_numbers",
]


@pytest.fixture
async def service_id(client: AsyncClient) -> str:
    response = await client.post("/services/v1/", json={"name": "bodies"})
    assert response.status_code == 201
    return str(response.json()["id"])


@pytest.fixture(params=ROUTES)
def route(request: pytest.FixtureRequest, service_id: str) -> tuple[str, Any]:
    """One body route, filled in, with a valid body for it."""
    path = str(request.param).format(service_id=service_id)
    return path, valid_bodies(service_id)[path]


def assert_one_body_error(response: Any, kind: str, loc: list[str | int]) -> None:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert (error["type"], error["loc"]) == (kind, loc)
    assert set(error) == {"type", "loc", "msg"}


class TestContentType:
    @pytest.mark.parametrize(
        "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "json"]
    )
    async def test_a_body_that_is_not_declared_json_is_422_everywhere(
        self, client: AsyncClient, route: tuple[str, Any], content_type: str | None
    ) -> None:
        path, body = route
        headers = {"content-type": content_type} if content_type else {}
        response = await client.post(path, content=json.dumps(body).encode(), headers=headers)
        assert_one_body_error(response, "content_type", ["header", "content-type"])

    @pytest.mark.parametrize(
        "content_type", ["application/json", "Application/JSON; charset=utf-8", "application/vnd.fastapi1+json"]
    )
    async def test_json_and_json_suffixed_types_are_accepted_everywhere(
        self, client: AsyncClient, route: tuple[str, Any], content_type: str
    ) -> None:
        path, body = route
        response = await client.post(path, content=json.dumps(body).encode(), headers={"content-type": content_type})
        assert response.status_code in {200, 201}, response.text


class TestEncodings:
    @pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
    async def test_utf8_with_a_bom_utf16_and_utf32_are_accepted_everywhere(
        self, client: AsyncClient, route: tuple[str, Any], encoding: str
    ) -> None:
        path, body = route
        response = await client.post(path, content=json.dumps(body).encode(encoding), headers=JSON)
        assert response.status_code in {200, 201}, response.text

    @pytest.mark.parametrize(
        "content",
        [
            b'{"to": "\xff"}',
            b'[{"to": "\xc3"}]',
            b'{"name": "\xed\xa0\x80"}',
            codecs.BOM_UTF16_LE + b"{\x00\x00\xd8",
        ],
    )
    async def test_bytes_that_do_not_decode_are_422_not_400_everywhere(
        self, client: AsyncClient, route: tuple[str, Any], content: bytes
    ) -> None:
        response = await client.post(route[0], content=content, headers=JSON)
        assert_one_body_error(response, "json_invalid", ["body"])


class TestSyntax:
    @pytest.mark.parametrize("content", [b"not json", b'{"to": ', b"{'to': 'x'}", b"[1, 2,]", b'{"a": 1} x'])
    async def test_a_body_that_is_not_json_is_422_in_one_shape_everywhere(
        self, client: AsyncClient, route: tuple[str, Any], content: bytes
    ) -> None:
        response = await client.post(route[0], content=content, headers=JSON)
        assert_one_body_error(response, "json_invalid", ["body"])
        assert response.json()["detail"][0]["msg"].startswith("Invalid JSON: ")

    async def test_an_empty_body_is_422_field_required_everywhere(
        self, client: AsyncClient, route: tuple[str, Any]
    ) -> None:
        response = await client.post(route[0], content=b"", headers=JSON)
        assert_one_body_error(response, "missing", ["body"])

    @pytest.mark.parametrize("depth", [250, 5_000, 100_000])
    async def test_deep_nesting_is_422_not_400_everywhere(
        self, client: AsyncClient, route: tuple[str, Any], depth: int
    ) -> None:
        response = await client.post(route[0], content=b"[" * depth + b"]" * depth, headers=JSON)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][0] == "body"

    async def test_a_lone_surrogate_in_a_list_item_is_422_naming_the_item_and_field(self, client: AsyncClient) -> None:
        response = await client.post(
            "/notifications/v1/multiple", content=b'[{"to": "x"}, {"to": "\\ud800"}]', headers=JSON
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", 1, "to"]


class TestErrorCount:
    @pytest.mark.parametrize(
        ("path", "body", "errors"),
        [
            ("/notifications/v1/multiple", [{"to": "x", "personalization": dict.fromkeys(KEYS, 1)}] * 1_000, 100_000),
            ("/add_numbers", {"numbers": ["x"] * 100_000}, 100_000),
            ("/add", {"batchid": "b", "payload": [[True, None]] * 50_000}, 100_000),
        ],
    )
    async def test_a_body_with_many_errors_gets_the_first_20_and_a_count_of_the_rest(
        self, client: AsyncClient, path: str, body: Any, errors: int
    ) -> None:
        response = await client.post(path, json=body)
        assert response.status_code == 422
        assert len(response.content) < 5_000
        detail = response.json()["detail"]
        assert len(detail) == 21
        assert detail[-1] == {"type": "too_many_errors", "loc": ["body"], "msg": f"{errors - 20} more errors not shown"}

    async def test_twenty_errors_are_all_shown_without_a_count(self, client: AsyncClient) -> None:
        response = await client.post("/add_numbers", json={"numbers": ["x"] * 20})
        detail = response.json()["detail"]
        assert [error["loc"] for error in detail] == [["body", "numbers", index] for index in range(20)]


class TestClientGoneMidBody:
    @pytest.mark.parametrize("path", ["/add", "/notifications/v1/multiple", "/predict"])
    async def test_a_client_that_leaves_during_its_body_is_a_499_without_a_traceback(
        self, app: FastAPI, path: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        incoming = iter(
            [{"type": "http.request", "body": b'{"batchid": "x", "pay', "more_body": True}, {"type": "http.disconnect"}]
        )
        sent: list[Message] = []

        async def receive() -> Message:
            return next(incoming, {"type": "http.disconnect"})

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "app": app,
        }
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            await app(scope, receive, send)
        assert sent[0]["status"] == 499
        assert not [record for record in caplog.records if record.exc_info], caplog.text


def repeating_first_key(item: dict[str, Any]) -> str:
    """An object's JSON with its first key written twice, with the same value (so that it validates)."""
    key, value = next(iter(item.items()))
    return "{" + f"{json.dumps(key)}: {json.dumps(value)}, " + json.dumps(item)[1:]


def repeating_a_key(body: Any) -> tuple[bytes, list[str | int], str]:
    """A body's JSON with a key written twice (in the second item of a list), where it is and the key."""
    if isinstance(body, list):
        items = [json.dumps(item) for item in body]
        items[1] = repeating_first_key(body[1])
        return ("[" + ", ".join(items) + "]").encode(), ["body", 1], next(iter(body[1]))
    return repeating_first_key(body).encode(), ["body"], next(iter(body))


async def stored(connection: AsyncConnection) -> list[int]:
    """Rows of every table a body route writes to, as the test sees them."""
    tables = [Service, Template, Notification, AddBatch, Prediction]
    return [int((await connection.execute(select(func.count()).select_from(table))).scalar_one()) for table in tables]


def agents(observations: str) -> bytes:
    return b'{"client_id": "c", "run_slug": "0", "observations": {%s}}' % observations.encode()


AGENT = '{"observations": [1.5], "nn_model_name": "m"}'
REPEATED_IN_PREDICTIONS = {
    "an agent name": (agents(f'"a": {AGENT}, "a": {AGENT}'), ["body", "observations"], "a"),
    "a key of an agent": (
        agents('"a": {"observations": [1], "nn_model_name": "m", "nn_model_name": "m"}'),
        ["body", "observations", "a"],
        "nn_model_name",
    ),
    "a key of the body": (b'{"run_slug": "0", ' + agents(f'"a": {AGENT}')[1:], ["body"], "run_slug"),
    "the input": (b'{"input": "a", "input": "b"}', ["body"], "input"),
}


class TestDuplicateKeys:
    async def test_an_object_that_repeats_a_key_is_422_naming_it_and_nothing_is_stored_everywhere(
        self, client: AsyncClient, connection: AsyncConnection, route: tuple[str, Any]
    ) -> None:
        path, body = route
        content, loc, key = repeating_a_key(body)
        before = await stored(connection)
        response = await client.post(path, content=content, headers=JSON)
        assert response.status_code == 422, response.text
        assert response.json() == {"detail": [{"type": "duplicate_key", "loc": loc, "msg": f"Duplicate key '{key}'"}]}
        assert await stored(connection) == before

    @pytest.mark.parametrize("path", ["/predict", "/schedule"])
    @pytest.mark.parametrize(("content", "loc", "key"), REPEATED_IN_PREDICTIONS.values(), ids=REPEATED_IN_PREDICTIONS)
    async def test_a_prediction_that_repeats_a_key_is_422_naming_it_and_no_job_is_stored(
        self, client: AsyncClient, connection: AsyncConnection, path: str, content: bytes, loc: list[str], key: str
    ) -> None:
        before = await stored(connection)
        response = await client.post(path, content=content, headers=JSON | {"Async-Mode": "true"})
        assert response.status_code == 422, response.text
        assert response.json() == {"detail": [{"type": "duplicate_key", "loc": loc, "msg": f"Duplicate key '{key}'"}]}
        assert await stored(connection) == before

    async def test_an_item_whose_first_to_is_invalid_and_last_valid_is_refused(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        content = b'[{"to": "x"}, {"to": 5, "to": "y"}]'
        response = await client.post("/notifications/v1/multiple", content=content, headers=JSON)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", 1]
        assert await stored(connection) == [0, 0, 0, 0, 0]

    @pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
    async def test_a_repeated_key_is_found_in_any_encoding(self, client: AsyncClient, encoding: str) -> None:
        content = '{"to": "x", "t\\u006f": "y"}'.encode(encoding)
        response = await client.post("/notifications/v1/", content=content, headers=JSON)
        assert response.json()["detail"] == [{"type": "duplicate_key", "loc": ["body"], "msg": "Duplicate key 'to'"}]

    def test_it_is_the_body_error_every_body_error_is(self) -> None:
        # So that whatever renders body errors (the 422 here, /v2's 400 ValidationError later) renders it too.
        with pytest.raises(BodyValidationError) as raised:
            parse_json_body(TypeAdapter(dict[str, int]), b'{"a": 1, "a": 2}')
        assert raised.value.errors() == [{"type": "duplicate_key", "loc": ("body",), "msg": "Duplicate key 'a'"}]


class TestOneWholeBody:
    def test_a_route_with_an_embedded_body_is_refused_when_it_is_declared(self) -> None:
        router = APIRouter(route_class=JsonBodyRoute)

        async def embedded(name: Annotated[str, Body(embed=True)]) -> None:
            """A route JsonBodyRoute cannot serve."""

        with pytest.raises(TypeError, match="one whole body"):
            router.add_api_route("/embedded", embedded, methods=["POST"])
