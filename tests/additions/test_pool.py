"""The process pool: chunking, a free event loop, and recovery when a worker dies."""

import asyncio
import os
import signal
import time

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from fastapi1.additions import compute
from fastapi1.additions.pool import MIN_CHUNK, ComputePool
from tests.additions.slow import slow_add_pairs


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
    async def test_heartbeats_answer_while_100000_pairs_are_added(self, client: AsyncClient) -> None:
        payload = [[index, index] for index in range(100_000)]
        addition = asyncio.create_task(client.post("/add", json={"batchid": "busy", "payload": payload}))
        started = time.perf_counter()
        latencies = []
        while not addition.done():
            sent = time.perf_counter()
            assert (await client.get("/status/heartbeat")).status_code == 204
            latencies.append(time.perf_counter() - sent)
            await asyncio.sleep(0.005)
        response = await addition
        total = time.perf_counter() - started
        assert response.status_code == 200
        assert len(latencies) >= 3, "heartbeats must be served while the batch is in progress"
        assert max(latencies) < total / 2, (max(latencies), total)


class TestWorkerDeath:
    async def test_a_killed_worker_fails_its_request_with_400_and_the_pool_recovers(
        self, app: FastAPI, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pool: ComputePool = app.state.compute_pool
        monkeypatch.setattr(compute, "add_pairs", slow_add_pairs)
        request = asyncio.create_task(client.post("/add", json={"batchid": "doomed", "payload": [[1, 2]]}))
        await asyncio.sleep(0.5)  # the request's chunk is now sleeping in a worker
        victim = next(iter(pool.executor._processes))
        os.kill(victim, signal.SIGKILL)
        response = await asyncio.wait_for(request, timeout=20)
        assert response.status_code == 400
        assert response.json() == {"detail": "Processing failed: a worker process died; the request can be retried"}
        assert (await client.get("/add/doomed")).status_code == 404

        monkeypatch.undo()
        retried = await client.post("/add", json={"batchid": "doomed", "payload": [[1, 2]]})
        assert retried.status_code == 200
        assert retried.json()["response"] == [3]

    async def test_a_worker_that_died_between_requests_costs_one_400_at_most(
        self, app: FastAPI, client: AsyncClient
    ) -> None:
        pool: ComputePool = app.state.compute_pool
        await pool.warm_up()
        os.kill(next(iter(pool.executor._processes)), signal.SIGKILL)
        await asyncio.sleep(0.2)
        statuses = [(await client.post("/add_numbers", json={"numbers": [1, 2]})).status_code for _ in range(3)]
        assert statuses[-1] == 200
        assert statuses.count(400) <= 1
