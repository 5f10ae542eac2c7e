"""Model backends behind the batcher: the protocol, the in-process mock and the HTTP client.

One call carries one batch: rows that share a :class:`BatchKey`. The wire shapes are the
original skeleton's ``BackendRequest`` and ``BackendResponse``; the text model, which the
skeleton did not have, gets the same shape with ``input_array`` and ``result_array``.
"""

import asyncio
import contextlib
import hashlib
import math
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple, Protocol, TypeVar, cast

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, Strict, StrictStr, ValidationError

from fastapi1.config import Settings

MOCK_FAILURE = "mock-failure"
TEXT_RESULT_MIN = 1_000
TEXT_RESULT_MAX = 20_000

Row = list[float] | str
Result = float | str
FiniteNumber = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class BatchKey(NamedTuple):
    """What rows must share to travel in one backend call."""

    kind: Literal["agents", "text"]
    nn_model_name: str
    agent_type: str | None
    # A matrix has one row length, so rows of different lengths never share a batch; 0 for text.
    width: int


class BackendError(Exception):
    """A backend call failed; the message is shown to the clients of that batch."""


@dataclass(frozen=True, slots=True)
class RowFailed:
    """The answer for one row of a call that otherwise succeeded: that row's request fails, no other."""

    reason: str


class BackendRequest(BaseModel):
    """One batch of observations for ``POST /models/{nn_model_name}/predict``."""

    model_config = ConfigDict(extra="forbid")

    agent_type: str | None = None
    observation_array: list[list[FiniteNumber]]


class BackendResponse(BaseModel):
    """One action per row of the batch, in row order; null (or NaN, infinity) where a row has none."""

    # Per row, not per batch: a model that cannot answer one client's row (the mock's sum that
    # overflows, which JSON carries as null) must not fail the other clients' rows.
    actions_array: list[Annotated[float, Strict()] | None]


class TextBackendRequest(BaseModel):
    """One batch of texts for the text model."""

    model_config = ConfigDict(extra="forbid")

    input_array: list[str]


class TextBackendResponse(BaseModel):
    """One result per text of the batch, in order."""

    result_array: list[StrictStr]


class Backend(Protocol):
    """A model server: one awaited call per batch."""

    async def predict(self, nn_model_name: str, agent_type: str | None, observations: list[list[float]]) -> list[float]:
        """Answer one action per observation row.

        Args:
            nn_model_name: The model.
            agent_type: The agent type every row shares.
            observations: Rows of one length.
        """

    async def generate(self, model_name: str, inputs: list[str]) -> list[str]:
        """Answer one result per text.

        Args:
            model_name: The text model.
            inputs: The texts.
        """


def mock_text_result(text: str) -> str:
    """The mock text model's answer: a whole number in 1,000-20,000, the same for the same text.

    Args:
        text: The input.

    Returns:
        The number, as a string.
    """
    # surrogatepass: a str may hold a lone surrogate that strict UTF-8 cannot encode.
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return str(TEXT_RESULT_MIN + int.from_bytes(digest) % (TEXT_RESULT_MAX - TEXT_RESULT_MIN + 1))


class MockBackend:
    """The in-process stand-in for a neural network: slow per call, cheap per row."""

    def __init__(self, delay_min_s: float, delay_max_s: float) -> None:
        """Keep the range of the per-call delay.

        Args:
            delay_min_s: Shortest delay.
            delay_max_s: Longest delay.
        """
        self.delay_min_s = delay_min_s
        self.delay_max_s = delay_max_s

    async def work(self, model_name: str) -> None:
        """Spend one call's time, then fail if the model is the one that always fails.

        Args:
            model_name: The model called.

        Raises:
            BackendError: For the model ``mock-failure``.
        """
        await asyncio.sleep(random.uniform(self.delay_min_s, self.delay_max_s))  # noqa: S311 (latency, not secrets)
        if model_name == MOCK_FAILURE:
            raise BackendError(f"model {MOCK_FAILURE} fails every call")

    async def predict(self, nn_model_name: str, agent_type: str | None, observations: list[list[float]]) -> list[float]:
        """Answer the sum of each row.

        Args:
            nn_model_name: The model.
            agent_type: The agent type (the mock ignores it).
            observations: The rows.

        Returns:
            One sum per row (infinite when it overflows, which call_backend refuses).
        """
        await self.work(nn_model_name)
        return [sum(row) for row in observations]

    async def generate(self, model_name: str, inputs: list[str]) -> list[str]:
        """Answer a number derived from each text.

        Args:
            model_name: The text model.
            inputs: The texts.
        """
        await self.work(model_name)
        return [mock_text_result(text) for text in inputs]


