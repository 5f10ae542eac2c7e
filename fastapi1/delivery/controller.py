"""The relay: claim due notifications, deliver them concurrently, record each outcome.

One :class:`Relay` per worker process. It claims in batches (``FOR UPDATE SKIP LOCKED``, so
workers never share a row), commits the claim (status ``sending`` and a lease) before any
provider is called, and records the outcomes of a batch in one guarded UPDATE. Whatever a
worker holds when it dies is claimed again when the lease runs out.
"""

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import Row
from sqlalchemy import exc as sa_exc

from fastapi1.config import DeliverySettings
from fastapi1.db.engine import Database
from fastapi1.delivery import dao
from fastapi1.delivery.providers import Message, PermanentFailure, Providers, TransientFailure
from fastapi1.errors import DATABASE_UNAVAILABLE, database_unavailable
from fastapi1.notifications import controller as notifications_controller
from fastapi1.services import templating

logger = logging.getLogger(__name__)

DELIVERED = "delivered"
PERMANENT_FAILURE = "permanent-failure"
TEMPORARY_FAILURE = "temporary-failure"
TECHNICAL_FAILURE = "technical-failure"
SENDING = dao.SENDING
# Due rows that an empty claim skipped are locked by another worker's claim, which commits
# within milliseconds; waiting this long instead of not at all keeps the loop from spinning.
MIN_WAIT_S = 0.01
# What database calls may raise when the database is away; database_unavailable() tells which.
DATABASE_ERRORS: tuple[type[Exception], ...] = (*DATABASE_UNAVAILABLE, sa_exc.DBAPIError)
Outcome = tuple[str, float | None]  # new status, and seconds until due again when it stays pending


def backoff(attempt: int, base_s: float, rng: random.Random) -> float:
    """Seconds before the retry after ``attempt``: exponential, with full jitter.

    Full jitter (uniform between 0 and the exponential bound) spreads the retries of a
    provider outage instead of sending them back together.

    Args:
        attempt: The attempt that failed, from 1.
        base_s: Bound of the first retry's wait.
        rng: The random source.
    """
    return rng.uniform(0, base_s * 2 ** (attempt - 1))


def plain_body(personalization: dict[str, str]) -> str:
    """The body of a notification without a template: its personalization, one ``key: value`` per line.

    Args:
        personalization: The personalization.
    """
    return "\n".join(f"{key}: {value}" for key, value in sorted(personalization.items()))


def to_message(row: Row[tuple[object, ...]], templates: dict[uuid.UUID, templating.ParsedTemplate]) -> Message:
    """Render a claimed notification into the message a provider sends.

    Args:
        row: A row of :func:`dao.claim`.
        templates: Templates scanned for this batch so far, by id.
    """
    values = row._mapping
    keys, texts = values["personalization_keys"], values["personalization_values"]
    personalization = dict(zip(keys, texts, strict=True)) if keys else {}
    template = notifications_controller.stored_template(values, templates)
    if template is None:
        return Message(values["id"], values["to"], None, plain_body(personalization))
    subject, body = template.render(personalization)
    return Message(values["id"], values["to"], subject, body)


