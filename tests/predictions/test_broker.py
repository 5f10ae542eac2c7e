"""Predictions over RabbitMQ: API processes publish their requests' rows, one worker's batcher answers them all.

Against the machine's RabbitMQ under a queue prefix of each test's own (deleted afterwards);
the API processes are in-process applications, the worker is :func:`serve_predictions` over
a recording backend at millisecond delays (and a real worker process in the last class).
"""

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr

from fastapi1.app import create_app
from fastapi1.broker.connection import PREDICTIONS_QUEUE, Broker, Consumer
from fastapi1.config import Settings
from fastapi1.errors import GatewayTimeout, Overloaded
from fastapi1.predictions import consumer as consumer_module
from fastapi1.predictions.backends import BatchKey, mock_text_result
from fastapi1.predictions.batcher import BatchPolicy
from fastapi1.predictions.consumer import ReplyQueues, serve_predictions
from fastapi1.predictions.controller import Gateway
from fastapi1.predictions.remote import RemoteRows, encode_request
from tests.delivery.conftest import wait_until
from tests.delivery.test_process import Workers
from tests.predictions.support import RecordingBackend, agents_body, batcher_over, finished, submit, until
from tests.proxy import TcpProxy

FAST = {"BACKEND_DELAY_MIN_S": "0.001", "BACKEND_DELAY_MAX_S": "0.005"}


@contextlib.asynccontextmanager
async def api_process(settings: Settings) -> AsyncIterator[tuple[AsyncClient, FastAPI]]:
    """An API application on ``settings`` (its broker among them), served in-process."""
    app = create_app(settings.model_copy(update={"compute_workers": 1}))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test", timeout=60) as client,
    ):
        yield client, app


@contextlib.asynccontextmanager
async def worker(broker: Broker, backend: RecordingBackend, **policy: float) -> AsyncIterator[Consumer]:
    """A worker's consumer of the predictions queue, batching over ``backend``."""
    async with batcher_over(backend, **policy) as batcher:
        consumer = await serve_predictions(broker, Gateway(batcher, "text-mock"), prefetch=1000)
        try:
            yield consumer
        finally:
            await consumer.stop(timeout_s=5)


def origin_body(origin: int, request: int, agents: int = 2, model: str = "m") -> dict[str, object]:
    """A body whose rows say where they come from: the first observation is ``origin``."""
    return agents_body(
        {f"agent-{agent}": ([float(origin), float(request), float(agent)], "lr", model) for agent in range(agents)},
        client_id=f"client-{origin}-{request}",
    )


