"""The backends: the mock's answers, and the HTTP client against the mock server and bad servers."""

import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from fastapi1.config import Settings
from fastapi1.errors import BackendFailed
from fastapi1.predictions.backends import (
    BackendError,
    BatchKey,
    HttpBackend,
    MockBackend,
    call_backend,
    mock_text_result,
    model_path,
)
from fastapi1.predictions.batcher import Batcher, BatchPolicy
from fastapi1.predictions.controller import open_gateway
from tests.conftest import PROJECT_ROOT
from tests.predictions.support import agents_body, free_port, serving

AGENTS = BatchKey("agents", "m", "lr", 2)
TEXT = BatchKey("text", "text-mock", None, 0)


class TestMockBackend:
    @given(st.text())
    def test_the_text_model_answers_the_same_whole_number_from_1000_to_20000_for_the_same_text(self, text: str) -> None:
        result = mock_text_result(text)
        assert result == mock_text_result(text)
        assert 1_000 <= int(result) <= 20_000
        assert result == str(int(result))

    async def test_it_answers_the_sum_of_each_row(self) -> None:
        assert await MockBackend(0, 0).predict("m", "lr", [[0.1, 0.2], [1.0, 2.0, 3.0]]) == [0.1 + 0.2, 6.0]

    async def test_the_model_mock_failure_fails_every_call(self) -> None:
        with pytest.raises(BackendError, match="mock-failure fails every call"):
            await MockBackend(0, 0).predict("mock-failure", None, [[1.0]])
        with pytest.raises(BackendError, match="mock-failure fails every call"):
            await MockBackend(0, 0).generate("mock-failure", ["x"])

    async def test_a_call_waits_within_the_delay_range(self) -> None:
        started = time.perf_counter()
        await MockBackend(0.02, 0.03).predict("m", None, [[1.0]])
        assert 0.02 <= time.perf_counter() - started < 1


class TestModelPath:
    @pytest.mark.parametrize(
        ("name", "path"),
        [
            ("foundation-v1", "models/foundation-v1/predict"),
            ("a:b.c_d", "models/a:b.c_d/predict"),
            (".", "models/%2E/predict"),
            ("..", "models/%2E%2E/predict"),
        ],
    )
    def test_dot_segments_are_escaped_and_nothing_else(self, name: str, path: str) -> None:
        assert model_path(name) == path


@pytest.fixture(scope="module")
def mock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m fastapi1.mock_backend`` on a free port, with millisecond delays."""
    port = free_port()
    env = os.environ | {"BACKEND_DELAY_MIN_S": "0.001", "BACKEND_DELAY_MAX_S": "0.002"}
    log_path: Path = tmp_path_factory.mktemp("mock_backend") / "server.log"
    command = [sys.executable, "-m", "fastapi1.mock_backend", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not answers(url):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def answers(url: str) -> bool:
    """Whether a server answers on ``url``."""
    try:
        return httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class TestOverHttp:
    async def test_the_seed_004_request_goes_through_the_mock_server(self, app: FastAPI, mock_server: str) -> None:
        settings = Settings(backend_url=mock_server, batch_max_wait_ms=1)
        seed = agents_body({"test": ([0.1, 0.2], "lr", "foundation-v1")}, client_id="test")
        async with open_gateway(settings) as gateway, serving(app, gateway.batcher) as client:
            response = await client.post("/predict", json=seed)
            text = await client.post("/predict", json={"input": "some text"})
        assert response.status_code == 200
        assert response.json()["actions"] == {"test": {"action": pytest.approx(0.3)}}
        assert text.json() == {"input": "some text", "result": mock_text_result("some text")}

    async def test_a_500_from_the_server_is_a_502_for_that_batch_only(self, app: FastAPI, mock_server: str) -> None:
        settings = Settings(backend_url=mock_server, batch_max_wait_ms=5)
        async with open_gateway(settings) as gateway, serving(app, gateway.batcher) as client:
            failed, answered = await asyncio.gather(
                client.post("/predict", json=agents_body({"a": ([1.0], None, "mock-failure")})),
                client.post("/predict", json=agents_body({"a": ([1.0, 2.0], None, "m")})),
            )
        assert failed.status_code == 502
        assert failed.json() == {"detail": "Backend failed: model mock-failure answered HTTP 500"}
        assert answered.json()["actions"] == {"a": {"action": 3.0}}

    async def test_an_overflowing_row_fails_only_its_client_over_http_too(self, app: FastAPI, mock_server: str) -> None:
        # The served mock's sum of two 1.7e308 is infinite, which JSON carries as null.
        settings = Settings(backend_url=mock_server, batch_max_wait_ms=50)
        async with open_gateway(settings) as gateway, serving(app, gateway.batcher) as client:
            overflowing, answered = await asyncio.gather(
                client.post("/predict", json=agents_body({"a": ([1.7e308, 1.7e308], None, "m")})),
                client.post("/predict", json=agents_body({"a": ([1.0, 2.0], None, "m")})),
            )
        assert overflowing.status_code == 502
        assert answered.json()["actions"] == {"a": {"action": 3.0}}

    @pytest.mark.parametrize("name", [".", "..", "a:b", "A.Z_0-9"])
    async def test_every_model_name_reaches_its_own_endpoint(self, mock_server: str, name: str) -> None:
        async with httpx.AsyncClient(base_url=mock_server) as client:
            assert await HttpBackend(client).predict(name, None, [[1.0, 2.0]]) == [3.0]


class Recorder:
    """An ASGI model server that answers one fixed response and records what it was sent."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        self.requests: list[tuple[str, object]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        self.requests.append((scope["path"], json.loads(message["body"])))
        await send({"type": "http.response.start", "status": self.status, "headers": [(b"content-type", b"text/json")]})
        await send({"type": "http.response.body", "body": self.body})


