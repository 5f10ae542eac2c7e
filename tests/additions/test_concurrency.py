"""Concurrent requests with the same new batch id, on real (committing) transactions."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select

from fastapi1.additions import dao
from fastapi1.app import create_app
from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.models import AddBatch, AddPair, AddSum
from tests.statements import recorded_statements


@pytest.fixture(scope="module")
async def committing_app(settings: Settings, own_database_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(settings.model_copy(update={"database_url": own_database_url}))
    async with app.router.lifespan_context(app):
        yield app


async def rows_of(app: FastAPI, batch_id: str) -> tuple[int, int, int]:
    database: Database = app.state.database
    counts = []
    async with database.write_engine.connect() as connection:
        for table in (AddBatch, AddPair, AddSum):
            query = select(func.count()).select_from(table).where(table.batch_id == batch_id)
            counts.append(int((await connection.execute(query)).scalar_one()))
    return counts[0], counts[1], counts[2]


@pytest.fixture
def both_at_the_insert(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold each /add at the batch insert until two requests are there, so they truly overlap."""
    barrier = asyncio.Barrier(2)
    insert_batch = dao.insert_batch

    async def insert_when_both_arrived(*args: Any, **kwargs: Any) -> bool:
        # Run one after the other, the first would wait here alone and fail the test.
        async with asyncio.timeout(10):
            await barrier.wait()
        return await insert_batch(*args, **kwargs)

    monkeypatch.setattr(dao, "insert_batch", insert_when_both_arrived)


@pytest.mark.usefixtures("both_at_the_insert")
class TestConcurrentSameBatchId:
    async def test_same_payload_twice_at_once_stores_one_batch_and_answers_the_same(
        self, committing_app: FastAPI
    ) -> None:
        request = {"batchid": "race-same", "payload": [[index, 1] for index in range(5_000)]}
        async with AsyncClient(transport=ASGITransport(app=committing_app), base_url="http://t") as http:
            first, second = await asyncio.gather(http.post("/add", json=request), http.post("/add", json=request))
        assert (first.status_code, second.status_code) == (200, 200)
        assert first.json() == second.json()
        assert await rows_of(committing_app, "race-same") == (1, 5_000, 5_000)

    async def test_different_payloads_at_once_give_one_200_and_one_409(self, committing_app: FastAPI) -> None:
        async with AsyncClient(transport=ASGITransport(app=committing_app), base_url="http://t") as http:
            responses = await asyncio.gather(
                http.post("/add", json={"batchid": "race-diff", "payload": [[1, 1]] * 3_000}),
                http.post("/add", json={"batchid": "race-diff", "payload": [[2, 2]] * 3_000}),
            )
        assert sorted(response.status_code for response in responses) == [200, 409]
        winner = next(response for response in responses if response.status_code == 200)
        async with AsyncClient(transport=ASGITransport(app=committing_app), base_url="http://t") as http:
            assert (await http.get("/add/race-diff")).json() == winner.json()
        assert await rows_of(committing_app, "race-diff") == (1, 3_000, 3_000)


class TestRoundTrips:
    async def test_a_batch_of_100000_costs_the_same_statements_as_a_batch_of_one(self, committing_app: FastAPI) -> None:
        counts = []
        async with AsyncClient(transport=ASGITransport(app=committing_app), base_url="http://t") as http:
            for size in (1, 100_000):
                with recorded_statements(committing_app) as statements:
                    response = await http.post("/add", json={"batchid": f"size-{size}", "payload": [[1, 2]] * size})
                assert response.status_code == 200
                counts.append(len(statements))
        assert counts[0] == counts[1]
        assert counts[0] <= 3, statements
