"""The receipt relay: claim the delivery receipts owed, POST each to its service's callback, record the outcome.

One :class:`ReceiptRelay` per worker process, beside the delivery relay and with slots of its
own (``CALLBACK_CONCURRENCY``), so a receiver that is slow, down or failing holds receipts only,
never deliveries. A send is bounded in time (``CALLBACK_TIMEOUT_S``, at most half the lease,
so its outcome is recorded while the claim holds) and in the answer it reads
(``CALLBACK_MAX_RESPONSE_BYTES``); a redirect is not followed. Anything but a 2xx is retried
with backoff until ``CALLBACK_MAX_ATTEMPTS``; a receipt whose callback was removed, or whose
URL the rules now refuse, is given up at once. Each is logged. While the delivery relay is
backlogged, receipts are claimed once a second at most, so a burst is delivered first and its
receipts follow.
"""

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

import httpx
import orjson
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.auth.encryption import SecretBox
from fastapi1.callbacks import dao
from fastapi1.callbacks.controller import url_rules
from fastapi1.callbacks.urls import RefusedUrl, resolve
from fastapi1.config import DeliverySettings, Settings
from fastapi1.db.engine import Database
from fastapi1.delivery.controller import Relay, backoff
from fastapi1.errors import database_unavailable
from fastapi1.metrics import DELIVERY_RECEIPTS
from fastapi1.models.callbacks import RECEIPT_PENDING
from fastapi1.notifications.controller import timestamp
from fastapi1.recipients import is_email_address
from fastapi1.worker.claims import DATABASE_ERRORS, ClaimLoop

logger = logging.getLogger(__name__)

SENT = "sent"
FAILED = "failed"
# While deliveries are backlogged, receipts are claimed once per this many seconds at most: the
# worker's CPU goes to deliveries first, and receipts still move (they catch up after a burst).
YIELD_INTERVAL_S = 1.0
Outcome = tuple[str, float | None]  # new state, and seconds until due again when it stays pending


def receipt_body(row: Row[tuple[object, ...]]) -> bytes:
    """What a receipt says (Notify's delivery-status callback), read from its notification.

    Args:
        row: A row of :data:`dao.CLAIM`.
    """
    values = row._mapping
    moments = {name: values[name] for name in ("created_at", "completed_at", "sent_at")}
    return orjson.dumps(
        {
            "id": str(values["notification_id"]),
            "reference": values["reference"],
            "to": values["to"],
            "status": values["status"],
            **{name: None if moment is None else timestamp(moment) for name, moment in moments.items()},
            "notification_type": "email" if is_email_address(values["to"]) else "sms",
            "template_id": None if values["template_id"] is None else str(values["template_id"]),
            "template_version": values["template_version"],
        }
    )