class Relay:
    """Claims, delivers and records until stopped; owns its delivery tasks."""

    def __init__(
        self, database: Database, settings: DeliverySettings, providers: Providers, rng: random.Random | None = None
    ) -> None:
        """Set up an idle relay.

        Args:
            database: Where the outbox is.
            settings: Concurrency, batch size, lease, retries.
            providers: Where messages go.
            rng: Random source of the backoff jitter.
        """
        self.database = database
        self.settings = settings
        self.providers = providers
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self.lease = timedelta(seconds=settings.delivery_lease_s)
        # A delivery that outlives half its lease is abandoned as transient, so its outcome is
        # recorded while the claim still holds and no other worker starts a second attempt.
        self.deadline_s = settings.delivery_lease_s / 2
        self.free = settings.delivery_concurrency
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.batches: set[asyncio.Task[None]] = set()
        self.held: dict[uuid.UUID, int] = {}  # claimed and not yet recorded: id -> attempt

    def notify(self) -> None:
        """Claim now: new notifications were committed (or a listener reconnected)."""
        self.wake.set()

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then lets deliveries in flight finish and returns."""
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        """Relay until :meth:`stop`, then finish (up to the shutdown timeout) and release the rest."""
        async with asyncio.TaskGroup() as deliveries:
            await self.claim_until_stopped(deliveries)
            await self.finish_deliveries()
        await self.release()

    async def claim_until_stopped(self, deliveries: asyncio.TaskGroup) -> None:
        """Claim whenever woken (NOTIFY, a free slot, the timer) until stopped.

        Args:
            deliveries: Owner of the delivery tasks.
        """
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                if await self.claim(deliveries):
                    continue  # a full batch: more may be due
                delay = await self.idle_delay()
            except DATABASE_ERRORS as error:
                if not database_unavailable(error):
                    raise
                logger.warning("Database unavailable, claiming again shortly: %s", error)
                delay = min(1.0, self.settings.delivery_poll_interval_s)
            await self.sleep(delay)

    async def claim(self, deliveries: asyncio.TaskGroup) -> bool:
        """Claim as many due notifications as there are free slots (up to a batch) and start them.

        Args:
            deliveries: Owner of the delivery tasks.

        Returns:
            Whether the batch was full, so that more may be waiting.
        """
        limit = min(self.settings.delivery_batch_size, self.free)
        if limit == 0:
            return False
        async with self.database.write_sessions() as session, session.begin():
            rows = await dao.claim(session, limit, self.lease)
        if rows:
            self.free -= len(rows)
            self.held.update((row.id, row.attempts) for row in rows)
            task = deliveries.create_task(self.deliver(rows))
            self.batches.add(task)
            task.add_done_callback(self.batches.discard)
        return len(rows) == limit

    async def idle_delay(self) -> float:
        """Seconds to wait for a wake-up: until the next row is due, at most the poll interval."""
        poll_s = self.settings.delivery_poll_interval_s
        if self.free == 0:
            return poll_s  # a finishing delivery wakes the loop
        async with self.database.read_sessions() as session:
            due_s = await dao.seconds_until_due(session)
        return poll_s if due_s is None else min(poll_s, max(MIN_WAIT_S, due_s))

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds or until woken, whichever is first.

        Args:
            delay: Seconds.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.wake.wait()

    async def deliver(self, rows: Sequence[Row[tuple[object, ...]]]) -> None:
        """Deliver a claimed batch concurrently, then record every outcome in one statement.

        Args:
            rows: Rows of :func:`dao.claim`.
        """
        templates: dict[uuid.UUID, templating.ParsedTemplate] = {}
        async with asyncio.TaskGroup() as attempts:
            tasks = [attempts.create_task(self.attempt(row, templates)) for row in rows]
        outcomes = dao.Outcomes()
        for row, task in zip(rows, tasks, strict=True):
            status, delay = task.result()
            outcomes.add(row.id, status, row.attempts, delay)
        await self.record(outcomes)

    async def attempt(
        self, row: Row[tuple[object, ...]], templates: dict[uuid.UUID, templating.ParsedTemplate]
    ) -> Outcome:
        """One delivery attempt of one notification.

        Args:
            row: A row of :func:`dao.claim`.
            templates: Templates scanned for this batch, by id.

        Returns:
            The new status and, when it stays pending, the seconds until it is due again.
        """
        try:
            return await self.send(row, templates)
        finally:
            self.free += 1
            self.wake.set()

    async def send(
        self, row: Row[tuple[object, ...]], templates: dict[uuid.UUID, templating.ParsedTemplate]
    ) -> Outcome:
        """Render and hand to the provider, and classify what happened.

        Args:
            row: A row of :func:`dao.claim`.
            templates: Templates scanned for this batch, by id.

        Returns:
            The outcome.
        """
        if row.attempts > self.settings.delivery_max_attempts:
            # Claimed again after the last attempt's lease ran out: its worker died mid-send, and
            # whether that send went out is unknown. Sending yet again is not ours to decide.
            logger.error("Notification %s: lease lost on its last attempt", row.id)
            return TECHNICAL_FAILURE, None
        try:
            message = to_message(row, templates)
            async with asyncio.timeout(self.deadline_s):
                await self.providers.for_message(message).send(message)
        except PermanentFailure as error:
            logger.info("Notification %s: permanent failure: %s", row.id, error)
            return PERMANENT_FAILURE, None
        except (TransientFailure, TimeoutError) as error:
            return self.retry(row.id, row.attempts, error)
        except Exception:
            logger.exception("Notification %s: technical failure", row.id)
            return TECHNICAL_FAILURE, None
        return DELIVERED, None

    def retry(self, notification_id: uuid.UUID, attempt: int, error: Exception) -> Outcome:
        """The outcome of a transient failure: another attempt after backoff, or temporary-failure.

        Args:
            notification_id: The notification.
            attempt: The attempt that failed.
            error: What failed.
        """
        if attempt >= self.settings.delivery_max_attempts:
            logger.info("Notification %s: temporary failure after %d attempts: %s", notification_id, attempt, error)
            return TEMPORARY_FAILURE, None
        return SENDING, backoff(attempt, self.settings.delivery_retry_base_s, self.rng)

    async def record(self, outcomes: dao.Outcomes) -> None:
        """Commit the outcomes, retrying while the database is unavailable (until cancelled).

        Args:
            outcomes: The outcomes.
        """
        while True:
            if await self.try_record(outcomes):
                break
            await asyncio.sleep(min(1.0, self.settings.delivery_poll_interval_s))
        for notification_id in outcomes.ids:
            self.held.pop(notification_id, None)
        if any(delay is not None for delay in outcomes.delays):
            self.wake.set()  # a retry may be due before the loop's current wait ends

    async def try_record(self, outcomes: dao.Outcomes) -> bool:
        """Commit the outcomes once.

        Args:
            outcomes: The outcomes.

        Returns:
            Whether they were committed; False when the database was unavailable.
        """
        try:
            async with self.database.write_sessions() as session, session.begin():
                await dao.record(session, outcomes)
        except DATABASE_ERRORS as error:
            if not database_unavailable(error):
                raise
            logger.warning("Database unavailable, recording %d outcomes again shortly: %s", len(outcomes.ids), error)
            return False
        return True

    async def finish_deliveries(self) -> None:
        """Let the deliveries in flight finish, up to the shutdown timeout, and cancel the rest."""
        if not self.batches:
            return
        _, unfinished = await asyncio.wait(set(self.batches), timeout=self.settings.delivery_shutdown_timeout_s)
        for task in unfinished:
            task.cancel()

    async def release(self) -> None:
        """Make what this worker still holds due again at once, for the next worker to take."""
        if not self.held:
            return
        outcomes = dao.Outcomes()
        for notification_id, attempt in self.held.items():
            outcomes.add(notification_id, SENDING, attempt=attempt, delay=0.0)
        try:
            async with self.database.write_sessions() as session, session.begin():
                released = await dao.record(session, outcomes)
        except DATABASE_ERRORS as error:
            if not database_unavailable(error):
                raise
            logger.warning("Could not release %d notifications; their leases will run out: %s", len(self.held), error)
            return
        logger.info("Released %d unfinished notifications", len(released))
