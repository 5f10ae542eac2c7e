"""The bounded, timed queue in front of the process pool: 503 busy with Retry-After when it is full or slow."""

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from fastapi1.additions import compute
from fastapi1.additions.pool import RUNNING_PER_WORKER, ComputePool
from fastapi1.errors import Overloaded
from tests.additions.slow import Gate, gated_add_pairs

BUSY = "Server busy, try again shortly."


@pytest.fixture
async def one_worker_pool() -> AsyncIterator[ComputePool]:
    """A one-worker pool (RUNNING_PER_WORKER requests at once), one request may wait, for 0.5 s at most."""
    pool = ComputePool(1, queue_max=1, queue_timeout_s=0.5)
    await pool.warm_up()
    yield pool
    await asyncio.to_thread(pool.shutdown)


class TestComputeQueue:
    async def test_a_request_beyond_the_queue_is_refused_at_once_and_a_waiting_one_after_its_timeout(
        self, one_worker_pool: ComputePool
    ) -> None:
        pool = one_worker_pool
        async with Gate() as gate:
            held = [
                asyncio.create_task(pool.map_chunks(partial(gated_add_pairs, gate.address), [index], [1]))
                for index in range(RUNNING_PER_WORKER)
            ]
            await gate.arrival()  # the first one computes; the other holds the second slot
            await asyncio.sleep(0)
            waiting = asyncio.create_task(pool.map_chunks(compute.add_pairs, [1], [2]))
            await asyncio.sleep(0.05)
            assert pool.waiting == 1
            with pytest.raises(Overloaded) as refused:
                await pool.map_chunks(compute.add_pairs, [1], [2])
            assert (refused.value.status_code, refused.value.headers) == (503, {"Retry-After": "1"})
            assert not waiting.done()
            with pytest.raises(Overloaded, match=BUSY):
                await asyncio.wait_for(waiting, timeout=20)
            gate.open()
            results = await asyncio.gather(*held)
        assert [result[0] for result in results] == [[[1]], [[2]]]
        assert pool.waiting == 0
        assert await pool.map_chunks(compute.add_pairs, [1], [2]) == ([[3]], 1, pytest.approx(0, abs=30))

    async def test_a_waiting_request_runs_when_a_slot_frees_in_time(self, one_worker_pool: ComputePool) -> None:
        pool = one_worker_pool
        pool.queue_timeout_s = 30
        async with Gate() as gate:
            held = [
                asyncio.create_task(pool.map_chunks(partial(gated_add_pairs, gate.address), [1], [1]))
                for _ in range(RUNNING_PER_WORKER)
            ]
            await gate.arrival()
            waiting = asyncio.create_task(pool.map_chunks(compute.add_pairs, [20], [22]))
            await asyncio.sleep(0.05)
            gate.open()
            await asyncio.gather(*held)
            sums, _, _ = await asyncio.wait_for(waiting, timeout=20)
        assert sums == [[42]]


class TestComputeQueueOverHttp:
    async def test_add_answers_503_busy_with_retry_after_when_the_queue_is_full(
        self, app: FastAPI, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pool: ComputePool = app.state.compute_pool
        monkeypatch.setattr(pool, "queue_max", 0)
        slots = pool.workers * RUNNING_PER_WORKER
        for _ in range(slots):  # every running slot taken, as by requests in the pool
            await pool.slots.acquire()
        try:
            busy = await client.post("/add", json={"batchid": "queue-full", "payload": [[1, 2]]})
            numbers = await client.post("/add_numbers", json={"numbers": [1, 2]})
        finally:
            for _ in range(slots):
                pool.slots.release()
        for response in (busy, numbers):
            assert (response.status_code, response.json()) == (503, {"detail": BUSY})
            assert response.headers["retry-after"] == "1"
        assert (await client.post("/add", json={"batchid": "queue-free", "payload": [[1, 2]]})).json()["response"] == [
            3
        ]
