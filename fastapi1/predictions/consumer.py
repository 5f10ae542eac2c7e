"""Predictions over the broker, the worker's side: requests of every API process answered by one batcher.

Each worker process consumes the queue ``predictions`` (see :mod:`fastapi1.predictions.remote`)
with a deep prefetch (``PREDICTION_PREFETCH``): a message waits in the batcher, not in the
broker, so rows from many API processes are in the batcher at once and fill its batches. A
message is acked once its answer is published (or once it is dropped); a worker that dies
holding it leaves it to be delivered again, to another worker if the request is still wanted.

A request whose client has gone costs no backend call: past its deadline, or when its reply
queue no longer exists (the API process went away), it is dropped unanswered; a deadline
that passes while its rows wait withdraws them from the batcher.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, DeliveryMode
from aio_pika.exceptions import ChannelNotFoundEntity
from aiormq.abc import AbstractChannel
from aiormq.exceptions import ChannelLockedResource

from fastapi1.broker.connection import BROKER_ERRORS, PREDICTIONS_QUEUE, Broker, Consumer, Poison
from fastapi1.errors import BackendFailed, Overloaded
from fastapi1.predictions.controller import Gateway
from fastapi1.predictions.remote import (
    PredictionMessage,
    decode_request,
    encode_failure,
    encode_results,
)

logger = logging.getLogger(__name__)

# Seconds a reply queue's existence is taken as known: one broker round trip per API process
# and second, not one per message.
REPLY_QUEUE_CHECK_S = 1.0
# Reply queues remembered before the stale answers are forgotten.
REPLY_QUEUES_REMEMBERED = 1024


@dataclass(slots=True)
class ReplyQueueCheck:
    """The latest question about one reply queue, and the answer of the last one that finished."""

    asked_at: float  # time.monotonic()
    answer: asyncio.Future[bool]
    known: bool | None = None


class ReplyQueues:
    """Whether the reply queues of API processes still exist, asked of the broker at most once a second each.

    Only a queue not heard of yet makes a message wait for the broker's answer. For a known
    queue the last answer stands while a fresh one is asked in the background: the round trips
    (a channel opened, a passive declaration, the channel closed) stay off every request's path.
    """

    def __init__(self, broker: Broker) -> None:
        """Remember nothing yet.

        Args:
            broker: The broker the queues are on.
        """
        self.broker = broker
        self.checks: dict[str, ReplyQueueCheck] = {}

    async def alive(self, name: str) -> bool:
        """Whether the queue ``name`` exists (True when the broker cannot tell right now).

        Args:
            name: A reply queue.
        """
        now = time.monotonic()
        check = self.checks.get(name)
        if check is None or (now - check.asked_at > REPLY_QUEUE_CHECK_S and check.answer.done()):
            if check is None and len(self.checks) >= REPLY_QUEUES_REMEMBERED:
                self.checks = {
                    key: value for key, value in self.checks.items() if now - value.asked_at <= REPLY_QUEUE_CHECK_S
                }
            check = self._ask(name, check, now)
        if check.known is not None:
            return check.known
        # Shared by every message for that queue: one caller's cancellation must not cancel the others'.
        return await asyncio.shield(check.answer)

    def _ask(self, name: str, check: ReplyQueueCheck | None, now: float) -> ReplyQueueCheck:
        """Start asking the broker about ``name``; its answer becomes the known one when it arrives.

        Args:
            name: A reply queue.
            check: The previous check of that queue, if any.
            now: ``time.monotonic()``.

        Returns:
            The queue's check, asking.
        """
        answer = asyncio.ensure_future(self.ask(name))
        if check is None:
            check = self.checks[name] = ReplyQueueCheck(now, answer)
        else:
            check.asked_at, check.answer = now, answer

        def learn(done: asyncio.Future[bool]) -> None:
            if check.answer is done and not done.cancelled() and done.exception() is None:
                check.known = done.result()

        answer.add_done_callback(learn)
        return check

    async def ask(self, name: str) -> bool:
        """Ask the broker on a channel of its own: a passive declaration's refusal closes its channel.

        Args:
            name: A reply queue.
        """
        transport = self.broker.connection.transport
        if transport is None:
            return True  # reconnecting: publishing the answer will tell
        try:
            channel = await transport.connection.channel(publisher_confirms=False)
        except BROKER_ERRORS:
            return True
        try:
            return await declared(channel, name)
        finally:
            with contextlib.suppress(*BROKER_ERRORS):
                await channel.close()


async def declared(channel: AbstractChannel, name: str) -> bool:
    """Whether a queue exists, by a passive declaration (True when the broker cannot tell).

    Args:
        channel: A channel the refusal may close.
        name: The queue.
    """
    try:
        await channel.queue_declare(name, passive=True)
    except ChannelLockedResource:
        return True  # exclusive to the connection of its API process, which is alive
    except ChannelNotFoundEntity:
        return False
    except BROKER_ERRORS:
        return True
    return True


class PredictionRequests:
    """Answers the messages of the ``predictions`` queue through a gateway's batcher."""

    def __init__(self, broker: Broker, gateway: Gateway, channel: AbstractRobustChannel) -> None:
        """Answer with ``gateway`` on ``broker``.

        Args:
            broker: Where the answers are published.
            gateway: The worker's batcher.
            channel: The channel the answers are published on, without publisher confirms.
        """
        self.broker = broker
        self.gateway = gateway
        self.channel = channel
        self.replies = ReplyQueues(broker)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Answer one request, or drop it when its client has gone; returning acks it.

        Args:
            message: The request.

        Raises:
            Poison: When the message is not a request, or names no reply queue.
        """
        request = decode_request(message.body)
        if not message.reply_to or not message.correlation_id:
            raise Poison("a prediction request without reply_to or correlation_id")
        remaining = request.deadline - time.time()
        if remaining <= 0 or not await self.replies.alive(message.reply_to):
            logger.info("Dropped prediction request %s: its client stopped waiting", message.message_id)
            return
        answer = await self.answer(request, remaining)
        if answer is None:
            logger.info("Dropped prediction request %s: its deadline passed in the queue", message.message_id)
            return
        await self.reply(message.reply_to, message.correlation_id, answer)

    async def answer(self, request: PredictionMessage, remaining: float) -> bytes | None:
        """Run the rows through the batcher: the answer's body, or None once the deadline has passed.

        A worker that is shutting down raises its 503 instead, so that the message is requeued
        for another worker.

        Args:
            request: The request.
            remaining: Seconds until its deadline.
        """
        try:
            async with asyncio.timeout(remaining):
                return encode_results(await self.gateway.batcher.run(request.items))
        except TimeoutError:
            return None
        except BackendFailed as error:
            return encode_failure(error.status_code, error.message)
        except Overloaded as error:
            return encode_failure(error.status_code, error.message, int(error.headers["Retry-After"]))

    async def reply(self, reply_to: str, correlation_id: str, body: bytes) -> None:
        """Publish an answer to the reply queue of its API process, unconfirmed.

        An answer is not worth a confirm: one the broker loses (a cut connection, a reply queue
        gone with its API process) costs its client a ``504`` at its deadline, and waiting for
        confirms, one round trip per answer on the channel the deliveries' confirms share,
        would only hold the request's ack back.

        Args:
            reply_to: The reply queue.
            correlation_id: The request's.
            body: The answer.
        """
        message = aio_pika.Message(
            body,
            content_type="application/json",
            correlation_id=correlation_id,
            delivery_mode=DeliveryMode.NOT_PERSISTENT,
        )
        async with asyncio.timeout(self.broker.settings.broker_publish_timeout_s):
            await self.channel.default_exchange.publish(message, routing_key=reply_to)


async def serve_predictions(broker: Broker, gateway: Gateway, prefetch: int) -> Consumer:
    """Start answering the synchronous predictions of every API process.

    Args:
        broker: The open broker.
        gateway: The worker's batcher, shared with its prediction jobs.
        prefetch: Requests held at once (``PREDICTION_PREFETCH``).

    Returns:
        The running consumer; stop it before the gateway closes (that closes the answers' channel too).
    """
    channel = broker.connection.channel(publisher_confirms=False)
    await channel.initialize()
    try:
        consumer = await broker.consume(
            PREDICTIONS_QUEUE, PredictionRequests(broker, gateway, channel).handle, prefetch
        )
    except BaseException:
        with contextlib.suppress(*BROKER_ERRORS):
            await channel.close()
        raise
    consumer.side_channels.append(channel)
    return consumer
