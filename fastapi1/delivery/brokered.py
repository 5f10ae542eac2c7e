"""Delivery through RabbitMQ (``BROKER_URL`` set): the relay publishes claimed batches, consumers deliver them.

The relay side claims due rows with ``FOR UPDATE SKIP LOCKED``, publishes one message per batch
(the ids and, for each, the attempts it had) to the durable queue ``deliveries``, waits for the
broker's confirm and only then marks the rows ``sending`` under a lease and commits. A crash
between the publish and the commit leaves the rows as they were: they are published again.

The consumer side (every worker process) takes the rows a message names with a compare-and-swap
(still pending with exactly that attempt; the take bumps the attempt), delivers them with the
providers, records the outcomes with the guarded transitions, commits, and only then returns, so
that the broker core acks. A duplicate message, or one redelivered after its rows moved on,
takes nothing. A retry goes back through the outbox: the row falls due and is published again.
"""

import asyncio
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.broker.connection import DELIVERIES_QUEUE, Broker, BrokerUnavailable, Consumer, Poison
from fastapi1.config import DeliverySettings
from fastapi1.db.engine import Database
from fastapi1.delivery import dao
from fastapi1.delivery.controller import Outcome, Relay
from fastapi1.delivery.providers import Providers
from fastapi1.notifications import controller as notifications_controller

logger = logging.getLogger(__name__)

# The work queue's short name (its full name carries BROKER_PREFIX).
QUEUE = DELIVERIES_QUEUE


@dataclass(frozen=True, slots=True)
class Batch:
    """One message: the notifications of a claimed batch and the attempts each had when published."""

    ids: list[uuid.UUID]
    attempts: list[int]

    def encode(self) -> bytes:
        """The message body: ``{"ids": [...], "attempts": [...]}`` as JSON."""
        return orjson.dumps({"ids": [str(value) for value in self.ids], "attempts": self.attempts})

    @classmethod
    def decode(cls, body: bytes) -> "Batch":
        """Read a message body.

        Args:
            body: What :meth:`encode` wrote.

        Returns:
            The batch.

        Raises:
            Poison: When the body is not such a message; no retry could handle it.
        """
        try:
            document: Any = orjson.loads(body)
            ids, attempts = document["ids"], document["attempts"]
            if not isinstance(ids, list) or not isinstance(attempts, list):
                raise TypeError("ids and attempts must be lists")
            if not ids or len(ids) != len(attempts):
                raise ValueError("ids and attempts must be non-empty and of the same length")
            if not all(type(attempt) is int and attempt >= 0 for attempt in attempts):
                raise ValueError("attempts must be non-negative integers")
            return cls([uuid.UUID(value) for value in ids], attempts)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise Poison(f"not a delivery batch: {error!r}") from error


class Slots:
    """Taken rows in hand at most, reserved a message at a time, first come first served."""

    def __init__(self, total: int) -> None:
        """Start with every slot free.

        Args:
            total: The bound.
        """
        self.total = total
        self.free = total
        self.turn = asyncio.Lock()  # FIFO: a large batch is not overtaken for ever by small ones
        self.released = asyncio.Event()

    async def acquire(self, count: int) -> None:
        """Wait until ``count`` slots are free and take them.

        Args:
            count: At most :attr:`total`.
        """
        async with self.turn:
            while self.free < count:
                self.released.clear()
                await self.released.wait()
            self.free -= count

    def release(self, count: int) -> None:
        """Give slots back.

        Args:
            count: How many.
        """
        self.free += count
        self.released.set()


