"""Prediction logic: a request becomes rows keyed for batching; the answers become its response."""

import contextlib
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

from fastapi1.config import Settings
from fastapi1.predictions.backends import BatchKey, Result, Row, call_backend, open_backend
from fastapi1.predictions.batcher import Batcher, BatchPolicy
from fastapi1.predictions.schemas import AgentRequest, ClientAnswer, ClientRequest, TextAnswer, TextRequest

PredictionBatcher = Batcher[BatchKey, Row, Result]


@dataclass(frozen=True, slots=True)
class Gateway:
    """The running batcher, and the model that answers the text body."""

    batcher: PredictionBatcher
    text_model: str


@contextlib.asynccontextmanager
async def open_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """Open the configured backend and the batcher in front of it.

    Args:
        settings: Backend, batching and text model settings.

    Yields:
        The gateway; on exit the batcher stops before the backend closes.
    """
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


async def predict_agents(batcher: PredictionBatcher, request: ClientRequest, received_at: float) -> ClientAnswer:
    """Act for each of the client's agents, batched with other clients' agents.

    Args:
        batcher: The batcher.
        request: The client's agents.
        received_at: ``time.perf_counter()`` when the request arrived.

    Returns:
        Each agent with its action, and the seconds since arrival.
    """
    agents = request.observations
    results = await batcher.run([(agent_key(agent), agent.observations) for agent in agents.values()])
    # Agent keys reach Backend.predict, whose actions call_backend checked as finite floats.
    actions = cast(list[float], results)
    return {
        "actions": {name: {"action": action} for name, action in zip(agents, actions, strict=True)},
        "response_time": time.perf_counter() - received_at,
    }


async def predict_text(batcher: PredictionBatcher, request: TextRequest, model_name: str) -> TextAnswer:
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
