"""Predictions over the broker, the API's side: a request's rows go to the workers' batchers, the answer comes back.

With ``BROKER_URL`` set an API process does not batch. Each synchronous request becomes one
message on the durable queue ``predictions`` (its rows, their keys and its deadline, JSON), with
``reply_to`` naming the process's own reply queue (exclusive and auto-deleted: it lives exactly
as long as the process's connection) and a ``correlation_id`` that pairs the answer with the
request's future. Every worker process consumes ``predictions`` into its batcher, so rows from
every API process and replica share batches. The answer is the rows' results in order, or the
status and detail of a failure (502 for a failed batch, 503 for a full worker queue).

A request waits at most ``BACKEND_TIMEOUT_S + BROKER_REPLY_MARGIN_S``, then gets 504; the
deadline travels in the message, so a worker drops a request whose client stopped waiting
without calling the backend. The rows an API process has waiting are bounded by
``BATCH_MAX_QUEUE`` as on the in-process path (503 with ``Retry-After`` past it).
"""

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel

from fastapi1.broker.connection import BROKER_ERRORS, PREDICTIONS_QUEUE, Broker, Poison
from fastapi1.config import Settings
from fastapi1.errors import BackendFailed, GatewayTimeout, Overloaded, ServiceUnavailable
from fastapi1.predictions.backends import BatchKey, Result, Row
from fastapi1.predictions.batcher import CALL_SECONDS_SMOOTHING, BatchPolicy

logger = logging.getLogger(__name__)

# The work queue of synchronous predictions (short name, under BROKER_PREFIX).
Kind = Literal["agents", "text"]
KINDS = frozenset({"agents", "text"})


@dataclass(frozen=True, slots=True)
class PredictionMessage:
    """One request as a worker reads it: its rows with their keys, and when its client stops waiting."""

    items: list[tuple[BatchKey, Row]]
    deadline: float  # time.time() seconds


def encode_request(items: Sequence[tuple[BatchKey, Row]], deadline: float) -> bytes:
    """The message of one request: each row with its key's model and agent type (the width is the row's).

    Args:
        items: ``(key, row)`` pairs in request order.
        deadline: ``time.time()`` after which nobody waits for the answer.
    """
    rows = [(key.kind, key.nn_model_name, key.agent_type, row) for key, row in items]
    return orjson.dumps({"deadline": deadline, "rows": rows})


def decode_item(kind: str, model: str, agent_type: str | None, row: Row) -> tuple[BatchKey, Row]:
    """One row of a message with its batch key.

    Args:
        kind: ``agents`` or ``text``.
        model: The model.
        agent_type: The agent type (None for text).
        row: Observations, or the text.

    Raises:
        ValueError: When the parts do not fit together.
    """
    if kind not in KINDS or not isinstance(model, str) or isinstance(row, str) != (kind == "text"):
        raise ValueError(f"not a {kind} row")
    width = 0 if isinstance(row, str) else len(row)
    return BatchKey(cast(Kind, kind), model, agent_type, width), row


