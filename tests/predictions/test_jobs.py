"""Async prediction jobs: 202 and Location, 400 while pending, the worker's relay, restarts, leases."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text

from fastapi1.config import DeliverySettings, Settings
from fastapi1.db.engine import Database
from fastapi1.predictions.controller import Gateway
from fastapi1.predictions.jobs import JobRelay
from fastapi1.worker.main import predict_until_stopped
from tests.delivery.conftest import wait_until
from tests.predictions.support import ASYNC, RecordingBackend, agents_body, batcher_over, count, finished, jobs, submit

AGENTS = agents_body({"b": ([0.1, 0.2], "lr", "foundation-v1"), "a": ([1.0, 2.0, 3.0], None, "other")})
TEXT = {"input": "some text"}


def worker_settings(**overrides: Any) -> DeliverySettings:
    """Worker settings for tests: a poll slow enough that NOTIFY must do the waking."""
    values: dict[str, Any] = {"prediction_poll_interval_s": 30.0, "delivery_shutdown_timeout_s": 5.0}
    return DeliverySettings(**(values | overrides))


@contextlib.asynccontextmanager
async def running_relay(
    url: str, settings: Settings, backend: RecordingBackend, max_wait_s: float = 0.001, **overrides: Any
) -> AsyncIterator[JobRelay]:
    """A prediction relay with its listener and its own batcher, as a worker runs them, stopped on exit."""
    database = Database.connect(url, None, settings)
    policy = {
        "max_size": overrides.pop("max_size", 64),
        "max_queue": overrides.pop("max_queue", 100_000),
        "max_concurrency": overrides.pop("max_concurrency", 64),
    }
    async with batcher_over(backend, max_wait_s=max_wait_s, **policy) as batcher:
        relay = JobRelay(database, worker_settings(**overrides), Gateway(batcher, "text-mock"))
        task = asyncio.create_task(predict_until_stopped(relay, url))
        try:
            yield relay
        finally:
            relay.stop()
            await task
            await database.dispose()


RunRelay = Callable[..., contextlib.AbstractAsyncContextManager[JobRelay]]


@pytest.fixture
def run_relay(jobs_url: str, settings: Settings) -> RunRelay:
    """Start a relay on the test's database: ``async with run_relay(backend, **settings) as relay``."""

    def run(backend: RecordingBackend, **overrides: Any) -> contextlib.AbstractAsyncContextManager[JobRelay]:
        return running_relay(jobs_url, settings, backend, **overrides)

    return run


