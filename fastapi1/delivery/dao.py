"""All SQL of delivery: claim due notifications, record outcomes, find the next due time.

Every timestamp here is the database's ``now()``, the one clock all workers share, so a
lease means the same on every host. Statements are built once, at import (see
:mod:`fastapi1.notifications.dao`), and run as Core on the session's connection.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from sqlalchemy import (
    CTE,
    Float,
    Integer,
    Interval,
    Row,
    Select,
    String,
    Table,
    Uuid,
    bindparam,
    case,
    column,
    extract,
    func,
    literal,
    literal_column,
    select,
    tuple_,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.db.sql import ONE_SECOND, constants, unnest
from fastapi1.models.callbacks import RECEIPT_PENDING, DeliveryReceipt, ServiceCallback
from fastapi1.models.notifications import FINAL_STATUSES, PENDING_STATUSES, TRANSITIONS
from fastapi1.models.services import EmailReplyTo, SmsSender
from fastapi1.notifications import dao as notifications_dao

notifications = notifications_dao.notifications
template_versions = notifications_dao.template_versions
reply_tos = cast(Table, EmailReplyTo.__table__)
receipts = cast(Table, DeliveryReceipt.__table__)
callbacks = cast(Table, ServiceCallback.__table__)
# Recording a final status of a service with a callback sends a NOTIFY on this channel, which
# wakes the receipt relays (fastapi1.callbacks) at once instead of at their next poll.
RECEIPTS_CHANNEL = "delivery_receipts_due"
sms_senders = cast(Table, SmsSender.__table__)
personalizations = notifications_dao.personalizations

SENDING = "sending"


# The transition table as SQL rows, so that every UPDATE below checks (old, new) against it.
_transitions = values(
    column("source", String()), column("target", String()), name="transitions", literal_binds=True
).data(list(TRANSITIONS))
ALLOWED = select(_transitions.c.source, _transitions.c.target)


def sources(target: str) -> list[str]:
    """The statuses from which ``target`` may be reached.

    Args:
        target: A status.
    """
    return [source for source, to in TRANSITIONS if to == target]


# The rows to claim: due (created ones at once; sending ones when their lease or backoff has
# run out), earliest first. SKIP LOCKED passes over rows another worker is claiming right now,
# so concurrent claims never wait for each other and never take the same row. The range on
# next_attempt_at under the partial index's predicate is one index scan of the due rows only.
_claimable = (
    select(notifications.c.id)
    .where(notifications.c.status.in_(constants(*sources(SENDING))), notifications.c.next_attempt_at <= func.now())
    .order_by(notifications.c.next_attempt_at)
    .limit(bindparam("limit", type_=Integer()))
    .with_for_update(skip_locked=True)
    .cte("claimable")
)
# What starting an attempt writes (the claim of the direct path, the take of the broker path):
# the row is sending, the attempt counted, sent_at set on the first one, and the lease renewed.
ATTEMPT_STARTED = {
    "status": SENDING,
    "attempts": notifications.c.attempts + 1,
    "sent_at": func.coalesce(notifications.c.sent_at, func.now()),
    "updated_at": func.now(),
    "next_attempt_at": func.now() + bindparam("lease", type_=Interval()),
}
ATTEMPT_RETURNED = (
    notifications.c.id,
    notifications.c.to,
    notifications.c.template_id,
    notifications.c.template_version,
    notifications.c.attempts,
    notifications.c.key_type,
    notifications.c.sms_sender_id,
    notifications.c.email_reply_to_id,
    notifications.c.one_click_unsubscribe_url,
)
_claimed = (
    update(notifications)
    .where(notifications.c.id == _claimable.c.id)
    .values(ATTEMPT_STARTED)
    .returning(*ATTEMPT_RETURNED)
    .cte("claimed")
)


def with_content(claimed: CTE) -> Select[tuple[object, ...]]:
    """The rows an UPDATE ... RETURNING claimed, with what delivery needs: template, personalization, senders.

    Args:
        claimed: A CTE returning :data:`ATTEMPT_RETURNED` of notifications.

    Returns:
        The select, one round trip with the UPDATE.
    """
    personalization = (
        select(
            func.array_agg(personalizations.c.key).label("personalization_keys"),
            func.array_agg(personalizations.c.value).label("personalization_values"),
        )
        .where(personalizations.c.notification_id == claimed.c.id)
        .lateral("personalization")
    )
    return (
        select(
            claimed,
            template_versions.c.subject,
            template_versions.c.content,
            personalization.c.personalization_keys,
            personalization.c.personalization_values,
            reply_tos.c.email_address.label("reply_to"),
            sms_senders.c.sms_sender,
        )
        .select_from(claimed)
        .outerjoin(template_versions, notifications_dao.of_version(claimed.c.template_id, claimed.c.template_version))
        .outerjoin(reply_tos, reply_tos.c.id == claimed.c.email_reply_to_id)
        .outerjoin(sms_senders, sms_senders.c.id == claimed.c.sms_sender_id)
        .join(personalization, literal_column("true"))
    )


# One round trip: claim (mark sending, start the lease) and read what delivery needs.
CLAIM = with_content(_claimed)

# With a broker, the relay's claim is in two steps inside one transaction: lock the due rows
# (the same scan as _claimable), publish them, and only once the broker confirmed mark them
# published. The attempt number is not bumped here: the consumer's take bumps it.
LOCK_DUE = (
    select(notifications.c.id, notifications.c.attempts)
    .where(notifications.c.status.in_(constants(*sources(SENDING))), notifications.c.next_attempt_at <= func.now())
    .order_by(notifications.c.next_attempt_at)
    .limit(bindparam("limit", type_=Integer()))
    .with_for_update(skip_locked=True)
)
_published = unnest("published", published_ids=Uuid())
# Published: sending, under a lease; a row whose message is lost (or whose consumer dies) is
# due again when the lease runs out, and published again.
MARK_PUBLISHED = (
    update(notifications)
    .where(
        notifications.c.id == _published.c.published_ids,
        notifications.c.status.in_(constants(*sources(SENDING))),
    )
    .values(status=SENDING, updated_at=func.now(), next_attempt_at=func.now() + bindparam("lease", type_=Interval()))
)
_batch = unnest("batch", taken_ids=Uuid(), taken_attempts=Integer())
# The consumer's compare-and-swap: a row is taken only while it is still pending with exactly
# the attempt the message names; taking it bumps the attempt, so a duplicate message, or one
# redelivered after the row moved on (taken, retried, final), takes nothing. ``created`` is
# accepted too: a message can arrive before its relay committed, and under READ COMMITTED a row
# whose snapshot fails the WHERE is skipped without waiting for its lock, so requiring
# ``sending`` would take nothing and leave the rows to their lease. Accepting the snapshot's
# ``created`` makes the UPDATE wait for the relay's lock and recheck the committed row; if the
# relay rolled back, the row is due anyway and taking it is what its next publish would do.
_taken = (
    update(notifications)
    .where(
        notifications.c.id == _batch.c.taken_ids,
        notifications.c.status.in_(constants(*sources(SENDING))),
        notifications.c.attempts == _batch.c.taken_attempts,
    )
    .values(ATTEMPT_STARTED)
    .returning(*ATTEMPT_RETURNED)
    .cte("taken")
)
TAKE = with_content(_taken)


_outcomes = unnest("outcomes", ids=Uuid(), new_statuses=String(), claimed_attempts=Integer(), delays=Float())
# Each outcome is applied only where (current status, new status) is an allowed transition,
# so a duplicate or late outcome changes nothing once the status is final. A row that stays
# pending (a retry, a released lease: ``delay`` set) is fenced by the attempt number too: a
# worker whose lease ran out cannot reschedule the attempt another worker now holds.
_recorded = (
    update(notifications)
    .where(
        notifications.c.id == _outcomes.c.ids,
        tuple_(notifications.c.status, _outcomes.c.new_statuses).in_(ALLOWED),
        (_outcomes.c.delays.is_(None)) | (notifications.c.attempts == _outcomes.c.claimed_attempts),
    )
    .values(
        status=_outcomes.c.new_statuses,
        updated_at=func.now(),
        completed_at=case((_outcomes.c.delays.is_(None), func.now())),
        next_attempt_at=func.now() + _outcomes.c.delays * ONE_SECOND,
    )
    .returning(notifications.c.id, notifications.c.service_id, notifications.c.status)
    .cte("recorded")
)
# In the same statement, so in the same commit: the receipt each final status owes its
# service's callback, due at once. A worker that dies after the commit leaves the receipt to
# the receipt relay; one that dies before it leaves neither.
_receipts = (
    pg_insert(receipts)
    .from_select(
        ["notification_id", "state", "next_attempt_at", "created_at"],
        select(_recorded.c.id, literal(RECEIPT_PENDING), func.now(), func.now())
        .select_from(_recorded.join(callbacks, callbacks.c.service_id == _recorded.c.service_id))
        .where(_recorded.c.status.in_(constants(*FINAL_STATUSES))),
    )
    .on_conflict_do_nothing(index_elements=[receipts.c.notification_id])
    .returning(receipts.c.notification_id)
    .cte("receipts")
)
RECORD = select(_recorded.c.id, select(func.count()).select_from(_receipts).scalar_subquery().label("receipts"))
# Committed with the receipts, NOTIFY wakes the receipt relays at once.
WAKE_RECEIPTS = select(func.pg_notify(literal(RECEIPTS_CHANNEL), literal("")))

# Seconds until the earliest pending row is due (negative when one is due now); one step
# into the same partial index the claim uses.
NEXT_DUE = select(extract("epoch", func.min(notifications.c.next_attempt_at) - func.now())).where(
    notifications.c.status.in_(constants(*PENDING_STATUSES))
)


@dataclass(slots=True)
class Outcomes:
    """Outcomes to record, column by column; ``delays`` is None for a final status."""

    ids: list[uuid.UUID] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    delays: list[float | None] = field(default_factory=list)

    def add(self, notification_id: uuid.UUID, status: str, attempt: int, delay: float | None) -> None:
        """Append one outcome.

        Args:
            notification_id: The notification.
            status: Its new status.
            attempt: The attempt (claim) the outcome belongs to.
            delay: Seconds until it is due again when it stays pending; None when final.
        """
        self.ids.append(notification_id)
        self.statuses.append(status)
        self.attempts.append(attempt)
        self.delays.append(delay)


async def claim(session: AsyncSession, limit: int, lease: timedelta) -> Sequence[Row[tuple[object, ...]]]:
    """Claim up to ``limit`` due notifications: mark them sending, leased for ``lease``.

    Args:
        session: A write session; the claim holds once its transaction commits.
        limit: Most rows to claim.
        lease: How long the claim holds before another worker may take the rows again.

    Returns:
        Rows with ``id``, ``to``, ``template_id``, ``attempts`` (this attempt's number), the template's
        ``subject`` and ``content``, and ``personalization_keys`` / ``personalization_values``.
    """
    connection = await session.connection()
    return (await connection.execute(CLAIM, {"limit": limit, "lease": lease})).all()


async def lock_due(session: AsyncSession, limit: int) -> Sequence[Row[tuple[uuid.UUID, int]]]:
    """Lock up to ``limit`` due notifications for this transaction, skipping rows others hold.

    Args:
        session: A write session; the rows stay locked until its transaction ends.
        limit: Most rows to lock.

    Returns:
        Rows with ``id`` and ``attempts`` (attempts started so far).
    """
    connection = await session.connection()
    return cast(Sequence[Row[tuple[uuid.UUID, int]]], (await connection.execute(LOCK_DUE, {"limit": limit})).all())


async def mark_published(session: AsyncSession, ids: list[uuid.UUID], lease: timedelta) -> None:
    """Mark locked rows published: ``sending``, due again when ``lease`` runs out.

    Args:
        session: The session that locked them with :func:`lock_due`.
        ids: The notifications.
        lease: How long the message may take to be consumed before the rows are published again.
    """
    connection = await session.connection()
    await connection.execute(MARK_PUBLISHED, {"published_ids": ids, "lease": lease})


async def take(
    session: AsyncSession, ids: list[uuid.UUID], attempts: list[int], lease: timedelta
) -> Sequence[Row[tuple[object, ...]]]:
    """Take the notifications a message names that are still pending with exactly its attempt.

    Args:
        session: A write session; the take holds once its transaction commits.
        ids: The notifications.
        attempts: For each, the attempts it had when it was published.
        lease: How long the take holds before the rows are published again.

    Returns:
        Rows as :func:`claim` returns them, for those taken only.
    """
    connection = await session.connection()
    parameters = {"taken_ids": ids, "taken_attempts": attempts, "lease": lease}
    return (await connection.execute(TAKE, parameters)).all()


async def record(session: AsyncSession, outcomes: Outcomes) -> set[uuid.UUID]:
    """Apply outcomes where the transition is allowed, in one statement.

    Args:
        session: A write session.
        outcomes: The outcomes.

    Returns:
        The ids whose row changed; the others were final already, or held by a newer attempt.
    """
    connection = await session.connection()
    parameters = {"ids": outcomes.ids, "new_statuses": outcomes.statuses, "claimed_attempts": outcomes.attempts}
    rows = (await connection.execute(RECORD, parameters | {"delays": outcomes.delays})).all()
    if rows and rows[0].receipts:
        await connection.execute(WAKE_RECEIPTS)
    return {row.id for row in rows}


async def seconds_until_due(session: AsyncSession) -> float | None:
    """Seconds until the earliest pending notification is due (at most 0 if one is), None if none is pending.

    Args:
        session: Any session.
    """
    connection = await session.connection()
    seconds = (await connection.execute(NEXT_DUE)).scalar_one()
    return None if seconds is None else float(cast(float, seconds))
