"""Helpers of the prediction tests: a recording backend, a batcher per test, polling with a deadline, jobs."""

import asyncio
import contextlib
import functools
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import text

from fastapi1.db.engine import Database
from fastapi1.predictions.backends import BatchKey, MockBackend, call_backend
from fastapi1.predictions.batcher import Batcher, BatchPolicy
from fastapi1.predictions.controller import Gateway, PredictionBatcher
from fastapi1.predictions.views import get_gateway
from tests.delivery.conftest import wait_until


@dataclass(frozen=True)
class Call:
    """One backend call as the backend saw it."""

    key: BatchKey
    rows: list[list[float]] | list[str]
    started_at: float


class RecordingBackend:
    """The mock's answers at a millisecond delay, every call recorded; calls can be held at a gate."""

    def __init__(self, delay_s: float = 0.001) -> None:
        self.mock = MockBackend(delay_s, delay_s)
        self.calls: list[Call] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.held: Callable[[Call], bool] = lambda call: True

    def hold(self, held: Callable[[Call], bool] = lambda call: True) -> asyncio.Event:
        """Make the calls that ``held`` picks wait until the returned event is set."""
        self.gate.clear()
        self.held = held
        return self.gate

    @contextlib.asynccontextmanager
    async def calling(self, key: BatchKey, rows: list[list[float]] | list[str]) -> AsyncIterator[None]:
        call = Call(key, list(rows), asyncio.get_running_loop().time())
        self.calls.append(call)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.held(call):
                await self.gate.wait()
            yield
        finally:
            self.in_flight -= 1

    async def predict(self, nn_model_name: str, agent_type: str | None, observations: list[list[float]]) -> list[float]:
        async with self.calling(BatchKey("agents", nn_model_name, agent_type, len(observations[0])), observations):
            return await self.mock.predict(nn_model_name, agent_type, observations)

    async def generate(self, model_name: str, inputs: list[str]) -> list[str]:
        async with self.calling(BatchKey("text", model_name, None, 0), inputs):
            return await self.mock.generate(model_name, inputs)

    def rows_sent(self) -> int:
        return sum(len(call.rows) for call in self.calls)


def batcher_over(backend: RecordingBackend | MockBackend, **policy: float) -> PredictionBatcher:
    """A batcher (not started: use ``async with``) over a backend, with policy overrides."""
    return Batcher(BatchPolicy(**policy), functools.partial(call_backend, backend))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serving(app: FastAPI, batcher: PredictionBatcher) -> AsyncIterator[AsyncClient]:
    """An HTTP client of the application whose routes use ``batcher`` (and the text model ``text-mock``)."""
    gateway = Gateway(batcher, "text-mock")

    async def get_test_gateway() -> Gateway:
        return gateway

    app.dependency_overrides[get_gateway] = get_test_gateway
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
            yield client
    finally:
        app.dependency_overrides.pop(get_gateway, None)


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` every millisecond until it holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def agents_body(agents: dict[str, tuple[list[float], str | None, str]], client_id: str = "c") -> dict[str, object]:
    """An agents body from ``{name: (observations, agent_type, nn_model_name)}``."""
    return {
        "client_id": client_id,
        "run_slug": "0",
        "observations": {
            name: {"observations": observations, "agent_type": agent_type, "nn_model_name": model}
            for name, (observations, agent_type, model) in agents.items()
        },
    }


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


ASYNC = {"Async-Mode": "true"}


async def submit(api: AsyncClient, body: dict[str, Any], path: str = "/predict") -> str:
    """Submit a job; its id, after checking the 202."""
    response = await api.post(path, json=body, headers=ASYNC)
    assert response.status_code == 202, response.text
    prediction_id = response.json()["prediction_id"]
    assert response.json() == {
        "message": "Request received. Processing asynchronously.",
        "prediction_id": prediction_id,
    }
    assert uuid.UUID(prediction_id).version == 4
    assert response.headers["location"] == f"/predict/{prediction_id}"
    return str(prediction_id)


async def finished(api: AsyncClient, prediction_id: str, within: float = 20) -> dict[str, Any]:
    """Poll ``GET /predict/{id}`` until it is not 400; its 200 body."""
    answers: list[Response] = []

    async def done() -> bool:
        answers.append(await api.get(f"/predict/{prediction_id}"))
        return answers[-1].status_code != 400

    await wait_until(done, within)
    assert answers[-1].status_code == 200, answers[-1].text
    return dict(answers[-1].json())


async def jobs(database: Database) -> dict[str, dict[str, Any]]:
    """Every job's queue columns, by id."""
    query = "SELECT id::text, status, attempts, next_attempt_at <= now() AS due FROM predictions"
    async with database.write_engine.connect() as connection:
        return {row["id"]: dict(row) for row in (await connection.execute(text(query))).mappings()}


async def count(database: Database, table: str) -> int:
    async with database.write_engine.connect() as connection:
        return int((await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