@contextlib.asynccontextmanager
async def batcher_against(
    server: Recorder, max_wait_s: float = 0
) -> AsyncIterator[Batcher[BatchKey, list[float] | str, float | str]]:
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(transport=transport, base_url="http://backend/v1") as client:
        call = functools.partial(call_backend, HttpBackend(client))
        async with Batcher(BatchPolicy(max_wait_s=max_wait_s), call) as batcher:
            yield batcher


class TestHttpAnswers:
    async def test_the_batch_is_posted_as_the_skeletons_backend_request(self) -> None:
        server = Recorder(200, b'{"actions_array": [0.5, 1.5], "model_version": "ignored"}')
        async with batcher_against(server) as batcher:
            assert await batcher.run([(AGENTS, [0.1, 0.4]), (AGENTS, [1.0, 0.5])]) == [0.5, 1.5]
        assert server.requests == [
            ("/v1/models/m/predict", {"agent_type": "lr", "observation_array": [[0.1, 0.4], [1.0, 0.5]]})
        ]

    async def test_texts_are_posted_as_an_input_array(self) -> None:
        server = Recorder(200, b'{"result_array": ["7"]}')
        async with batcher_against(server) as batcher:
            assert await batcher.run([(TEXT, "hello")]) == ["7"]
        assert server.requests == [("/v1/models/text-mock/predict", {"input_array": ["hello"]})]

    @pytest.mark.parametrize(
        ("status", "body", "reason"),
        [
            (200, b'{"actions_array": [1.0]}', "1 answers for 2 rows"),
            (200, b'{"actions_array": [1.0, "2"]}', "model m answered a body of the wrong shape"),
            (200, b'{"actions": [1.0, 2.0]}', "model m answered a body of the wrong shape"),
            (200, b"not json", "model m answered a body of the wrong shape"),
            (404, b'{"detail": "Not Found"}', "model m answered HTTP 404"),
            (503, b"", "model m answered HTTP 503"),
        ],
    )
    async def test_a_wrong_answer_fails_the_batch(self, status: int, body: bytes, reason: str) -> None:
        async with batcher_against(Recorder(status, body)) as batcher:
            with pytest.raises(BackendFailed) as failed:
                await batcher.run([(AGENTS, [1.0, 2.0]), (AGENTS, [3.0, 4.0])])
        assert failed.value.message == f"Backend failed: {reason}"

    @pytest.mark.parametrize("missing", [b"null", b"NaN", b"Infinity"])
    async def test_a_row_without_a_finite_action_fails_only_its_own_request(self, missing: bytes) -> None:
        server = Recorder(200, b'{"actions_array": [1.0, ' + missing + b"]}")
        async with batcher_against(server, max_wait_s=0.05) as batcher:
            answered, failed = await asyncio.gather(
                batcher.run([(AGENTS, [1.0, 2.0])]), batcher.run([(AGENTS, [3.0, 4.0])]), return_exceptions=True
            )
        assert answered == [1.0]
        assert isinstance(failed, BackendFailed)
        assert failed.message == "Backend failed: model m answered an action that is not a finite number"

    async def test_a_text_result_that_is_not_a_string_fails_the_batch(self) -> None:
        async with batcher_against(Recorder(200, b'{"result_array": [7]}')) as batcher:
            with pytest.raises(BackendFailed, match="wrong shape"):
                await batcher.run([(TEXT, "hello")])

    async def test_an_unreachable_server_fails_the_batch(self) -> None:
        settings = Settings(backend_url=f"http://127.0.0.1:{free_port()}", batch_max_wait_ms=0)
        async with open_gateway(settings) as gateway:
            with pytest.raises(BackendFailed, match=r"model m unreachable \(ConnectError\)"):
                await gateway.batcher.run([(AGENTS, [1.0, 2.0])])

    async def test_a_server_that_never_answers_times_out(self) -> None:
        async def accept_and_stay_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = Settings(backend_url=f"http://127.0.0.1:{port}", batch_max_wait_ms=0, backend_timeout_s=0.1)
        async with server, open_gateway(settings) as gateway:
            with pytest.raises(BackendFailed, match=r"Backend failed: no answer within 0\.1 s"):
                await gateway.batcher.run([(AGENTS, [1.0, 2.0])])
