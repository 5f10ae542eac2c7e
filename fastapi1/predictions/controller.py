"""Prediction logic: a request becomes rows keyed for batching; the answers become its response."""

import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import Row as SqlRow
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.broker.connection import Broker
from fastapi1.config import Settings
from fastapi1.errors import NotFound, StillProcessing
from fastapi1.models.predictions import COMPLETE, PENDING
from fastapi1.predictions import dao
from fastapi1.predictions.backends import BatchKey, Result, Row, call_backend, open_backend
from fastapi1.predictions.batcher import Batcher, BatchPolicy
from fastapi1.predictions.remote import open_remote_rows
from fastapi1.predictions.schemas import (
    AgentRequest,
    ClientAnswer,
    ClientRequest,
    JobAnswer,
    TextAnswer,
    TextRequest,
)

PredictionBatcher = Batcher[BatchKey, Row, Result]


class Rows(Protocol):
    """What answers a request's rows: the batcher, or in an API process with a broker the workers' batchers."""

    policy: BatchPolicy

    async def run(self, items: Sequence[tuple[BatchKey, Row]]) -> list[Result]:
        """Answer each row, in the order of ``items``.

        Args:
            items: ``(key, row)`` pairs of one request.
        """


@dataclass(frozen=True, slots=True)
class Gateway:
    """What answers the rows, and the model that answers the text body."""

    batcher: Rows
    text_model: str


@contextlib.asynccontextmanager
async def open_gateway(settings: Settings, broker: Broker | None = None) -> AsyncIterator[Gateway]:
    """Open the configured backend and the batcher in front of it, or with ``broker`` the client of the workers.

    Args:
        settings: Backend, batching and text model settings.
        broker: The broker of an API process (``BROKER_URL`` set): its rows are batched by the
            worker processes. None in a worker, and in an API process without a broker.

    Yields:
        The gateway; on exit the batcher stops before the backend closes.
    """
    if broker is not None:
        async with open_remote_rows(broker, settings) as rows:
            yield Gateway(rows, settings.text_model_name)
        return
    async with (
        open_backend(settings) as backend,
        Batcher[BatchKey, Row, Result](
            BatchPolicy.from_settings(settings), functools.partial(call_backend, backend)
        ) as batcher,
    ):
        yield Gateway(batcher, settings.text_model_name)


def agent_key(agent: AgentRequest) -> BatchKey:
    """The batch an agent's row joins: same model, same agent type, same observation length.

    Args:
        agent: The agent.
    """
    return BatchKey("agents", agent.nn_model_name, agent.agent_type, len(agent.observations))


def text_key(model_name: str) -> BatchKey:
    """The batch every text joins: the text model's.

    Args:
        model_name: The text model.
    """
    return BatchKey("text", model_name, None, 0)


async def act(batcher: Rows, agents: Iterable[AgentRequest]) -> list[float]:
    """The backend's action for each agent, in order, batched with other requests' agents.

    Args:
        batcher: The batcher.
        agents: The agents.
    """
    results = await batcher.run([(agent_key(agent), agent.observations) for agent in agents])
    # Agent keys reach Backend.predict, whose actions call_backend checked as finite floats.
    return cast(list[float], results)


def agents_answer(names: Iterable[str], actions: Iterable[float], response_time: float) -> ClientAnswer:
    """The agents body's answer.

    Args:
        names: The agents' names, in the request's order.
        actions: Their actions, in the same order.
        response_time: Seconds from receipt to answer.
    """
    return {
        "actions": {name: {"action": action} for name, action in zip(names, actions, strict=True)},
        "response_time": response_time,
    }


async def predict_agents(batcher: Rows, request: ClientRequest, received_at: float) -> ClientAnswer:
    """Act for each of the client's agents, batched with other clients' agents.

    Args:
        batcher: The batcher.
        request: The client's agents.
        received_at: ``time.perf_counter()`` when the request arrived.

    Returns:
        Each agent with its action, and the seconds since arrival.
    """
    actions = await act(batcher, request.observations.values())
    return agents_answer(request.observations, actions, time.perf_counter() - received_at)


async def predict_text(batcher: Rows, request: TextRequest, model_name: str) -> TextAnswer:
    """Run the text model on the input, batched with other clients' texts.

    Args:
        batcher: The batcher.
        request: The text.
        model_name: The text model.
    """
    (result,) = await batcher.run([(text_key(model_name), request.input)])
    return {"input": request.input, "result": cast(str, result)}


async def predict(
    gateway: Gateway, request: ClientRequest | TextRequest, received_at: float
) -> ClientAnswer | TextAnswer:
    """Answer either body.

    Args:
        gateway: The batcher and the text model.
        request: The agents or the text.
        received_at: ``time.perf_counter()`` when the request arrived.
    """
    if isinstance(request, TextRequest):
        return await predict_text(gateway.batcher, request, gateway.text_model)
    return await predict_agents(gateway.batcher, request, received_at)


# Seconds a client polling a pending job is told to wait (Retry-After): the mock backend alone
# takes 3-7 s, so polling faster only costs queries.
PENDING_RETRY_AFTER_S = 1


def new_job(request: ClientRequest | TextRequest) -> dao.NewJob:
    """The rows that store a request as a job, under a new id.

    Args:
        request: The validated body.
    """
    if isinstance(request, TextRequest):
        return dao.NewJob(uuid.uuid4(), input=request.input)
    job = dao.NewJob(uuid.uuid4(), client_id=request.client_id, run_slug=request.run_slug)
    for name, agent in request.observations.items():
        job.add_agent(name, agent.observations, agent.agent_type, agent.nn_model_name)
    return job


async def submit(session: AsyncSession, request: ClientRequest | TextRequest) -> uuid.UUID:
    """Store the request as a pending job; the workers are woken when the transaction commits.

    Args:
        session: The write session.
        request: The validated body.

    Returns:
        The job's id.
    """
    job = new_job(request)
    await dao.insert_job(session, job)
    return job.id


def job_output(row: SqlRow[tuple[object, ...]]) -> ClientAnswer | TextAnswer:
    """A complete job's output: what the synchronous call would have answered.

    Args:
        row: A row of :func:`dao.select_job`.
    """
    if row.input is not None:
        return {"input": cast(str, row.input), "result": cast(str, row.result)}
    names = cast(list[str], row.names)
    return agents_answer(names, cast(list[float], row.actions), float(cast(float, row.response_time)))


async def read_job(session: AsyncSession, prediction_id: uuid.UUID) -> JobAnswer:
    """A finished job's answer.

    Args:
        session: Any session.
        prediction_id: The job.

    Raises:
        NotFound: No such job.
        StillProcessing: The job is pending.
    """
    row = await dao.select_job(session, prediction_id)
    if row is None:
        raise NotFound("Prediction ID not found.")
    if row.status == PENDING:
        raise StillProcessing("Prediction is still being processed.", PENDING_RETRY_AFTER_S)
    if row.status == COMPLETE:
        return {"prediction_id": str(prediction_id), "status": COMPLETE, "output": job_output(row)}
    return {"prediction_id": str(prediction_id), "status": cast(str, row.status), "error": cast(str, row.error)}
