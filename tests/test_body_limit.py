"""The byte cap on request bodies: refused before parsing, with nothing stored, in one JSON shape."""

from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.config import LIMITS
from fastapi1.models import AddBatch, Notification

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
