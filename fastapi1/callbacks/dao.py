"""All SQL of delivery receipts: a service's callback, and the receipt outbox's claim and outcomes.

The outbox works as the notifications' does (fastapi1.delivery.dao): rows are claimed with
``FOR UPDATE SKIP LOCKED`` under a lease, an outcome is fenced by the attempt it belongs to,
and every time is the database's ``now()``.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import (
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
    delete,
    extract,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.db.sql import ONE_SECOND, unnest
from fastapi1.models.callbacks import RECEIPT_PENDING, DeliveryReceipt, ServiceCallback
from fastapi1.notifications import dao as notifications_dao

callbacks = cast(Table, ServiceCallback.__table__)
receipts = cast(Table, DeliveryReceipt.__table__)
notifications = notifications_dao.notifications
_PENDING = receipts.c.state == RECEIPT_PENDING


async def upsert_callback(
    session: AsyncSession, service_id: uuid.UUID, url: str, bearer_token: str, now: datetime
) -> Row[tuple[object, ...]]:
    """Set a service's callback, replacing the one it had.

    Args:
        session: The write session.
        service_id: The service (it must exist).
        url: The URL.
        bearer_token: The encrypted bearer token.
        now: The time of the change.

    Returns:
        The callback's row.
    """
    new = insert(callbacks).values(
        service_id=service_id, url=url, bearer_token=bearer_token, created_at=now, updated_at=now
    )
    statement = new.on_conflict_do_update(
        index_elements=[callbacks.c.service_id],
        set_={"url": new.excluded.url, "bearer_token": new.excluded.bearer_token, "updated_at": now},
    ).returning(*callbacks.c)
    return (await (await session.connection()).execute(statement)).one()


async def get_callback(session: AsyncSession, service_id: uuid.UUID) -> Row[tuple[object, ...]] | None:
    """A service's callback.

    Args:
        session: Any session.
        service_id: The service.
    """
    statement = select(callbacks).where(callbacks.c.service_id == service_id)
    return (await (await session.connection()).execute(statement)).first()


async def delete_callback(session: AsyncSession, service_id: uuid.UUID) -> bool:
    """Remove a service's callback; receipts still owed are then given up when claimed.

    Args:
        session: The write session.
        service_id: The service.

    Returns:
        Whether it had one.
    """
    statement = delete(callbacks).where(callbacks.c.service_id == service_id).returning(callbacks.c.service_id)
    return (await (await session.connection()).execute(statement)).first() is not None


_claimable = (
    select(receipts.c.notification_id)
    .where(_PENDING, receipts.c.next_attempt_at <= func.now())
    .order_by(receipts.c.next_attempt_at)
    .limit(bindparam("limit", type_=Integer()))
    .with_for_update(skip_locked=True)
    .cte("claimable")
)
_claimed = (
    update(receipts)
    .where(receipts.c.notification_id == _claimable.c.notification_id)
    .values(attempts=receipts.c.attempts + 1, next_attempt_at=func.now() + bindparam("lease", type_=Interval()))
    .returning(receipts.c.notification_id, receipts.c.attempts)
    .cte("claimed")
)
# One round trip: claim, and read what the receipt says and where it goes (null without a callback).
CLAIM: Select[tuple[object, ...]] = (
    select(
        _claimed.c.notification_id,
        _claimed.c.attempts,
        notifications.c.reference,
        notifications.c.to,
        notifications.c.status,
        notifications.c.created_at,
        notifications.c.completed_at,
        notifications.c.sent_at,
        notifications.c.template_id,
        notifications.c.template_version,
        callbacks.c.url,
        callbacks.c.bearer_token,
    )
    .select_from(_claimed)
    .join(notifications, notifications.c.id == _claimed.c.notification_id)
    .outerjoin(callbacks, callbacks.c.service_id == notifications.c.service_id)
)
_outcomes = unnest("outcomes", ids=Uuid(), claimed_attempts=Integer(), new_states=String(), delays=Float())
# A retry stays pending, due after its delay; a final outcome is done. Fenced by the attempt:
# a relay whose lease ran out cannot undo the attempt another relay now holds.
RECORD = (
    update(receipts)
    .where(
        receipts.c.notification_id == _outcomes.c.ids,
        _PENDING,
        receipts.c.attempts == _outcomes.c.claimed_attempts,
    )
    .values(
        state=_outcomes.c.new_states,
        next_attempt_at=func.now() + _outcomes.c.delays * ONE_SECOND,
        completed_at=case((_outcomes.c.delays.is_(None), func.now())),
    )
    .returning(receipts.c.notification_id)
)
NEXT_DUE = select(extract("epoch", func.min(receipts.c.next_attempt_at) - func.now())).where(_PENDING)


@dataclass(slots=True)
class Outcomes:
    """Receipt outcomes to record, column by column; ``delays`` is None once a receipt is done."""

    ids: list[uuid.UUID] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    delays: list[float | None] = field(default_factory=list)

    def add(self, notification_id: uuid.UUID, attempt: int, state: str, delay: float | None) -> None:
        """Append one outcome.

        Args:
            notification_id: The receipt's notification.
            attempt: The attempt (claim) the outcome belongs to.
            state: ``pending`` to retry, ``sent`` or ``failed``.
            delay: Seconds until it is due again when pending; None when done.
        """
        self.ids.append(notification_id)
        self.attempts.append(attempt)
        self.states.append(state)
        self.delays.append(delay)


async def claim(session: AsyncSession, limit: int, lease: timedelta) -> Sequence[Row[tuple[object, ...]]]:
    """Claim up to ``limit`` due receipts under a lease, with what each says and where it goes.

    Args:
        session: A write session; the claim holds once its transaction commits.
        limit: Most receipts to claim.
        lease: How long the claim holds before another relay may send them.

    Returns:
        Rows of :data:`CLAIM`.
    """
    connection = await session.connection()
    return (await connection.execute(CLAIM, {"limit": limit, "lease": lease})).all()


async def record(session: AsyncSession, outcomes: Outcomes) -> set[uuid.UUID]:
    """Apply outcomes to the receipts still held by the attempts they belong to, in one statement.

    Args:
        session: A write session.
        outcomes: The outcomes.

    Returns:
        The receipts changed.
    """
    connection = await session.connection()
    parameters = {
        "ids": outcomes.ids,
        "claimed_attempts": outcomes.attempts,
        "new_states": outcomes.states,
        "delays": outcomes.delays,
    }
    return set((await connection.execute(RECORD, parameters)).scalars())


async def seconds_until_due(session: AsyncSession) -> float | None:
    """Seconds until the earliest pending receipt is due (at most 0 if one is), None if none is pending.

    Args:
        session: Any session.
    """
    seconds = (await (await session.connection()).execute(NEXT_DUE)).scalar_one()
    return None if seconds is None else float(cast(float, seconds))
