"""One robust connection to RabbitMQ: confirmed publishes, acknowledged consumers, a dead-letter queue.

Every work queue is a durable quorum queue. A message its consumer rejects as :class:`Poison`,
and one delivered more than ``BROKER_DELIVERY_LIMIT`` times (a message that keeps crashing its
consumer), goes to the dead-letter queue instead of circulating for ever. Publishes are
persistent and wait for the broker's confirm; one that meets a lost connection waits for the
robust connection to come back and tries again, up to ``BROKER_PUBLISH_TIMEOUT_S``, then raises
:class:`BrokerUnavailable`. A consumer acks a message only after its handler returned, that is
after the handler committed what the message asked for; a message whose consumer dies is
delivered again, so handlers are idempotent (the database guards every transition).
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
    DeliveryMode,
)
from aio_pika.exceptions import AMQPError

from fastapi1.config import Settings
from fastapi1.errors import ServiceUnavailable
from fastapi1.metrics import BROKER_CONSUMED, BROKER_PUBLISHED

logger = logging.getLogger(__name__)

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]
# What a publish or an ack may raise while the connection is away or being restored.
BROKER_ERRORS: tuple[type[Exception], ...] = (AMQPError, ConnectionError, OSError, RuntimeError)
# Seconds between the attempts of a publish that met a lost connection.
PUBLISH_RETRY_S = 0.1
# Seconds between the robust connection's attempts to reconnect (aio-pika's default is 5).
RECONNECT_INTERVAL_S = 1.0


class BrokerUnavailable(ServiceUnavailable):
    """The broker did not confirm a publish in time."""

    message = "Broker unavailable"


class Poison(Exception):
    """A message that no retry can handle (undecodable, unknown kind): dead-lettered at once."""


# The work queues fastapi1 declares, by short name: the delivery relay's and the prediction gateway's.
DELIVERIES_QUEUE = "deliveries"
PREDICTIONS_QUEUE = "predictions"
WORK_QUEUES = (DELIVERIES_QUEUE, PREDICTIONS_QUEUE)


@dataclass(frozen=True, slots=True)
class Topology:
    """The names of one deployment's exchanges and queues, all under one prefix."""

    prefix: str

    def queue(self, name: str) -> str:
        """The full name of the work queue ``name``.

        Args:
            name: The queue's short name (``deliveries``, ``predictions``).
        """
        return f"{self.prefix}.{name}"

    def label(self, queue: str) -> str:
        """The metrics label of a queue: its short name, or ``reply`` for a server-named reply queue.

        Args:
            queue: The queue's full name.
        """
        short = queue.removeprefix(f"{self.prefix}.")
        return "reply" if short == queue else short

    @property
    def dead_letter_exchange(self) -> str:
        """The exchange rejected messages are routed through."""
        return f"{self.prefix}.dead-letter"

    @property
    def dead_letter_queue(self) -> str:
        """Where rejected messages wait for an operator."""
        return f"{self.prefix}.dead-letters"


class Consumer:
    """A running consumer of one queue; :meth:`stop` lets its handlers finish."""

    def __init__(self, queue: AbstractRobustQueue, channel: AbstractRobustChannel) -> None:
        """Wrap a queue whose consumption has not started yet.

        Args:
            queue: The queue.
            channel: Its own channel (prefetch is per channel).
        """
        self.queue = queue
        self.channel = channel
        self.tag: str | None = None
        self.handling: set[asyncio.Task[Any]] = set()
        # Channels its handlers publish on, closed after them.
        self.side_channels: list[AbstractRobustChannel] = []

    async def stop(self, timeout_s: float) -> None:
        """Stop taking messages, let the handlers running finish (up to ``timeout_s``), close the channels.

        A handler cancelled here leaves its message unacknowledged: the broker delivers it again.

        Args:
            timeout_s: Seconds the running handlers may take.
        """
        if self.tag is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await self.queue.cancel(self.tag)
        if self.handling:
            _, unfinished = await asyncio.wait(set(self.handling), timeout=timeout_s)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        for channel in (self.channel, *self.side_channels):
            with contextlib.suppress(*BROKER_ERRORS):
                await channel.close()


