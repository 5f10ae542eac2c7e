"""The byte cap on request bodies: refused before parsing, with nothing stored, in one JSON shape."""

import json
from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.config import LIMITS
from fastapi1.models import AddBatch, Notification
from fastapi1.predictions.schemas import (
    AGENT_TYPE_MAX,
    AGENTS_MAX,
    NAME_MAX,
    OBSERVATIONS_MAX,
    PREDICTION_BODY_MAX_BYTES,
)
from fastapi1.types import MODEL_NAME_MAX

HEADERS = {"content-type": "application/json"}
TOO_LARGE = {"detail": f"Request body is larger than {LIMITS.max_body_bytes} bytes"}
CHUNK = 1024 * 1024


async def streamed(prefix: bytes, size: int) -> AsyncIterator[bytes]:
    """A chunked body of ``size`` bytes without a Content-Length: the JSON prefix, then spaces."""
    yield prefix
    sent = len(prefix)
    while sent < size:
        chunk = b" " * min(CHUNK, size - sent)
        sent += len(chunk)
        yield chunk


def assert_too_large(response: Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == TOO_LARGE


async def stored(connection: AsyncConnection) -> tuple[int, int]:
    """Rows in add_batches and notifications visible to the test."""
    batches = (await connection.execute(select(func.count()).select_from(AddBatch))).scalar_one()
    notifications = (await connection.execute(select(func.count()).select_from(Notification))).scalar_one()
    return int(batches), int(notifications)


BODIES = [
    ("/add_numbers", b'{"numbers": [1]}'),
    ("/add", b'{"batchid": "big", "payload": [[1, 2]]}'),
    ("/notifications/v1/multiple", b'[{"to": "x"}]'),
    ("/notifications/v1/", b'{"to": "x"}'),
]


class TestBodyLimit:
    async def test_a_body_over_the_cap_is_413_and_one_at_the_cap_is_parsed(self, client: AsyncClient) -> None:
        over = await client.post("/add_numbers", content=b" " * (LIMITS.max_body_bytes + 1), headers=HEADERS)
        assert over.status_code == 413
        at_cap = b'{"numbers": [1]}'.ljust(LIMITS.max_body_bytes)
        assert (await client.post("/add_numbers", content=at_cap, headers=HEADERS)).status_code == 200

    @pytest.mark.parametrize(("path", "prefix"), BODIES)
    async def test_a_declared_length_over_the_cap_is_413_json(
        self, client: AsyncClient, connection: AsyncConnection, path: str, prefix: bytes
    ) -> None:
        response = await client.post(path, content=prefix.ljust(LIMITS.max_body_bytes + 1), headers=HEADERS)
        assert_too_large(response)
        assert await stored(connection) == (0, 0)

    @pytest.mark.parametrize(("path", "prefix"), BODIES)
    async def test_a_streamed_body_over_the_cap_is_the_same_413_json(
        self, client: AsyncClient, connection: AsyncConnection, path: str, prefix: bytes
    ) -> None:
        response = await client.post(path, content=streamed(prefix, LIMITS.max_body_bytes + 1), headers=HEADERS)
        assert "content-length" not in response.request.headers
        assert_too_large(response)
        assert await stored(connection) == (0, 0)

    async def test_a_streamed_body_at_the_cap_is_parsed(self, client: AsyncClient) -> None:
        response = await client.post(
            "/add_numbers", content=streamed(b'{"numbers": [1]}', LIMITS.max_body_bytes), headers=HEADERS
        )
        assert response.status_code == 200
        assert response.json() == {"sum": 1}


def wide(index: int, characters: int) -> str:
    """A string of characters outside the BMP, 12 bytes each once escaped, distinct for each index."""
    return "".join(chr(0x1F600 + int(digit)) for digit in f"{index:04d}").ljust(characters, "\U0001f600")


def number(index: int) -> str:
    """A number of 17 significant digits at its longest, 24 characters (``-1.2345678901234567e-308``)."""
    return f"-{1 + index % 9}.{index * 7_919_919 % 10**16:016d}e{'+-'[index % 2]}{100 + index % 200:03d}"


def largest_prediction() -> tuple[bytes, dict[str, dict[str, float]]]:
    """The largest valid agents body, as json.dumps lays it out, and its answer (the mock sums each row)."""
    numbers = [number(index) for index in range(OBSERVATIONS_MAX + AGENTS_MAX - 1)]
    values = [float(text) for text in numbers]
    model = '"' + "\\u0041" * MODEL_NAME_MAX + '"'
    rest = f'"agent_type": {json.dumps(wide(0, AGENT_TYPE_MAX))}, "nn_model_name": {model}'
    rows = [range(index, index + OBSERVATIONS_MAX) for index in range(AGENTS_MAX)]
    agents = ", ".join(
        f'{json.dumps(wide(index, NAME_MAX))}: {{"observations": [{", ".join(numbers[i] for i in row)}], {rest}}}'
        for index, row in enumerate(rows)
    )
    head = f'"client_id": {json.dumps(wide(0, NAME_MAX))}, "run_slug": {json.dumps(wide(1, NAME_MAX))}'
    body = f'{{{head}, "observations": {{{agents}}}}}'
    actions = {wide(index, NAME_MAX): {"action": sum(values[i] for i in row)} for index, row in enumerate(rows)}
    return body.encode(), actions


def too_large(cap: int) -> dict[str, str]:
    return {"detail": f"Request body is larger than {cap} bytes"}


class TestPredictionBodyCap:
    async def test_the_largest_valid_prediction_is_the_cap_and_is_answered(self, client: AsyncClient) -> None:
        body, actions = largest_prediction()
        assert len(body) == PREDICTION_BODY_MAX_BYTES > LIMITS.max_body_bytes
        response = await client.post("/predict", content=body, headers=HEADERS)
        assert response.status_code == 200, response.text[:1_000]
        assert response.json()["actions"] == actions

    @pytest.mark.parametrize("path", ["/predict", "/schedule"])
    async def test_a_declared_length_one_byte_over_the_prediction_cap_is_413(
        self, client: AsyncClient, path: str
    ) -> None:
        response = await client.post(path, content=b" " * (PREDICTION_BODY_MAX_BYTES + 1), headers=HEADERS)
        assert response.status_code == 413
        assert response.json() == too_large(PREDICTION_BODY_MAX_BYTES)

    async def test_a_streamed_prediction_over_its_cap_is_413(self, client: AsyncClient) -> None:
        response = await client.post(
            "/schedule", content=streamed(b'{"input": "x"}', PREDICTION_BODY_MAX_BYTES + 1), headers=HEADERS
        )
        assert response.status_code == 413
        assert response.json() == too_large(PREDICTION_BODY_MAX_BYTES)

    async def test_a_prediction_over_the_other_routes_cap_is_read(self, client: AsyncClient) -> None:
        response = await client.post(
            "/predict", content=b'{"input": "x"}'.ljust(LIMITS.max_body_bytes + 1), headers=HEADERS
        )
        assert response.status_code == 200, response.text