M = TypeVar("M", bound=BaseModel)


def model_path(model_name: str) -> str:
    """The path of a model's predict endpoint, relative to the backend URL.

    Args:
        model_name: A name of ``A-Z a-z 0-9 . _ : -``.

    Returns:
        ``models/{name}/predict``, the name escaped so that ``.`` and ``..`` stay names
        instead of becoming the dot segments that URL normalisation removes.
    """
    segment = model_name if model_name.strip(".") else model_name.replace(".", "%2E")
    return f"models/{segment}/predict"


class HttpBackend:
    """A model server over HTTP, through one pooled client."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        """Use a client opened by the caller, whose ``base_url`` is the backend URL.

        Args:
            client: The pooled client.
        """
        self.client = client

    async def predict(self, nn_model_name: str, agent_type: str | None, observations: list[list[float]]) -> list[float]:
        """Post one batch of observations.

        Args:
            nn_model_name: The model.
            agent_type: The agent type every row shares.
            observations: The rows.
        """
        body = {"agent_type": agent_type, "observation_array": observations}
        actions = (await self.post(nn_model_name, body, BackendResponse)).actions_array
        # A row without an action becomes NaN, which call_backend fails for that row alone.
        return [math.nan if action is None else action for action in actions]

    async def generate(self, model_name: str, inputs: list[str]) -> list[str]:
        """Post one batch of texts.

        Args:
            model_name: The text model.
            inputs: The texts.
        """
        return (await self.post(model_name, {"input_array": inputs}, TextBackendResponse)).result_array

    async def post(self, model_name: str, body: Mapping[str, object], answer: type[M]) -> M:
        """Post a batch and validate the answer's shape.

        Args:
            model_name: The model.
            body: The JSON body.
            answer: The model the answer must fit.

        Raises:
            BackendError: When the backend cannot be reached, answers an error status or a
                body of another shape.
        """
        # orjson, not a pydantic model: a batch is up to 64 x 4,096 numbers already validated.
        content = orjson.dumps(body)
        try:
            response = await self.client.post(
                model_path(model_name), content=content, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as error:
            raise BackendError(f"model {model_name} unreachable ({type(error).__name__})") from error
        if response.status_code != httpx.codes.OK:
            raise BackendError(f"model {model_name} answered HTTP {response.status_code}")
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as error:
            raise BackendError(f"model {model_name} answered a body of the wrong shape") from error


async def call_backend(backend: Backend, key: BatchKey, rows: list[Row]) -> Sequence[Result | RowFailed]:
    """Make the backend call for one batch of rows sharing ``key``.

    Args:
        backend: The backend.
        key: What the rows share.
        rows: Observation vectors for agent keys, texts for the text key (as the controller built them).

    Returns:
        One result per row (the batcher checks the count); a RowFailed for an action that is
        not a finite number (JSON cannot carry it back), which fails only that row's request:
        one client's observations whose sum overflows must not fail the other clients' rows.
    """
    if key.kind == "text":
        return await backend.generate(key.nn_model_name, cast(list[str], rows))
    actions = await backend.predict(key.nn_model_name, key.agent_type, cast(list[list[float]], rows))
    if all(map(math.isfinite, actions)):
        return actions
    not_finite = RowFailed(f"model {key.nn_model_name} answered an action that is not a finite number")
    return [action if math.isfinite(action) else not_finite for action in actions]


@contextlib.asynccontextmanager
async def open_backend(settings: Settings) -> AsyncIterator[Backend]:
    """Open the configured backend: HTTP when ``BACKEND_URL`` is set, else the in-process mock.

    Args:
        settings: Backend URL, timeout, mock delays, and the concurrency that sizes the pool.

    Yields:
        The backend, until the application stops.
    """
    if settings.backend_url is None:
        yield MockBackend(settings.backend_delay_min_s, settings.backend_delay_max_s)
        return
    # The batcher never has more calls in flight than this, so no call waits for a connection.
    connections = settings.batch_max_concurrency
    async with httpx.AsyncClient(
        base_url=str(settings.backend_url),
        # One bound for every backend alike: the batcher gives each whole call BACKEND_TIMEOUT_S.
        timeout=None,  # noqa: S113
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        # The model server is an internal peer: no proxy picked up from the environment.
        trust_env=False,
    ) as client:
        yield HttpBackend(client)