class Broker:
    """The connection, a confirming channel to publish on, and the topology of a prefix."""

    def __init__(
        self, connection: AbstractRobustConnection, channel: AbstractRobustChannel, settings: Settings
    ) -> None:
        """Wrap an open connection (see :func:`open_broker`).

        Args:
            connection: The robust connection.
            channel: Its publishing channel, with publisher confirms.
            settings: Prefix, delivery limit, publish timeout.
        """
        self.connection = connection
        self.channel = channel
        self.settings = settings
        self.topology = Topology(settings.broker_prefix)
        self.declared: set[str] = set()

    def queue_arguments(self) -> dict[str, Any]:
        """The arguments of every work queue: quorum, dead-lettered, bounded redeliveries."""
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.topology.dead_letter_exchange,
            "x-delivery-limit": self.settings.broker_delivery_limit,
        }

    async def declare_dead_letters(self) -> None:
        """Declare the dead-letter exchange and its queue (idempotent)."""
        exchange = await self.channel.declare_exchange(
            self.topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await self.channel.declare_queue(
            self.topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange)
        self.declared.add(self.topology.dead_letter_queue)

    async def declare(self, name: str, channel: AbstractRobustChannel | None = None) -> AbstractRobustQueue:
        """Declare the work queue ``name`` (idempotent) on ``channel``, the publishing channel by default.

        Args:
            name: The queue's short name.
            channel: The channel to declare it on.

        Returns:
            The queue.
        """
        full_name = self.topology.queue(name)
        queue = await (channel or self.channel).declare_queue(full_name, durable=True, arguments=self.queue_arguments())
        self.declared.add(full_name)
        return queue

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        persistent: bool = True,
    ) -> None:
        """Publish to a work queue and wait until the broker confirms it.

        A lost connection is waited out (the robust connection reconnects by itself) until
        ``BROKER_PUBLISH_TIMEOUT_S``. A publish whose confirm was lost is sent again, so a
        message may arrive twice: consumers are idempotent.

        Args:
            queue: The queue's full name (:meth:`Topology.queue` of a work queue, or a reply queue).
            body: The message (JSON).
            message_id: Identifies the message in logs and the dead-letter queue.
            correlation_id: Pairs a reply with its request.
            reply_to: The queue a reply goes to.
            persistent: Whether the broker writes the message to disk.

        Raises:
            BrokerUnavailable: When no confirm arrived in time.
        """
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            reply_to=reply_to,
        )
        timeout_s = self.settings.broker_publish_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    try:
                        await self.channel.default_exchange.publish(message, routing_key=queue, mandatory=True)
                        BROKER_PUBLISHED.labels(self.topology.label(queue)).inc()
                        return
                    except BROKER_ERRORS as error:
                        logger.warning("Publish to %s failed, trying again: %r", queue, error)
                        await asyncio.sleep(PUBLISH_RETRY_S)
        except TimeoutError:
            raise BrokerUnavailable(f"no confirm from the broker within {timeout_s:g} s") from None

    async def consume(self, name: str, handler: Handler, prefetch: int) -> Consumer:
        """Start consuming a work queue on a channel of its own.

        The handler's return acks the message; :class:`Poison` rejects it to the dead-letter
        queue; any other exception requeues it (the queue's delivery limit dead-letters a
        message that keeps failing). Cancellation leaves it unacknowledged, to be delivered again.

        Args:
            name: The queue's short name.
            handler: Handles one message; returns once its effects are committed.
            prefetch: Unacknowledged messages this consumer holds at most.

        Returns:
            The running consumer.
        """
        channel = self.connection.channel()
        await channel.initialize()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await self.declare(name, channel)
        consumer = Consumer(queue, channel)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                consumer.handling.add(task)
            try:
                outcome = await settle(queue.name, message, handler)
                BROKER_CONSUMED.labels(self.topology.label(queue.name), outcome).inc()
            finally:
                if task is not None:
                    consumer.handling.discard(task)

        consumer.tag = await queue.consume(on_message)
        return consumer

    async def delete_declared(self) -> None:
        """Delete every queue this broker declared and the dead-letter exchange (throwaway topologies, tests)."""
        for name in sorted(self.declared):
            await self.channel.queue_delete(name)
        await self.channel.exchange_delete(self.topology.dead_letter_exchange)
        self.declared.clear()


async def settle(queue_name: str, message: AbstractIncomingMessage, handler: Handler) -> str:
    """Run the handler on a message and ack, dead-letter or requeue it by the outcome.

    Args:
        queue_name: For the log.
        message: The message.
        handler: Its handler.

    Returns:
        ``ack``, ``reject`` (dead-lettered) or ``requeue``.
    """
    try:
        await handler(message)
    except Poison as error:
        logger.error("Dead-lettering message %s of %s: %s", message.message_id, queue_name, error)
        outcome, settling = "reject", message.reject(requeue=False)
    except Exception:
        logger.exception("Message %s of %s failed; requeued", message.message_id, queue_name)
        outcome, settling = "requeue", message.nack(requeue=True)
    else:
        outcome, settling = "ack", message.ack()
    try:
        await settling
    except BROKER_ERRORS as error:
        # The connection went away: the broker delivers the message again, and the handler's
        # effects, already committed, are guarded against the repeat.
        logger.warning("Could not settle message %s of %s: %r", message.message_id, queue_name, error)
    return outcome


@contextlib.asynccontextmanager
async def open_broker(settings: Settings) -> AsyncIterator[Broker]:
    """Connect to ``BROKER_URL`` (robustly: it reconnects by itself) for the duration of the block.

    Args:
        settings: The broker's URL and knobs.

    Yields:
        The broker, its dead-letter queue declared.

    Raises:
        RuntimeError: When the broker cannot be reached at start-up.
    """
    assert settings.broker_url is not None
    url = settings.broker_url.get_secret_value()
    try:
        connection = await aio_pika.connect_robust(
            url,
            timeout=settings.broker_connect_timeout_s,
            reconnect_interval=RECONNECT_INTERVAL_S,
            client_properties={"connection_name": f"fastapi1 {settings.broker_prefix}"},
        )
    except BROKER_ERRORS as error:  # TimeoutError is an OSError
        raise RuntimeError(f"Cannot reach the broker at BROKER_URL: {error!r}") from error
    try:
        channel = connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.initialize()
        broker = Broker(connection, channel, settings)
        await broker.declare_dead_letters()
        yield broker
    finally:
        await connection.close()


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every queue and the dead-letter exchange fastapi1 declares under ``prefix`` (absent ones are fine).

    For throwaway prefixes (test runs, benchmark runs), whichever process declared the queues.

    Args:
        url: The broker.
        prefix: The prefix whose topology goes.
    """
    topology = Topology(prefix)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for name in WORK_QUEUES:
            await channel.queue_delete(topology.queue(name))
        await channel.queue_delete(topology.dead_letter_queue)
        await channel.exchange_delete(topology.dead_letter_exchange)