def expected_actions(body: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {name: {"action": sum(agent["observations"])} for name, agent in body["observations"].items()}


async def waiting(broker: Broker) -> int:
    """Messages ready in the predictions queue."""
    queue = await broker.channel.declare_queue(broker.topology.queue(PREDICTIONS_QUEUE), passive=True)
    return int(queue.declaration_result.message_count or 0)


class TestRowsOfEveryApiProcessShareBatches:
    async def test_one_worker_batches_rows_of_two_api_processes_together_and_each_client_gets_its_own(
        self, broker: Broker
    ) -> None:
        backend = RecordingBackend()
        async with (
            worker(broker, backend, max_wait_s=0.2, max_size=64),
            api_process(broker.settings) as (first, first_app),
            api_process(broker.settings) as (second, _),
        ):
            bodies = [(first, origin_body(1, index)) for index in range(10)]
            bodies += [(second, origin_body(2, index)) for index in range(10)]
            answers = await asyncio.gather(*(client.post("/predict", json=body) for client, body in bodies))
            reply_queue = first_app.state.gateway.batcher.reply_queue

        for answer, (_, body) in zip(answers, bodies, strict=True):
            assert answer.status_code == 200, answer.text
            assert answer.json()["actions"] == expected_actions(body)
        origins = [{row[0] for row in call.rows} for call in backend.calls]
        assert {1.0, 2.0} in origins  # one backend call held rows of both API processes
        assert backend.rows_sent() == 40
        assert len(backend.calls) < len(bodies)
        channel = await broker.connection.channel()
        with pytest.raises(ChannelNotFoundEntity):  # the API process's reply queue left with it
            await channel.declare_queue(reply_queue, passive=True)

    async def test_the_text_body_and_the_schedule_alias_go_through_the_broker(self, broker: Broker) -> None:
        backend = RecordingBackend()
        async with worker(broker, backend), api_process(broker.settings) as (client, _):
            text = await client.post("/predict", json={"input": "some text"})
            scheduled = await client.post("/schedule", json=origin_body(3, 0))
        assert text.status_code == 200, text.text
        assert text.json() == {"input": "some text", "result": mock_text_result("some text")}
        assert scheduled.json()["actions"] == expected_actions(origin_body(3, 0))
        assert [call.key.kind for call in backend.calls] == ["text", "agents"]

    async def test_a_failing_model_fails_only_its_batch_with_502(self, broker: Broker) -> None:
        backend = RecordingBackend()
        async with (
            worker(broker, backend, max_wait_s=0.05),
            api_process(broker.settings) as (first, _),
            api_process(broker.settings) as (second, _),
        ):
            failing, fine = origin_body(1, 0, model="mock-failure"), origin_body(2, 0)
            bad, good = await asyncio.gather(first.post("/predict", json=failing), second.post("/predict", json=fine))
        assert bad.status_code == 502, bad.text
        assert bad.json()["detail"].startswith("Backend failed: ")
        assert "mock-failure" in bad.json()["detail"]
        assert good.status_code == 200, good.text
        assert good.json()["actions"] == expected_actions(fine)


class TestClientsThatStopWaiting:
    async def test_no_worker_answering_is_a_504_at_the_deadline_not_a_hang(self, broker: Broker) -> None:
        await broker.declare(PREDICTIONS_QUEUE)  # deleted after the test
        settings = broker.settings.model_copy(update={"backend_timeout_s": 0.3, "broker_reply_margin_s": 0.2})
        async with api_process(settings) as (client, app):
            answer = await asyncio.wait_for(client.post("/predict", json=origin_body(1, 0)), 30)
            assert app.state.gateway.batcher.queued_rows == 0
        assert answer.status_code == 504, answer.text
        assert answer.json() == {"detail": "No prediction worker answered within 0.5 s; retry later"}

    async def test_a_worker_drops_requests_past_their_deadline_or_whose_api_process_is_gone(
        self, broker: Broker
    ) -> None:
        queue = await broker.declare(PREDICTIONS_QUEUE)
        items = [(BatchKey("agents", "m", None, 1), [1.0])]
        late = encode_request(items, time.time() - 1)
        orphan = encode_request(items, time.time() + 60)
        gone = f"{broker.topology.prefix}.prediction-replies.{uuid.uuid4().hex}"
        owned = await (await broker.connection.channel()).declare_queue(exclusive=True, auto_delete=True)
        await broker.publish(queue.name, late, message_id="late", correlation_id="late", reply_to=owned.name)
        await broker.publish(queue.name, orphan, message_id="orphan", correlation_id="orphan", reply_to=gone)
        backend = RecordingBackend()
        async with worker(broker, backend):
            await wait_until(lambda: is_empty(broker), within=10)
            await asyncio.sleep(0.1)  # a handler that had started would have called by now
        assert backend.calls == []

    async def test_a_request_whose_deadline_passes_in_the_batcher_leaves_it_without_a_call(
        self, broker: Broker
    ) -> None:
        backend = RecordingBackend()
        impatient = broker.settings.model_copy(update={"backend_timeout_s": 0.2, "broker_reply_margin_s": 0.1})
        async with (
            worker(broker, backend, max_wait_s=0.05, max_concurrency=1),
            api_process(broker.settings) as (patient_client, _),
            api_process(impatient) as (impatient_client, _),
        ):
            gate = backend.hold()  # the only call slot stays taken by the patient request's batch
            patient = asyncio.create_task(patient_client.post("/predict", json=origin_body(1, 0, model="a")))
            await until(lambda: len(backend.calls) == 1)
            given_up = await impatient_client.post("/predict", json=origin_body(2, 0, model="b"))
            await asyncio.sleep(0.1)
            gate.set()
            answered = await patient
        assert given_up.status_code == 504
        assert answered.status_code == 200
        assert [call.key.nn_model_name for call in backend.calls] == ["a"]

    async def test_a_known_reply_queue_costs_no_wait_while_the_broker_is_asked_again_in_the_background(
        self, broker: Broker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        owned = await (await broker.connection.channel()).declare_queue(exclusive=True, auto_delete=True)
        replies = ReplyQueues(broker)
        asked: list[str] = []
        held = asyncio.Event()
        real_ask = replies.ask

        async def ask(name: str) -> bool:
            asked.append(name)
            if len(asked) > 1:
                await held.wait()
            return await real_ask(name)

        monkeypatch.setattr(replies, "ask", ask)
        monkeypatch.setattr(consumer_module, "REPLY_QUEUE_CHECK_S", 0.0)  # every answer is stale at once
        assert await replies.alive(owned.name)  # a queue not heard of yet: the broker's answer is awaited
        await owned.delete()
        async with asyncio.timeout(10):  # a guard against a hang, not a measurement
            # Stale: answered from what is known while the broker, held, is asked again.
            assert await replies.alive(owned.name)
            assert await replies.alive(owned.name)
            await until(lambda: len(asked) == 2)
            await asyncio.sleep(0.01)
            assert asked == [owned.name, owned.name]  # one question in flight, however many messages
            held.set()
            await until(lambda: replies.checks[owned.name].known is False)
            assert not await replies.alive(owned.name)

    async def test_answers_go_out_on_a_channel_without_confirms_that_stopping_closes(self, broker: Broker) -> None:
        key = BatchKey("agents", "m", None, 2)
        async with worker(broker, RecordingBackend()) as consumer:
            async with RemoteRows(broker, BatchPolicy(), reply_timeout_s=30) as rows:
                assert await rows.run([(key, [1.0, 2.0]), (key, [3.0, 4.0])]) == [3.0, 7.0]
            (answers,) = consumer.side_channels
            assert not answers.publisher_confirms
            assert not answers.is_closed
        assert answers.is_closed


async def is_empty(broker: Broker) -> bool:
    return await waiting(broker) == 0


class TestBoundsAndOutages:
    async def test_rows_waiting_in_an_api_process_are_bounded_with_503_and_retry_after(self, broker: Broker) -> None:
        async with RemoteRows(broker, BatchPolicy(max_queue=3), reply_timeout_s=30) as rows:
            key = BatchKey("agents", "m", None, 1)
            held = asyncio.create_task(rows.run([(key, [1.0]), (key, [2.0])]))
            await until(lambda: rows.queued_rows == 2)
            with pytest.raises(Overloaded) as refused:
                await rows.run([(key, [3.0]), (key, [4.0])])
            assert refused.value.status_code == 503
            assert int(refused.value.headers["Retry-After"]) >= 1
            held.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await held
            assert rows.queued_rows == 0
            assert rows.pending == {}

    async def test_a_cut_broker_is_a_clear_503_within_the_publish_timeout_and_the_path_recovers(
        self, broker: Broker
    ) -> None:
        url = cast(SecretStr, broker.settings.broker_url).get_secret_value()
        backend = RecordingBackend()
        async with TcpProxy.to_address("127.0.0.1", 5672) as proxy, worker(broker, backend):
            proxied = url.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
            settings = broker.settings.model_copy(
                update={"broker_url": SecretStr(proxied), "broker_publish_timeout_s": 1.0}
            )
            async with api_process(settings) as (client, _):
                assert (await client.post("/predict", json=origin_body(1, 0))).status_code == 200
                await proxy.stop()
                cut = await asyncio.wait_for(client.post("/predict", json=origin_body(1, 1)), 30)
                assert cut.status_code == 503, cut.text
                assert cut.json() == {"detail": "no confirm from the broker within 1 s"}
                await proxy.start()
                answers: list[httpx.Response] = []

                async def recovered() -> bool:
                    answers.append(await client.post("/predict", json=origin_body(1, 2)))
                    return answers[-1].status_code == 200

                await wait_until(recovered, within=30)
                assert answers[-1].json()["actions"] == expected_actions(origin_body(1, 2))


@pytest.fixture
def workers(jobs_url: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(jobs_url, tmp_path)
    yield started
    started.stop_all()


class TestWorkerProcessWithBroker:
    async def test_the_worker_process_answers_api_requests_and_a_job_accepted_while_it_was_down(
        self, broker: Broker, jobs_url: str, workers: Workers
    ) -> None:
        await broker.declare(PREDICTIONS_QUEUE)  # deleted after the test
        env = {
            "BROKER_URL": cast(SecretStr, broker.settings.broker_url).get_secret_value(),
            "BROKER_PREFIX": broker.settings.broker_prefix,
            **FAST,
        }

        async def answering(index: int) -> bool:
            return "Worker answering predictions from the broker" in workers.log(index)

        first = workers.start(**env)
        await wait_until(lambda: answering(0), within=30)
        async with api_process(broker.settings.model_copy(update={"database_url": jobs_url})) as (client, _):
            body = origin_body(1, 0)
            answer = await client.post("/predict", json=body)
            assert answer.status_code == 200, workers.log(0)
            assert answer.json()["actions"] == expected_actions(body)

            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=30) == 0, workers.log(0)
            prediction_id = await submit(client, body)  # stored while no worker runs

            workers.start(**env)
            await wait_until(lambda: answering(1), within=30)
            job = await finished(client, prediction_id, within=30)
            assert job["status"] == "complete", workers.log(1)
            assert job["output"]["actions"] == expected_actions(body)
            again = await client.post("/schedule", json=body)
            assert again.status_code == 200, workers.log(1)


def test_request_messages_are_compact_json() -> None:
    items = [(BatchKey("agents", "m", "lr", 2), [1.0, 2.0]), (BatchKey("text", "t", None, 0), "hi")]
    assert orjson.loads(encode_request(items, 12.5)) == {
        "deadline": 12.5,
        "rows": [["agents", "m", "lr", [1.0, 2.0]], ["text", "t", None, "hi"]],
    }
    assert GatewayTimeout.status_code == 504


def test_the_openapi_document_declares_the_broker_path_statuses(app: FastAPI) -> None:
    for path in ("/predict", "/schedule"):
        declared = app.openapi()["paths"][path]["post"]["responses"]
        assert "worker process answered in time" in declared["504"]["description"]
        assert "BROKER_PUBLISH_TIMEOUT_S" in declared["503"]["description"]
