"""The gateway's metrics: backend calls by model and agent type, rows per call, failures, rows queued."""

import asyncio

from httpx import AsyncClient

from fastapi1.predictions.backends import MOCK_FAILURE, BatchKey
from tests.predictions.support import RecordingBackend, agents_body, batcher_over, until
from tests.scrapes import sample

BATCHES = "fastapi1_backend_batches_total"
QUEUE = "fastapi1_prediction_queue_rows"


class TestBackendCalls:
    async def test_each_backend_call_is_counted_with_its_rows_by_model_and_agent_type(
        self, client: AsyncClient
    ) -> None:
        before = {
            "a": sample(BATCHES, nn_model_name="metrics-a", agent_type="lr"),
            "b": sample(BATCHES, nn_model_name="metrics-b", agent_type=""),
            "calls": sample("fastapi1_backend_batch_rows_count"),
            "rows": sample("fastapi1_backend_batch_rows_sum"),
            "two_rows": sample("fastapi1_backend_batch_rows_bucket", le="2.0"),
        }
        body = agents_body(
            {
                "x": ([1.0, 2.0], "lr", "metrics-a"),
                "y": ([3.0, 4.0], "lr", "metrics-a"),
                "z": ([5.0], None, "metrics-b"),
            }
        )
        response = await client.post("/predict", json=body)
        assert response.status_code == 200, response.text
        # One call per key: both agents of metrics-a travel together.
        assert sample(BATCHES, nn_model_name="metrics-a", agent_type="lr") == before["a"] + 1
        assert sample(BATCHES, nn_model_name="metrics-b", agent_type="") == before["b"] + 1
        assert sample("fastapi1_backend_batch_rows_count") == before["calls"] + 2
        assert sample("fastapi1_backend_batch_rows_sum") == before["rows"] + 3
        assert sample("fastapi1_backend_batch_rows_bucket", le="2.0") == before["two_rows"] + 2
        assert sample(QUEUE) == 0

    async def test_a_failed_call_is_counted_for_its_model(self, client: AsyncClient) -> None:
        failures = "fastapi1_backend_failures_total"
        before = (
            sample(failures, nn_model_name=MOCK_FAILURE),
            sample(BATCHES, nn_model_name=MOCK_FAILURE, agent_type="lr"),
        )
        response = await client.post("/predict", json=agents_body({"x": ([1.0], "lr", MOCK_FAILURE)}))
        assert response.status_code == 502
        after = (
            sample(failures, nn_model_name=MOCK_FAILURE),
            sample(BATCHES, nn_model_name=MOCK_FAILURE, agent_type="lr"),
        )
        assert after == (before[0] + 1, before[1] + 1)


class TestQueueRows:
    async def test_rows_are_queued_from_admission_until_sent_or_withdrawn(self) -> None:
        key = BatchKey("agents", "m", "lr", 1)
        async with batcher_over(RecordingBackend(), max_size=4, max_wait_s=60) as batcher:
            base = sample(QUEUE)
            waiting = batcher.admit([(key, [1.0]) for _ in range(3)])
            assert sample(QUEUE) == base + 3
            waiting.future.cancel()
            await asyncio.sleep(0)
            assert sample(QUEUE) == base
            full = batcher.admit([(key, [1.0]) for _ in range(4)])
            # A full group leaves at once: nothing stays queued.
            assert sample(QUEUE) == base
            assert await full.future == [1.0] * 4


class TestInProgress:
    async def test_a_prediction_is_in_progress_while_its_backend_call_runs(
        self, predict_client: AsyncClient, backend: RecordingBackend
    ) -> None:
        gauge = "fastapi1_http_requests_in_progress"
        base = sample(gauge, method="POST", route="/predict")
        gate = backend.hold()
        request = asyncio.create_task(predict_client.post("/predict", json=agents_body({"x": ([1.0], "lr", "m")})))
        await until(lambda: bool(backend.calls))
        assert sample(gauge, method="POST", route="/predict") == base + 1
        gate.set()
        assert (await request).status_code == 200
        assert sample(gauge, method="POST", route="/predict") == base