class BrokeredRelay(Relay):
    """Publishes claimed batches and consumes them: the worker's delivery when a broker is configured."""

    def __init__(
        self,
        database: Database,
        settings: DeliverySettings,
        providers: Providers,
        broker: Broker,
        prefetch: int,
        rng: random.Random | None = None,
    ) -> None:
        """Set up an idle relay.

        Args:
            database: Where the outbox is.
            settings: Concurrency, batch size, lease, retries.
            providers: Where messages go.
            broker: The open broker.
            prefetch: Unacknowledged messages the consumer holds at most (``BROKER_PREFETCH``).
            rng: Random source of the backoff jitter.
        """
        super().__init__(database, settings, providers, rng)
        self.broker = broker
        self.prefetch = prefetch
        self.queue_name = broker.topology.queue(QUEUE)
        # A message never names more rows than a consumer may deliver at once.
        self.batch_size = min(settings.delivery_batch_size, settings.delivery_concurrency)
        # Rows taken and not yet done: twice what may be sent at once, so that the next message is
        # taken while the sends of the last one finish, and a taken row waits for one round of sends.
        self.slots = Slots(2 * settings.delivery_concurrency)
        self.sending = asyncio.Semaphore(settings.delivery_concurrency)
        # A taken row waits this long for a send slot at most; with the send's own deadline (half
        # the lease) its outcome is recorded before the take's lease runs out.
        self.slot_wait_s = self.deadline_s / 2
        self.consumer: Consumer | None = None
        self.processing: set[asyncio.Task[None]] = set()  # messages' work, outliving a dropped channel

    async def run(self) -> None:
        """Consume and publish until :meth:`stop`; then let handlers finish (up to the timeout) and release."""
        await self.broker.declare(QUEUE)
        self.consumer = await self.broker.consume(QUEUE, self.handle, self.prefetch)
        try:
            async with asyncio.TaskGroup() as tasks:
                await self.claim_until_stopped(tasks)
        finally:
            # A handler cancelled here leaves its message unacked: redelivered, it takes nothing
            # (the rows released below are due again, for a relay to publish afresh).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.shutdown_timeout_s
            await self.consumer.stop(self.shutdown_timeout_s)
            if self.processing:  # work whose handler a dropped channel cancelled: the rest of the time
                _, unfinished = await asyncio.wait(set(self.processing), timeout=max(0.0, deadline - loop.time()))
                for work in unfinished:
                    work.cancel()
                await asyncio.gather(*unfinished, return_exceptions=True)
            await self.release()

    async def claim(self, tasks: asyncio.TaskGroup) -> bool:
        """Lock a batch of due notifications, publish it, and mark it sending once confirmed.

        Args:
            tasks: Unused: publishing runs in the loop itself.

        Returns:
            Whether the batch was full, so that more may be waiting.
        """
        try:
            async with self.database.write_sessions() as session, session.begin():
                rows = await dao.lock_due(session, self.batch_size)
                if rows:
                    await self.publish(session, rows)
        except BrokerUnavailable as error:
            # Rolled back: the rows are as they were, and the next claim publishes them again.
            logger.warning("Broker unavailable, publishing again shortly: %s", error)
            return False
        self.backlogged = len(rows) == self.batch_size
        return self.backlogged

    async def publish(self, session: AsyncSession, rows: Sequence[Row[tuple[uuid.UUID, int]]]) -> None:
        """Publish one message for the locked rows and, once the broker confirmed it, mark them published.

        Args:
            session: The transaction that holds the rows' locks.
            rows: Rows of :func:`dao.lock_due`.

        Raises:
            BrokerUnavailable: When the broker did not confirm in time (nothing is marked).
        """
        batch = Batch([row.id for row in rows], [row.attempts for row in rows])
        await self.broker.publish(self.queue_name, batch.encode(), message_id=uuid.uuid4().hex)
        await dao.mark_published(session, batch.ids, self.lease)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Deliver what a message names and commit the outcomes; the broker core acks on return.

        Args:
            message: A message of the deliveries queue.

        Raises:
            Poison: When the message is not a delivery batch.
        """
        batch = Batch.decode(message.body)
        # The channel cancels its handlers when the connection drops; the work must not stop
        # there (a send cut off before its outcome is recorded would be sent again after the
        # lease). It runs as a task of the relay: it commits, the ack fails, the broker delivers
        # the message again, and the take finds nothing left to take.
        work = asyncio.create_task(self.process(batch))
        self.processing.add(work)
        work.add_done_callback(self.processing.discard)
        await asyncio.shield(work)

    async def process(self, batch: Batch) -> None:
        """Take, deliver and record a message's batch.

        Args:
            batch: The message.
        """
        reserved = Reservation(self.slots, min(len(batch.ids), self.slots.total))
        await reserved.acquire()
        try:
            rows = await self.take(batch)
            reserved.keep(len(rows))
            if rows:
                await self.deliver_taken(rows, reserved)
        finally:
            reserved.release_all()

    async def take(self, batch: Batch) -> Sequence[Row[tuple[object, ...]]]:
        """Take the batch's rows still waiting for its attempts, retrying while the database is away.

        Args:
            batch: The message.

        Returns:
            The rows taken (none for a duplicate or stale message).
        """
        taken: Sequence[Row[tuple[object, ...]]] = []

        async def write(session: AsyncSession) -> None:
            nonlocal taken
            taken = await dao.take(session, batch.ids, batch.attempts, self.lease)

        await self.write(write, f"the take of {len(batch.ids)} notifications")
        self.held.update((row.id, row.attempts) for row in taken)
        return taken

    async def deliver_taken(self, rows: Sequence[Row[tuple[object, ...]]], reserved: "Reservation") -> None:
        """Deliver taken rows, at most ``DELIVERY_CONCURRENCY`` at once, then record every outcome in one statement.

        A row that waited too long for a free slot is not sent: it is made due again at once
        (its attempt counted), so that its outcome is always recorded while the take holds.

        Args:
            rows: Rows of :func:`dao.take`.
            reserved: The window slots reserved for them; one goes back as each row is done.
        """
        templates: notifications_controller.ScannedTemplates = {}
        remaining = len(rows)

        async def one(row: Row[tuple[object, ...]]) -> Outcome:
            nonlocal remaining
            try:
                try:
                    async with asyncio.timeout(self.slot_wait_s):
                        await self.sending.acquire()
                except TimeoutError:
                    logger.warning("Notification %s: no free slot in time; due again", row.id)
                    return dao.SENDING, 0.0
                try:
                    return await self.send(row, templates)
                finally:
                    self.sending.release()
            finally:
                remaining -= 1
                reserved.keep(remaining)

        async with asyncio.TaskGroup() as attempts:
            tasks = [attempts.create_task(one(row)) for row in rows]
        outcomes = dao.Outcomes()
        for row, task in zip(rows, tasks, strict=True):
            status, delay = task.result()
            outcomes.add(row.id, status, row.attempts, delay)
        await self.record(outcomes)


class Reservation:
    """Slots one message holds: given back as its rows finish, all of them when it is done."""

    def __init__(self, slots: Slots, count: int) -> None:
        """Prepare to reserve ``count`` slots.

        Args:
            slots: The process's slots.
            count: How many this message needs.
        """
        self.slots = slots
        self.count = count
        self.held = 0

    async def acquire(self) -> None:
        """Wait for the slots and hold them."""
        await self.slots.acquire(self.count)
        self.held = self.count

    def keep(self, needed: int) -> None:
        """Give back the slots beyond ``needed``.

        Args:
            needed: Rows of the message still to finish.
        """
        if self.held > needed:
            self.slots.release(self.held - needed)
            self.held = needed

    def release_all(self) -> None:
        """Give back every slot still held."""
        self.keep(0)