class TestAccepting:
    @pytest.mark.parametrize(("body", "path"), [(AGENTS, "/predict"), (TEXT, "/predict"), (TEXT, "/schedule")])
    async def test_a_job_is_accepted_then_pending_with_retry_after_then_complete_with_the_sync_body(
        self, api: AsyncClient, run_relay: RunRelay, body: dict[str, Any], path: str
    ) -> None:
        synchronous = (await api.post(path, json=body)).json()
        prediction_id = await submit(api, body, path)
        pending = await api.get(f"/predict/{prediction_id}")
        assert pending.status_code == 400
        assert pending.json() == {"detail": "Prediction is still being processed."}
        assert int(pending.headers["retry-after"]) >= 1
        async with run_relay(RecordingBackend()):
            answer = await finished(api, prediction_id)
        assert set(answer) == {"prediction_id", "status", "output"}
        assert (answer["prediction_id"], answer["status"]) == (prediction_id, "complete")
        output = answer["output"]
        if "observations" in body:
            assert list(output) == ["actions", "response_time"]
            # The agents in the request's order, exactly as the synchronous call lists them.
            assert list(output["actions"].items()) == list(synchronous["actions"].items())
            assert output["actions"] == {"b": {"action": 0.1 + 0.2}, "a": {"action": 6.0}}
            assert 0 < output["response_time"] < 20
        else:
            assert output == synchronous == {"input": "some text", "result": synchronous["result"]}

    @pytest.mark.parametrize("value", ["true", "TRUE", " True "])
    async def test_the_header_value_true_is_case_insensitive(self, api: AsyncClient, value: str) -> None:
        response = await api.post("/predict", json=TEXT, headers={"Async-Mode": value})
        assert response.status_code == 202

    async def test_another_value_answers_synchronously_and_stores_nothing(
        self, api: AsyncClient, database: Database
    ) -> None:
        response = await api.post("/predict", json=TEXT, headers={"Async-Mode": "yes"})
        assert response.status_code == 200
        assert await count(database, "predictions") == 0

    @pytest.mark.parametrize("body", [{"input": ""}, {**AGENTS, "run_slug": ""}, {"observations": {}}])
    async def test_nothing_is_stored_for_a_422(self, api: AsyncClient, database: Database, body: Any) -> None:
        response = await api.post("/predict", json=body, headers=ASYNC)
        assert response.status_code == 422
        assert (await count(database, "predictions"), await count(database, "prediction_agents")) == (0, 0)

    async def test_the_agents_are_stored_one_row_each_with_their_observations(
        self, api: AsyncClient, database: Database
    ) -> None:
        prediction_id = await submit(api, AGENTS)
        query = "SELECT position, name, observations, agent_type, nn_model_name, action FROM prediction_agents"
        async with database.write_engine.connect() as connection:
            rows = [tuple(row) for row in await connection.execute(text(f"{query} ORDER BY position"))]
        assert rows == [
            (1, "b", [0.1, 0.2], "lr", "foundation-v1", None),
            (2, "a", [1.0, 2.0, 3.0], None, "other", None),
        ]
        assert (await jobs(database))[prediction_id]["status"] == "pending"


class TestReading:
    async def test_an_unknown_id_is_404(self, client: AsyncClient) -> None:
        response = await client.get(f"/predict/{uuid.uuid4()}")
        assert response.status_code == 404
        assert response.json() == {"detail": "Prediction ID not found."}

    async def test_an_id_that_is_not_a_uuid_is_422(self, client: AsyncClient) -> None:
        response = await client.get("/predict/not-a-uuid")
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["path", "prediction_id"]


class TestSeed002Flow:
    async def test_the_original_clients_async_flow(self, api: AsyncClient, run_relay: RunRelay) -> None:
        async with run_relay(RecordingBackend()):
            accepted = await api.post("/predict", json={"input": "some text"}, headers={"Async-Mode": "true"})
            assert accepted.status_code == 202
            answer = await finished(api, accepted.json()["prediction_id"])
        assert answer["status"] == "complete"
        assert answer["output"]["input"] == "some text"
        assert 1_000 <= int(answer["output"]["result"]) <= 20_000


class TestFailures:
    async def test_a_failing_model_ends_failed_with_the_reason(self, api: AsyncClient, run_relay: RunRelay) -> None:
        async with run_relay(RecordingBackend()):
            prediction_id = await submit(api, agents_body({"x": ([1.0], None, "mock-failure")}))
            answer = await finished(api, prediction_id)
        assert set(answer) == {"prediction_id", "status", "error"}
        assert answer["status"] == "failed"
        assert answer["error"].startswith("Backend failed: ")

    async def test_a_job_whose_workers_keep_stopping_fails_after_the_attempt_limit(
        self, api: AsyncClient, database: Database, run_relay: RunRelay
    ) -> None:
        prediction_id = await submit(api, TEXT)
        async with database.write_engine.begin() as connection:
            await connection.execute(text("UPDATE predictions SET attempts = 2"))
        backend = RecordingBackend()
        async with run_relay(backend, prediction_max_attempts=2):
            answer = await finished(api, prediction_id)
        assert answer["status"] == "failed"
        assert answer["error"] == "Abandoned: 2 workers stopped before finishing it"
        assert backend.calls == []

    async def test_a_job_refused_by_a_full_queue_is_retried_and_one_that_never_fits_fails(
        self, api: AsyncClient, database: Database, run_relay: RunRelay
    ) -> None:
        backend = RecordingBackend()
        gate = backend.hold()
        async with run_relay(backend, max_queue=2, max_concurrency=1):
            first = await submit(api, agents_body({"a": ([1.0], None, "m")}))
            await wait_until(lambda: called(backend, 1), within=10)
            # The only call slot is held: these two rows wait in the queue and fill it.
            queued = await submit(api, agents_body({"b": ([2.0], None, "m"), "c": ([3.0], None, "m")}))
            await wait_until(lambda: claimed(database, queued), within=10)
            refused = await submit(api, agents_body({"d": ([4.0], None, "m")}))
            too_big = await submit(api, agents_body({name: ([1.0], None, "m") for name in "xyz"}))
            answer = await finished(api, too_big)
            error = "3 agents do not fit the prediction queue"
            assert answer == {"prediction_id": too_big, "status": "failed", "error": error}
            assert (await jobs(database))[refused]["status"] == "pending"
            gate.set()
            for prediction_id in (first, queued, refused):
                assert (await finished(api, prediction_id))["status"] == "complete"
        # Refused once, then claimed again when due.
        assert (await jobs(database))[refused]["attempts"] == 2


