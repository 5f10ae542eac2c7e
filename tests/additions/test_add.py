"""POST /add and /process_batch, GET /add/{batchid}: results, limits, idempotency."""

import logging
import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.models import AddBatch, AddPair, AddSum
from tests.timestamps import assert_utc_timestamp

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


async def stored_rows(connection: AsyncConnection) -> tuple[int, int, int]:
    """Rows in add_batches, add_pairs and add_sums visible to the test."""
    counts = []
    for table in (AddBatch, AddPair, AddSum):
        counts.append(int((await connection.execute(select(func.count()).select_from(table))).scalar_one()))
    return counts[0], counts[1], counts[2]


def new_id() -> str:
    return uuid.uuid4().hex


class TestAdd:
    async def test_the_original_example(self, client: AsyncClient) -> None:
        response = await client.post("/add", json={"batchid": "id0101", "payload": [[1, 2], [3, 4]]})
        assert response.status_code == 200
        body = response.json()
        assert (body["batchid"], body["response"], body["status"]) == ("id0101", [3, 7], "complete")
        assert assert_utc_timestamp(body["started_at"]) <= assert_utc_timestamp(body["completed_at"])

    async def test_process_batch_is_the_same_operation(self, client: AsyncClient) -> None:
        response = await client.post("/process_batch", json={"batchid": "pb", "payload": [[1, 2], [3, 4], [5, 6]]})
        assert response.status_code == 200
        assert response.json()["response"] == [3, 7, 11]
        assert (await client.get("/add/pb")).json() == response.json()

    async def test_sums_beyond_64_bits_are_exact(self, client: AsyncClient) -> None:
        payload = [[INT64_MAX, INT64_MAX], [INT64_MIN, INT64_MIN], [INT64_MIN, INT64_MAX]]
        response = await client.post("/add", json={"batchid": new_id(), "payload": payload})
        assert response.status_code == 200
        assert response.json()["response"] == [2 * INT64_MAX, 2 * INT64_MIN, -1]
        stored = await client.get(f"/add/{response.json()['batchid']}")
        assert stored.json()["response"] == [2 * INT64_MAX, 2 * INT64_MIN, -1]

    async def test_100000_pairs_are_added_in_order_and_stored(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        payload = [[index, -2 * index] for index in range(100_000)]
        response = await client.post("/add", json={"batchid": "big", "payload": payload})
        assert response.status_code == 200
        assert response.json()["response"] == [-index for index in range(100_000)]
        assert await stored_rows(connection) == (1, 100_000, 100_000)

    async def test_the_batch_and_its_pairs_and_sums_are_stored(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        await client.post("/add", json={"batchid": "stored", "payload": [[1, 2], [3, 4]]})
        assert await stored_rows(connection) == (1, 2, 2)


class TestEmptyPayload:
    @pytest.mark.parametrize("route", ["/add", "/process_batch"])
    async def test_an_empty_payload_is_a_batch_with_an_empty_response(
        self, client: AsyncClient, connection: AsyncConnection, route: str
    ) -> None:
        response = await client.post(route, json={"batchid": "empty", "payload": []})
        assert response.status_code == 200
        body = response.json()
        assert (body["batchid"], body["response"], body["status"]) == ("empty", [], "complete")
        assert await stored_rows(connection) == (1, 0, 0)
        assert (await client.get("/add/empty")).json() == body

    async def test_an_empty_batch_replays_and_conflicts_like_any_other(self, client: AsyncClient) -> None:
        first = await client.post("/add", json={"batchid": "empty", "payload": []})
        replayed = await client.post("/add", json={"batchid": "empty", "payload": []})
        assert (replayed.status_code, replayed.json()) == (200, first.json())
        assert (await client.post("/add", json={"batchid": "empty", "payload": [[1, 2]]})).status_code == 409
        await client.post("/add", json={"batchid": "full", "payload": [[1, 2]]})
        assert (await client.post("/add", json={"batchid": "full", "payload": []})).status_code == 409


class TestLog:
    """The log says what happened to the batch: stored, replayed or refused."""

    @staticmethod
    def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
        return [record.getMessage() for record in caplog.records if record.name == "fastapi1.additions.controller"]

    async def test_a_new_batch_is_logged_as_stored_with_its_pairs(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            await client.post("/add", json={"batchid": "logged", "payload": [[1, 2], [3, 4]]})
        (message,) = self.messages(caplog)
        assert message.startswith("Batch logged stored: 2 pairs added in 1 chunks")

    async def test_a_replay_is_logged_as_a_replay_and_not_as_pairs_added(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        await client.post("/add", json={"batchid": "logged", "payload": [[1, 2]]})
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            await client.post("/add", json={"batchid": "logged", "payload": [[1, 2]]})
        (message,) = self.messages(caplog)
        assert message.startswith("Batch logged replayed from storage")

    async def test_a_conflict_is_logged_as_refused_and_not_as_pairs_added(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        await client.post("/add", json={"batchid": "logged", "payload": [[1, 2]]})
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            await client.post("/add", json={"batchid": "logged", "payload": [[5, 6]]})
        (message,) = self.messages(caplog)
        assert message == "Batch logged refused: already stored with a different payload"


class TestLimits:
    @pytest.mark.parametrize("batchid", ["a", "x" * 64, "Az09._:-"])
    async def test_valid_batch_ids_are_accepted(self, client: AsyncClient, batchid: str) -> None:
        assert (await client.post("/add", json={"batchid": batchid, "payload": [[1, 1]]})).status_code == 200

    @pytest.mark.parametrize("batchid", ["", "x" * 65, "has space", "slash/", "ü", None, 5])
    async def test_invalid_batch_ids_are_422(
        self, client: AsyncClient, connection: AsyncConnection, batchid: object
    ) -> None:
        response = await client.post("/add", json={"batchid": batchid, "payload": [[1, 1]]})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "batchid"]
        assert await stored_rows(connection) == (0, 0, 0)

    @pytest.mark.parametrize(
        "payload",
        [
            [[1]],
            [[1, 2, 3]],
            [[]],
            [[1.0, 2]],
            [[1.5, 2]],
            [[True, 2]],
            [[1, False]],
            [["1", 2]],
            [[None, 2]],
            [[INT64_MAX + 1, 0]],
            [[0, INT64_MIN - 1]],
            [1, 2],
            [{"a": 1, "b": 2}],
            ["12"],
            [None],
            {"0": [1, 2]},
            "[[1, 2]]",
            None,
        ],
    )
    async def test_malformed_payloads_are_422_and_store_nothing(
        self, client: AsyncClient, connection: AsyncConnection, payload: object
    ) -> None:
        response = await client.post("/add", json={"batchid": new_id(), "payload": payload})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][:2] == ["body", "payload"]
        assert await stored_rows(connection) == (0, 0, 0)

    async def test_more_than_100000_pairs_is_422(self, client: AsyncClient) -> None:
        response = await client.post("/add", json={"batchid": new_id(), "payload": [[1, 1]] * 100_001})
        assert response.status_code == 422
        assert len(response.content) < 500

    @pytest.mark.parametrize(
        "body", [{"payload": [[1, 2]]}, {"batchid": "x"}, {"batchid": "x", "payload": [[1, 2]], "y": 1}]
    )
    async def test_missing_or_unknown_fields_are_422(self, client: AsyncClient, body: dict[str, Any]) -> None:
        assert (await client.post("/add", json=body)).status_code == 422

    async def test_a_body_that_is_not_json_is_422(self, client: AsyncClient) -> None:
        response = await client.post("/add", content=b"batchid=1", headers={"content-type": "application/json"})
        assert response.status_code == 422


class TestIdempotency:
    async def test_a_replay_returns_the_stored_response_unchanged(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        request = {"batchid": "replay", "payload": [[1, 2], [3, 4]]}
        first = await client.post("/add", json=request)
        second = await client.post("/process_batch", json=request)
        assert second.status_code == 200
        assert second.json() == first.json()
        assert await stored_rows(connection) == (1, 2, 2)

    @pytest.mark.parametrize("payload", [[[1, 2], [3, 5]], [[1, 2]], [[1, 2], [3, 4], [5, 6]], [[3, 4], [1, 2]]])
    async def test_the_same_id_with_another_payload_is_409_and_changes_nothing(
        self, client: AsyncClient, connection: AsyncConnection, payload: list[list[int]]
    ) -> None:
        first = await client.post("/add", json={"batchid": "taken", "payload": [[1, 2], [3, 4]]})
        response = await client.post("/add", json={"batchid": "taken", "payload": payload})
        assert response.status_code == 409
        assert response.json() == {"detail": "Batch taken already exists with a different payload"}
        assert (await client.get("/add/taken")).json() == first.json()
        assert await stored_rows(connection) == (1, 2, 2)


class TestGetBatch:
    async def test_an_unknown_batch_is_404(self, client: AsyncClient) -> None:
        response = await client.get("/add/nothing-here")
        assert response.status_code == 404
        assert response.json() == {"detail": "Batch nothing-here not found"}

    @pytest.mark.parametrize("batchid", ["x" * 65, "bad!", "sp%20ace"])
    async def test_an_invalid_batch_id_is_422(self, client: AsyncClient, batchid: str) -> None:
        assert (await client.get(f"/add/{batchid}")).status_code == 422


int64 = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
pairs = st.lists(st.tuples(int64, int64).map(list), min_size=1, max_size=60)
malformed_pair = st.one_of(
    st.lists(int64, max_size=5).filter(lambda pair: len(pair) != 2),
    st.tuples(st.floats(allow_nan=False, allow_infinity=False), int64).map(list),
    st.tuples(int64, st.booleans()).map(list),
    st.tuples(st.text(max_size=5), int64).map(list),
    st.tuples(st.none(), int64).map(list),
    st.tuples(st.integers(min_value=INT64_MAX + 1) | st.integers(max_value=INT64_MIN - 1), int64).map(list),
    int64,
    st.none(),
    st.text(max_size=5),
    st.dictionaries(st.text(max_size=3), int64, max_size=2),
)


class TestProperties:
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(payload=pairs)
    async def test_any_valid_pairs_give_the_element_wise_sums_in_order(
        self, client: AsyncClient, payload: list[list[int]]
    ) -> None:
        response = await client.post("/add", json={"batchid": new_id(), "payload": payload})
        assert response.status_code == 200
        assert response.json()["response"] == [left + right for left, right in payload]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(payload=pairs, bad=malformed_pair, data=st.data())
    async def test_any_malformed_item_is_422_and_stores_nothing(
        self, client: AsyncClient, connection: AsyncConnection, payload: list[Any], bad: object, data: st.DataObject
    ) -> None:
        payload.insert(data.draw(st.integers(0, len(payload))), bad)
        response = await client.post("/add", json={"batchid": new_id(), "payload": payload})
        assert response.status_code == 422
        assert await stored_rows(connection) == (0, 0, 0)
