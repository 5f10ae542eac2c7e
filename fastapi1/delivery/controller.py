"""The relay: claim due notifications, deliver them concurrently, record each outcome.

One :class:`Relay` per worker process. It claims in batches (``FOR UPDATE SKIP LOCKED``, so
workers never share a row), commits the claim (status ``sending`` and a lease) before any
provider is called, and records the outcomes of a batch in one guarded UPDATE. Whatever a
worker holds when it dies is claimed again when the lease runs out.
"""

import asyncio
import collections
import logging
import random
import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.config import DeliverySettings
from fastapi1.db.engine import Database
from fastapi1.delivery import dao
from fastapi1.delivery.providers import Message, PermanentFailure, Providers, TransientFailure
from fastapi1.errors import database_unavailable
from fastapi1.metrics import NOTIFICATION_TRANSITIONS
from fastapi1.notifications import controller as notifications_controller
from fastapi1.worker.claims import DATABASE_ERRORS, ClaimLoop

logger = logging.getLogger(__name__)

DELIVERED = "delivered"
PERMANENT_FAILURE = "permanent-failure"
TEMPORARY_FAILURE = "temporary-failure"
TECHNICAL_FAILURE = "technical-failure"
SENDING = dao.SENDING
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


def to_message(row: Row[tuple[object, ...]], templates: notifications_controller.ScannedTemplates) -> Message:
    """Render a claimed notification into the message a provider sends.

    Args:
        row: A row of :func:`dao.claim`.
        templates: Templates scanned for this batch so far, by id.
    """
    values = row._mapping
    keys, texts = values["personalization_keys"], values["personalization_values"]
    personalization = dict(zip(keys, texts, strict=True)) if keys else {}
    template = notifications_controller.stored_template(values, templates)
    simulated = values["key_type"] == "test"
    if template is None:
        subject, body = None, notifications_controller.plain_body(personalization)
    else:
        subject, body = template.render(personalization)
    return Message(
        values["id"],
        values["to"],
        subject,
        body,
        simulated,
        reply_to=values["reply_to"],
        unsubscribe_url=values["one_click_unsubscribe_url"],
        sender=values["sms_sender"],
    )


def count_claims(rows: Sequence[Row[tuple[object, ...]]]) -> None:
    """Count committed claims: a first attempt leaves ``created``, a later one was ``sending`` already.

    Args:
        rows: Rows of :func:`dao.claim`.
    """
    first = sum(1 for row in rows if row.attempts == 1)
    if first:
        NOTIFICATION_TRANSITIONS.labels(notifications_controller.INITIAL_STATUS, SENDING).inc(first)
    if len(rows) > first:
        NOTIFICATION_TRANSITIONS.labels(SENDING, SENDING).inc(len(rows) - first)


def count_outcomes(outcomes: dao.Outcomes, recorded: set[uuid.UUID]) -> None:
    """Count committed outcomes, each a change from ``sending``; outcomes that changed nothing are not counted.

    Args:
        outcomes: The outcomes written.
        recorded: The ids whose row changed.
    """
    pairs = zip(outcomes.ids, outcomes.statuses, strict=True)
    changes = collections.Counter(status for notification_id, status in pairs if notification_id in recorded)
    for status, count in changes.items():
        NOTIFICATION_TRANSITIONS.labels(SENDING, status).inc(count)


class Relay(ClaimLoop):
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
        super().__init__(
            database,
            settings.delivery_concurrency,
            settings.delivery_poll_interval_s,
            settings.delivery_shutdown_timeout_s,
        )
        self.settings = settings
        self.providers = providers
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self.lease = timedelta(seconds=settings.delivery_lease_s)
        # A delivery that outlives half its lease is abandoned as transient, so its outcome is
        # recorded while the claim still holds and no other worker starts a second attempt.
        self.deadline_s = settings.delivery_lease_s / 2
        self.held: dict[uuid.UUID, int] = {}  # claimed and not yet recorded: id -> attempt
        # The last claim was full (or found no free slot): notifications are waiting. The receipt
        # relay reads it to give deliveries the worker's CPU first (fastapi1.callbacks.relay).
        self.backlogged = False

    async def claim(self, deliveries: asyncio.TaskGroup) -> bool:
        """Claim as many due notifications as there are free slots (up to a batch) and start them.

        Args:
            deliveries: Owner of the delivery tasks.

        Returns:
            Whether the batch was full, so that more may be waiting.
        """
        limit = min(self.settings.delivery_batch_size, self.free)
        if limit == 0:
            self.backlogged = True
            return False
        async with self.database.write_sessions() as session, session.begin():
            rows = await dao.claim(session, limit, self.lease)
        self.backlogged = len(rows) == limit
        count_claims(rows)
        if rows:
            self.free -= len(rows)
            self.held.update((row.id, row.attempts) for row in rows)
            self.start(deliveries, self.deliver(rows))
        return len(rows) == limit

    async def seconds_until_due(self, session: AsyncSession) -> float | None:
        """Seconds until the earliest pending notification is due, None if none is.

        Args:
            session: A read session.
        """
        return await dao.seconds_until_due(session)

    async def deliver(self, rows: Sequence[Row[tuple[object, ...]]]) -> None:
        """Deliver a claimed batch concurrently, then record every outcome in one statement.

        Args:
            rows: Rows of :func:`dao.claim`.
        """
        templates: notifications_controller.ScannedTemplates = {}
        async with asyncio.TaskGroup() as attempts:
            tasks = [attempts.create_task(self.attempt(row, templates)) for row in rows]
        outcomes = dao.Outcomes()
        for row, task in zip(rows, tasks, strict=True):
            status, delay = task.result()
            outcomes.add(row.id, status, row.attempts, delay)
        await self.record(outcomes)

    async def attempt(
        self, row: Row[tuple[object, ...]], templates: notifications_controller.ScannedTemplates
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
            self.freed()

    async def send(self, row: Row[tuple[object, ...]], templates: notifications_controller.ScannedTemplates) -> Outcome:
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
        recorded: set[uuid.UUID] = set()

        async def record_outcomes(session: AsyncSession) -> None:
            recorded.clear()
            recorded.update(await dao.record(session, outcomes))

        await self.write(record_outcomes, f"{len(outcomes.ids)} outcomes")
        count_outcomes(outcomes, recorded)
        for notification_id in outcomes.ids:
            self.held.pop(notification_id, None)
        if any(delay is not None for delay in outcomes.delays):
            self.wake.set()  # a retry may be due before the loop's current wait ends

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
        count_outcomes(outcomes, released)
        logger.info("Released %d unfinished notifications", len(released))