class ReceiptRelay(ClaimLoop):
    """Claims, sends and records delivery receipts until stopped."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        delivery: DeliverySettings,
        client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
        deliveries: Relay | None = None,
    ) -> None:
        """Set up an idle relay.

        Args:
            database: Where the outbox is.
            settings: The URL rules (ENVIRONMENT, CALLBACK_ALLOW_PRIVATE) and SECRET_KEY (the bearer tokens).
            delivery: The CALLBACK_* settings.
            client: The HTTP client; one of the relay's own when None (closed when the relay stops).
            rng: Random source of the backoff jitter.
            deliveries: The worker's delivery relay, which goes first while it is backlogged; None: no yielding.
        """
        super().__init__(
            database,
            delivery.callback_concurrency,
            delivery.callback_poll_interval_s,
            delivery.delivery_shutdown_timeout_s,
        )
        self.delivery = delivery
        self.rules = url_rules(settings)
        self.box = SecretBox(settings.secret_key)
        self.lease = timedelta(seconds=delivery.callback_lease_s)
        self.deadline_s = min(delivery.callback_timeout_s, delivery.callback_lease_s / 2)
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self.client = client or httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(delivery.callback_timeout_s),
            limits=httpx.Limits(max_connections=delivery.callback_concurrency),
        )
        self.held: dict[uuid.UUID, int] = {}  # claimed and not yet recorded: id -> attempt
        self.deliveries = deliveries
        self.last_claim_at = 0.0
        self.yielding = False

    async def run(self) -> None:
        """Claim and send until stopped, then close the HTTP client."""
        try:
            await super().run()
        finally:
            await self.client.aclose()

    async def claim(self, tasks: asyncio.TaskGroup) -> bool:
        """Claim as many due receipts as there are free slots (up to a batch) and start sending them.

        Args:
            tasks: Owner of the sending tasks.

        Returns:
            Whether the batch was full, so that more may be waiting.
        """
        limit = min(self.delivery.callback_batch_size, self.free)
        if limit == 0:
            return False
        now = time.monotonic()
        self.yielding = self.deliveries is not None and self.deliveries.backlogged
        if self.yielding and now - self.last_claim_at < YIELD_INTERVAL_S:
            return False
        self.last_claim_at = now
        async with self.database.write_sessions() as session, session.begin():
            rows = await dao.claim(session, limit, self.lease)
        if rows:
            self.free -= len(rows)
            self.held.update((row.notification_id, row.attempts) for row in rows)
            self.start(tasks, self.send_all(rows))
        return len(rows) == limit

    async def idle_delay(self) -> float:
        """Seconds to wait for a wake-up; while deliveries go first, until the next claim this relay may make."""
        if self.yielding:
            return max(0.01, YIELD_INTERVAL_S - (time.monotonic() - self.last_claim_at))
        return await super().idle_delay()

    async def seconds_until_due(self, session: AsyncSession) -> float | None:
        """Seconds until the earliest pending receipt is due, None if none is.

        Args:
            session: A read session.
        """
        return await dao.seconds_until_due(session)

    async def send_all(self, rows: Sequence[Row[tuple[object, ...]]]) -> None:
        """Send a claimed batch concurrently, then record every outcome in one statement.

        Args:
            rows: Rows of :data:`dao.CLAIM`.
        """
        async with asyncio.TaskGroup() as sends:
            tasks = [sends.create_task(self.attempt(row)) for row in rows]
        outcomes = dao.Outcomes()
        for row, task in zip(rows, tasks, strict=True):
            state, delay = task.result()
            outcomes.add(row.notification_id, row.attempts, state, delay)
        await self.record(outcomes)

    async def attempt(self, row: Row[tuple[object, ...]]) -> Outcome:
        """One send of one receipt, its slot given back after it.

        Args:
            row: A row of :data:`dao.CLAIM`.
        """
        try:
            return await self.send(row)
        finally:
            self.freed()

    async def send(self, row: Row[tuple[object, ...]]) -> Outcome:
        """POST the receipt and classify the answer.

        Args:
            row: A row of :data:`dao.CLAIM`.

        Returns:
            The outcome.
        """
        if (unsendable := self.unsendable(row)) is not None:
            logger.warning("Receipt of %s: %s; given up", row.notification_id, unsendable)
            return FAILED, None
        try:
            async with asyncio.timeout(self.deadline_s):
                status = await self.post(row)
        except RefusedUrl as error:
            logger.warning("Receipt of %s: callback URL refused (%s); given up", row.notification_id, error)
            return FAILED, None
        except (httpx.HTTPError, OSError, TimeoutError) as error:
            return self.retry(row, f"{type(error).__name__}: {error}")
        if 200 <= status < 300:
            return SENT, None
        return self.retry(row, f"HTTP {status}")

    def unsendable(self, row: Row[tuple[object, ...]]) -> str | None:
        """Why a claimed receipt is not to be sent at all, or None.

        Args:
            row: A row of :data:`dao.CLAIM`.
        """
        if row.url is None:
            return "the service has no callback any more"
        if row.attempts > self.delivery.callback_max_attempts:
            # Claimed again after the last attempt's lease ran out: its worker died mid-send.
            return "the lease was lost on its last attempt"
        return None

    async def post(self, row: Row[tuple[object, ...]]) -> int:
        """POST the receipt to an address of the callback's host that the URL rules accept.

        The name is resolved and checked here, and the request goes to that address with the
        name in ``Host`` and in TLS's server name (the certificate is checked against it).

        Args:
            row: A row of :data:`dao.CLAIM` with a callback.

        Returns:
            The receiver's status; at most CALLBACK_MAX_RESPONSE_BYTES of its answer are read.
        """
        target = await resolve(row.url, self.rules)
        url = httpx.URL(row.url)
        headers = {
            "Authorization": f"Bearer {self.box.decrypt(row.bearer_token)}",
            "Content-Type": "application/json",
            "Host": url.netloc.decode("ascii"),
        }
        body = receipt_body(row)
        # Each checked address in the resolver's order, as a client that resolves for itself
        # would: an unreachable one first (IPv6 without a route, say) does not fail the receipt.
        for address in target.addresses[:-1]:
            with contextlib.suppress(httpx.ConnectError):
                return await self.post_to(url, address, target.host, headers, body)
        return await self.post_to(url, target.addresses[-1], target.host, headers, body)

    async def post_to(self, url: httpx.URL, address: str, host: str, headers: dict[str, str], body: bytes) -> int:
        """POST to one checked address of the callback's host.

        Args:
            url: The callback URL.
            address: The address to connect to.
            host: The URL's host, for TLS's server name (the certificate is checked against it).
            headers: The request's headers, ``Host`` among them.
            body: The receipt.

        Returns:
            The receiver's status; at most CALLBACK_MAX_RESPONSE_BYTES of its answer are read.
        """
        pinned = url.copy_with(host=address)
        request = self.client.stream("POST", pinned, content=body, headers=headers, extensions={"sni_hostname": host})
        async with request as response:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= self.delivery.callback_max_response_bytes:
                    break
            return response.status_code

    def retry(self, row: Row[tuple[object, ...]], why: str) -> Outcome:
        """The outcome of a failed send: another after backoff, or given up after the last attempt.

        Args:
            row: The receipt.
            why: What failed.
        """
        if row.attempts >= self.delivery.callback_max_attempts:
            logger.warning("Receipt of %s: given up after %d attempts: %s", row.notification_id, row.attempts, why)
            return FAILED, None
        logger.info("Receipt of %s: attempt %d failed, retried: %s", row.notification_id, row.attempts, why)
        # Capped: a receiver down for a day is still tried every CALLBACK_RETRY_MAX_S at most.
        delay = min(
            backoff(row.attempts, self.delivery.callback_retry_base_s, self.rng), self.delivery.callback_retry_max_s
        )
        return RECEIPT_PENDING, delay

    async def record(self, outcomes: dao.Outcomes) -> None:
        """Commit the outcomes, retrying while the database is unavailable (until cancelled).

        Args:
            outcomes: The outcomes.
        """
        recorded: set[uuid.UUID] = set()

        async def record_outcomes(session: AsyncSession) -> None:
            recorded.clear()
            recorded.update(await dao.record(session, outcomes))

        await self.write(record_outcomes, f"{len(outcomes.ids)} receipt outcomes")
        for notification_id, state in zip(outcomes.ids, outcomes.states, strict=True):
            self.held.pop(notification_id, None)
            if notification_id in recorded:
                DELIVERY_RECEIPTS.labels(state if state != RECEIPT_PENDING else "retried").inc()
        if any(delay is not None for delay in outcomes.delays):
            self.wake.set()  # a retry may be due before the loop's current wait ends

    async def release(self) -> None:
        """Make the receipts this worker still holds due again at once, for the next worker to send."""
        if not self.held:
            return
        outcomes = dao.Outcomes()
        for notification_id, attempt in self.held.items():
            outcomes.add(notification_id, attempt, RECEIPT_PENDING, 0.0)
        try:
            async with self.database.write_sessions() as session, session.begin():
                released = await dao.record(session, outcomes)
        except DATABASE_ERRORS as error:
            if not database_unavailable(error):
                raise
            logger.warning("Could not release %d receipts; their leases will run out: %s", len(self.held), error)
            return
        logger.info("Released %d unsent receipts", len(released))