def decode_request(body: bytes) -> PredictionMessage:
    """Read a request message (the API validated its rows; only the shape is checked here).

    Args:
        body: The message body.

    Raises:
        Poison: When the body is not such a message: no worker could ever answer it.
    """
    try:
        payload = orjson.loads(body)
        items = [decode_item(*item) for item in payload["rows"]]
        return PredictionMessage(items, float(payload["deadline"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise Poison(f"not a prediction request: {error!r}") from None


def encode_results(results: Sequence[Result]) -> bytes:
    """The answer of a request whose rows all have results.

    Args:
        results: One per row, in request order.
    """
    return orjson.dumps({"results": results})


def encode_failure(status: int, detail: str, retry_after: int | None = None) -> bytes:
    """The answer of a request that failed.

    Args:
        status: 502 (its batch failed) or 503 (the worker's queue is full).
        detail: The message for the client.
        retry_after: Seconds for ``Retry-After`` (503).
    """
    return orjson.dumps({"status": status, "detail": detail, "retry_after": retry_after})


def decode_reply(body: bytes) -> list[Result]:
    """The results of a reply, or the error it carries.

    Args:
        body: The reply's body.

    Raises:
        BackendFailed: The request's batch failed (or the reply is unreadable).
        Overloaded: The worker's queue was full.
    """
    try:
        payload = orjson.loads(body)
        if "results" in payload:
            return cast(list[Result], payload["results"])
        status, detail = int(payload["status"]), str(payload["detail"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        logger.error("Unreadable prediction reply: %r", body[:200])
        raise BackendFailed("Backend failed: unreadable answer from the prediction worker") from None
    if status == Overloaded.status_code:
        raise Overloaded(detail, int(payload.get("retry_after") or 1))
    raise BackendFailed(detail)


class RemoteRows:
    """Stands where the batcher stands in an API process: ``run`` sends a request's rows to the workers.

    An async context manager: entering declares the work queue and this process's reply queue
    and starts consuming replies; leaving fails whatever still waits with 503.
    """

    def __init__(self, broker: Broker, policy: BatchPolicy, reply_timeout_s: float) -> None:
        """Prepare an idle client of the workers.

        Args:
            broker: The open broker.
            policy: ``max_queue`` bounds the rows waiting for answers.
            reply_timeout_s: Seconds a request waits for its answer (then 504).
        """
        self.broker = broker
        self.policy = policy
        self.reply_timeout_s = reply_timeout_s
        self.work_queue = broker.topology.queue(PREDICTIONS_QUEUE)
        self.reply_queue = f"{broker.topology.prefix}.prediction-replies.{uuid.uuid4().hex}"
        self.pending: dict[str, asyncio.Future[list[Result]]] = {}
        self.queued_rows = 0
        self.reply_seconds = 1.0
        self.channel: AbstractRobustChannel | None = None

    async def __aenter__(self) -> "RemoteRows":
        """Declare the queues and consume this process's replies."""
        await self.broker.declare(PREDICTIONS_QUEUE)
        self.channel = channel = self.broker.connection.channel()
        await channel.initialize()
        # Exclusive and auto-deleted: it goes with this process's connection (a worker then
        # drops what was meant for it), and the robust connection declares it again on reconnect.
        queue = await channel.declare_queue(self.reply_queue, exclusive=True, auto_delete=True)
        await queue.consume(self.on_reply, no_ack=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Fail the requests still waiting and stop consuming replies.

        Args:
            exc_info: The exception leaving the block, if any.
        """
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ServiceUnavailable("The prediction service is shutting down"))
        if self.channel is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await self.channel.close()

    async def on_reply(self, message: AbstractIncomingMessage) -> None:
        """Hand a reply to the request waiting for it (none: it gave up already).

        Args:
            message: The reply.
        """
        future = self.pending.get(message.correlation_id or "")
        if future is None or future.done():
            return
        try:
            future.set_result(decode_reply(message.body))
        except (BackendFailed, Overloaded) as error:
            future.set_exception(error)

    async def run(self, items: Sequence[tuple[BatchKey, Row]]) -> list[Result]:
        """Have a worker batch the rows of one request, and answer in the order of ``items``.

        Args:
            items: ``(key, row)`` pairs of one request.

        Raises:
            Overloaded: When the rows would take this process's waiting rows past ``BATCH_MAX_QUEUE``.
            BrokerUnavailable: When the broker did not take the request in time.
            GatewayTimeout: When no answer came before the deadline.
        """
        if not items:
            return []
        if self.queued_rows + len(items) > self.policy.max_queue:
            raise Overloaded(
                f"Prediction queue full (rows waiting: {self.queued_rows}); retry later", self._retry_after()
            )
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self.pending[correlation_id] = future
        self.queued_rows += len(items)
        started = time.monotonic()
        try:
            return await self._ask(correlation_id, items, future)
        finally:
            del self.pending[correlation_id]
            self.queued_rows -= len(items)
            self.reply_seconds += CALL_SECONDS_SMOOTHING * (time.monotonic() - started - self.reply_seconds)

    async def _ask(
        self, correlation_id: str, items: Sequence[tuple[BatchKey, Row]], future: asyncio.Future[list[Result]]
    ) -> list[Result]:
        """Publish the request and wait for its answer until the deadline.

        Args:
            correlation_id: Pairs the answer with ``future``.
            items: The rows.
            future: Resolved by :meth:`on_reply`.
        """
        deadline = time.time() + self.reply_timeout_s
        body = encode_request(items, deadline)
        # Not persistent: the reply queue does not outlive a broker restart either.
        await self.broker.publish(
            self.work_queue,
            body,
            message_id=correlation_id,
            correlation_id=correlation_id,
            reply_to=self.reply_queue,
            persistent=False,
        )
        try:
            async with asyncio.timeout(max(0.0, deadline - time.time())):
                return await future
        except TimeoutError:
            raise GatewayTimeout(
                f"No prediction worker answered within {self.reply_timeout_s:g} s; retry later"
            ) from None

    def _retry_after(self) -> int:
        """Seconds until the waiting rows are likely answered: the recent time to an answer.

        Returns:
            At least 1.
        """
        return max(1, math.ceil(self.reply_seconds))


@contextlib.asynccontextmanager
async def open_remote_rows(broker: Broker, settings: Settings) -> AsyncIterator[RemoteRows]:
    """The API's client of the workers' batchers for the duration of the block.

    Args:
        broker: The open broker.
        settings: ``BATCH_MAX_QUEUE``, ``BACKEND_TIMEOUT_S`` and ``BROKER_REPLY_MARGIN_S``.

    Yields:
        The running client.
    """
    timeout_s = settings.backend_timeout_s + settings.broker_reply_margin_s
    async with RemoteRows(broker, BatchPolicy.from_settings(settings), timeout_s) as rows:
        yield rows
