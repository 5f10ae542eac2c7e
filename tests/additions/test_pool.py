"""The process pool: chunking, a free event loop, and recovery when a worker dies."""

import asyncio
import os
import signal
from functools import partial
from multiprocessing.connection import wait

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from fastapi1.additions import compute
from fastapi1.additions.pool import MIN_CHUNK, ComputePool
from tests.additions.slow import Gate, gated_add_pairs
from tests.scrapes import sample

TASKS = "fastapi1_compute_tasks_total"


class TestChunking:
    @pytest.mark.parametrize("size", [1, 2, MIN_CHUNK, MIN_CHUNK + 1, 9_999, 100_000])
    @pytest.mark.parametrize("workers", [1, 2, 8])
    def test_chunks_cover_every_item_once_in_a_few_trips_per_worker(self, size: int, workers: int) -> None:
        pool = ComputePool.__new__(ComputePool)
        pool.workers = workers
        bounds = pool.chunk_bounds(size)
        assert [index for start, stop in bounds for index in range(start, stop)] == list(range(size))
        assert len(bounds) <= 2 * workers
        assert all(stop - start >= min(size, MIN_CHUNK) // 2 for start, stop in bounds)

    def test_small_payloads_are_one_trip(self) -> None:
        pool = ComputePool.__new__(ComputePool)
        pool.workers = 8
        assert pool.chunk_bounds(2) == [(0, 2)]


class TestEventLoopStaysFree:
    async def test_heartbeats_answer_while_100000_pairs_are_held_in_the_pool(
        self, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        payload = [[index, index] for index in range(100_000)]
        async with Gate() as gate:
            monkeypatch.setattr(compute, "add_pairs", partial(gated_add_pairs, gate.address))
            addition = asyncio.create_task(client.post("/add", json={"batchid": "busy", "payload": payload}))
            await gate.arrival()
            # A chunk now waits in a worker until the gate opens: the loop must serve meanwhile.
            for _ in range(3):
                assert (await client.get("/status/heartbeat")).status_code == 204
            assert not addition.done()
            gate.open()
            response = await asyncio.wait_for(addition, timeout=20)
        assert response.status_code == 200
        assert response.json()["response"] == [2 * index for index in range(100_000)]


class TestWorkerDeath:
    async def test_a_killed_worker_fails_its_request_with_400_and_the_pool_recovers(
        self, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ok, failed = sample(TASKS, outcome="ok"), sample(TASKS, outcome="failed")
        async with Gate() as gate:
            monkeypatch.setattr(compute, "add_pairs", partial(gated_add_pairs, gate.address))
            request = asyncio.create_task(client.post("/add", json={"batchid": "doomed", "payload": [[1, 2]]}))
            os.kill(await gate.arrival(), signal.SIGKILL)
            response = await asyncio.wait_for(request, timeout=20)
        assert response.status_code == 400
        assert response.json() == {"detail": "Processing failed: a worker process died; the request can be retried"}
        assert (await client.get("/add/doomed")).status_code == 404

        monkeypatch.undo()
        retried = await client.post("/add", json={"batchid": "doomed", "payload": [[1, 2]]})
        assert retried.status_code == 200
        assert retried.json()["response"] == [3]
        assert (sample(TASKS, outcome="ok"), sample(TASKS, outcome="failed")) == (ok + 1, failed + 1)

    async def test_a_worker_that_died_between_requests_costs_one_400_at_most(
        self, app: FastAPI, client: AsyncClient
    ) -> None:
        pool: ComputePool = app.state.compute_pool
        await pool.warm_up()
        victim = next(iter(pool.executor._processes.values()))
        os.kill(victim.pid, signal.SIGKILL)
        # The sentinel is how the executor itself learns of the death.
        assert await asyncio.to_thread(wait, [victim.sentinel], 20)
        statuses = [(await client.post("/add_numbers", json={"numbers": [1, 2]})).status_code for _ in range(3)]
        assert statuses[-1] == 200
        assert statuses.count(400) <= 1