async def called(backend: RecordingBackend, calls: int) -> bool:
    return len(backend.calls) >= calls


async def claimed(database: Database, prediction_id: str) -> bool:
    return bool((await jobs(database))[prediction_id]["attempts"] >= 1)


class TestRelay:
    async def test_rows_of_different_jobs_share_batches(self, api: AsyncClient, run_relay: RunRelay) -> None:
        backend = RecordingBackend()
        async with run_relay(backend, max_wait_s=2.0, max_size=8):
            ids = [await submit(api, agents_body({"a": ([1.0, float(index)], None, "m")})) for index in range(8)]
            answers = [await finished(api, prediction_id) for prediction_id in ids]
        assert [answer["output"]["actions"]["a"]["action"] for answer in answers] == [1.0 + index for index in range(8)]
        # Eight jobs, one full batch: flushed on size long before its 2 s wait.
        assert [len(call.rows) for call in backend.calls] == [8]

    async def test_a_job_accepted_while_no_worker_runs_completes_when_one_starts(
        self, api: AsyncClient, database: Database, run_relay: RunRelay
    ) -> None:
        async with run_relay(RecordingBackend()):
            pass  # a worker came and went
        prediction_id = await submit(api, AGENTS)
        assert (await jobs(database))[prediction_id]["attempts"] == 0
        async with run_relay(RecordingBackend()):
            answer = await finished(api, prediction_id)
        assert answer["status"] == "complete"

    async def test_a_job_in_flight_at_shutdown_is_released_and_completed_by_the_next_worker(
        self, api: AsyncClient, database: Database, run_relay: RunRelay
    ) -> None:
        stuck = RecordingBackend()
        stuck.hold()
        async with run_relay(stuck, delivery_shutdown_timeout_s=0.05, prediction_lease_s=600):
            prediction_id = await submit(api, TEXT)

            async def called() -> bool:
                return len(stuck.calls) == 1

            await wait_until(called, within=10)
        row = (await jobs(database))[prediction_id]
        assert (row["status"], row["attempts"], row["due"]) == ("pending", 1, True)
        async with run_relay(RecordingBackend()):
            answer = await finished(api, prediction_id)
        assert answer["status"] == "complete"
        assert (await jobs(database))[prediction_id]["attempts"] == 2

    async def test_two_workers_never_run_the_same_job_twice(
        self, api: AsyncClient, database: Database, run_relay: RunRelay
    ) -> None:
        first, second = RecordingBackend(), RecordingBackend()
        async with run_relay(first, prediction_claim_size=3), run_relay(second, prediction_claim_size=3):
            ids = await asyncio.gather(
                *(submit(api, agents_body({"a": ([1.0], None, "m"), "b": ([2.0], None, "m")})) for _ in range(40))
            )
            for prediction_id in ids:
                assert (await finished(api, prediction_id))["status"] == "complete"
        assert first.rows_sent() + second.rows_sent() == 80
        assert {row["attempts"] for row in (await jobs(database)).values()} == {1}
