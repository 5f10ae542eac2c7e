"""POST /predict and /schedule over HTTP: both bodies, failures, overload, async mode, disconnects."""

import asyncio
import json
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.types import Message

from fastapi1.predictions.backends import mock_text_result
from fastapi1.predictions.batcher import BatchPolicy
from fastapi1.predictions.controller import Gateway
from fastapi1.predictions.schemas import ClientResponse, TextResponse
from tests.predictions.support import RecordingBackend, agents_body, batcher_over, serving, until

SEED_004 = {
    "client_id": "test",
    "run_slug": "0",
    "observations": {"test": {"observations": [0.1, 0.2], "agent_type": "lr", "nn_model_name": "foundation-v1"}},
}


class TestAgentsBody:
    @pytest.mark.parametrize("path", ["/predict", "/schedule"])
    async def test_the_seed_004_request_gets_its_action(self, app: FastAPI, path: str) -> None:
        async with batcher_over(RecordingBackend(), max_wait_s=0.002) as batcher, serving(app, batcher) as client:
            response = await client.post(path, json=SEED_004)
        assert response.status_code == 200
        body = ClientResponse.model_validate(response.json())
        assert set(response.json()) == {"actions", "response_time"}
        assert body.actions["test"].action == pytest.approx(0.3)
        assert 0 < body.response_time < 5

    async def test_many_clients_at_once_each_get_their_own_agents(self, app: FastAPI) -> None:
        backend = RecordingBackend()
        bodies = [
            agents_body(
                {f"agent-{agent}": ([float(client), float(agent)], "lr", f"model-{agent % 3}") for agent in range(5)}
            )
            for client in range(40)
        ]
        async with batcher_over(backend, max_size=16, max_wait_s=0.005) as batcher, serving(app, batcher) as client:
            responses = await asyncio.gather(*(client.post("/predict", json=body) for body in bodies))
        for index, response in enumerate(responses):
            assert response.status_code == 200
            assert response.json()["actions"] == {f"agent-{agent}": {"action": index + agent} for agent in range(5)}
        assert backend.rows_sent() == 200
        assert len(backend.calls) < 200


class TestTextBody:
    async def test_the_text_body_gets_a_whole_number_from_1000_to_20000_as_a_string(self, app: FastAPI) -> None:
        async with batcher_over(RecordingBackend(), max_wait_s=0.002) as batcher, serving(app, batcher) as client:
            first = await client.post("/predict", json={"input": "some text"})
            again = await client.post("/schedule", json={"input": "some text"})
        assert first.status_code == 200
        assert first.json() == again.json() == {"input": "some text", "result": mock_text_result("some text")}
        assert TextResponse.model_validate(first.json())
        assert 1_000 <= int(first.json()["result"]) <= 20_000


class TestFailures:
    async def test_a_failing_model_answers_502_while_a_concurrent_other_model_succeeds(self, app: FastAPI) -> None:
        failing = agents_body({"a": ([1.0], "lr", "mock-failure")})
        working = agents_body({"a": ([1.0], "lr", "foundation-v1")})
        async with batcher_over(RecordingBackend(), max_wait_s=0.005) as batcher, serving(app, batcher) as client:
            failed, answered = await asyncio.gather(
                client.post("/predict", json=failing), client.post("/predict", json=working)
            )
        assert failed.status_code == 502
        assert failed.json() == {"detail": "Backend failed: model mock-failure fails every call"}
        assert answered.status_code == 200
        assert answered.json()["actions"] == {"a": {"action": 1.0}}

    async def test_a_full_queue_answers_503_with_retry_after_and_queues_nothing(self, app: FastAPI) -> None:
        backend = RecordingBackend()
        gate = backend.hold()
        policy: dict[str, float] = {"max_size": 1, "max_wait_s": 0, "max_concurrency": 1, "max_queue": 2}
        async with batcher_over(backend, **policy) as batcher, serving(app, batcher) as client:
            in_flight = asyncio.create_task(client.post("/predict", json={"input": "first"}))
            await until(lambda: backend.in_flight == 1)
            waiting = asyncio.create_task(client.post("/predict", json={"input": "second"}))
            await until(lambda: batcher.queued_rows == 1)
            refused = await client.post(
                "/predict", json=agents_body({"a": ([1.0], None, "m"), "b": ([2.0], None, "n")})
            )
            assert batcher.queued_rows == 1
            gate.set()
            assert [(await task).status_code for task in (in_flight, waiting)] == [200, 200]
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json() == {"detail": "Prediction queue full (rows waiting: 1); retry later"}
        assert backend.rows_sent() == 2


class TestAsyncMode:
    async def test_any_other_value_answers_synchronously(self, app: FastAPI) -> None:
        async with batcher_over(RecordingBackend(), max_wait_s=0) as batcher, serving(app, batcher) as client:
            response = await client.post("/predict", json={"input": "x"}, headers={"Async-Mode": "false"})
        assert response.status_code == 200


class TestDisconnect:
    async def test_a_client_that_disconnects_withdraws_its_rows_and_nothing_is_sent(self, app: FastAPI) -> None:
        backend = RecordingBackend()
        body = json.dumps(agents_body({"a": ([1.0], None, "m"), "b": ([1.0, 2.0], None, "m")})).encode()
        hang_up = asyncio.Event()
        received: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[Message] = []

        async def receive() -> Message:
            if received:
                return received.pop()
            await hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000),
            "server": ("test", 80),
        }
        async with batcher_over(backend, max_size=64, max_wait_s=60) as batcher, serving(app, batcher):
            request = asyncio.create_task(app(scope, receive, send))
            await until(lambda: batcher.queued_rows == 2)
            hang_up.set()
            await request
            assert (batcher.queued_rows, batcher.groups) == (0, {})
        assert sent[0]["status"] == 499
        assert backend.calls == []


class TestLifespan:
    async def test_the_lifespan_opens_the_gateway_from_the_settings(self, app: FastAPI) -> None:
        gateway = app.state.gateway
        assert isinstance(gateway, Gateway)
        assert gateway.batcher.accepting
        assert gateway.batcher.policy == BatchPolicy.from_settings(app.state.settings)
        assert gateway.text_model == app.state.settings.text_model_name == "text-mock"
