"""All SQL for notifications and their personalization.

Writes are one statement per table whatever the number of rows: the rows travel as one
array per column and PostgreSQL's ``unnest`` turns them back into rows, so 1,000
notifications cost the same number of round trips as one (and stay far below the
32,767 bind parameters a single statement may carry).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, String, Uuid, bindparam, func, literal, select, true, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from fastapi1.models.notifications import Notification, NotificationPersonalization
from fastapi1.models.services import Template

notifications = Notification.__table__
personalizations = NotificationPersonalization.__table__
templates = Template.__table__


@dataclass(slots=True)
class NewNotifications:
    """Rows to insert, column by column; personalization rows point at ``ids``."""

    ids: list[uuid.UUID] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    template_ids: list[uuid.UUID | None] = field(default_factory=list)
    personalization_ids: list[uuid.UUID] = field(default_factory=list)
    personalization_keys: list[str] = field(default_factory=list)
    personalization_values: list[str] = field(default_factory=list)


def array_param(values: Sequence[object], item_type: TypeEngine[Any]) -> ColumnElement[Any]:
    """Bind a Python list as one typed PostgreSQL array parameter.

    Args:
        values: The column's values.
        item_type: SQL type of one element.

    Returns:
        The bound parameter.
    """
    return bindparam(None, values, type_=ARRAY(item_type))


async def insert_notifications(session: AsyncSession, rows: NewNotifications, status: str, now: datetime) -> None:
    """Insert the notifications and their personalization: two statements at most.

    Args:
        session: The write session.
        rows: The new rows, column by column.
        status: Initial status of every notification.
        now: Creation (and update) time of every notification.
    """
    source = (
        func.unnest(
            array_param(rows.ids, Uuid()),
            array_param(rows.recipients, String()),
            array_param(rows.template_ids, Uuid()),
        )
        .table_valued("id", "to", "template_id")
        .render_derived(name="new_notifications")
    )
    await session.execute(
        insert(Notification).from_select(
            ["id", "to", "template_id", "status", "created_at", "updated_at"],
            select(source.c.id, source.c.to, source.c.template_id, literal(status), literal(now), literal(now)),
        )
    )
    if not rows.personalization_ids:
        return
    values = (
        func.unnest(
            array_param(rows.personalization_ids, Uuid()),
            array_param(rows.personalization_keys, String()),
            array_param(rows.personalization_values, String()),
        )
        .table_valued("notification_id", "key", "value")
        .render_derived(name="new_personalizations")
    )
    await session.execute(
        insert(NotificationPersonalization).from_select(["notification_id", "key", "value"], select(values))
    )


def select_notifications() -> Select[tuple[object, ...]]:
    """Notifications with their template content and personalization, in one statement.

    Returns:
        A select of the notification columns plus ``content`` (null without a template)
        and the personalization as two parallel arrays (null when there is none).
    """
    personalization = (
        select(
            func.array_agg(personalizations.c.key).label("personalization_keys"),
            func.array_agg(personalizations.c.value).label("personalization_values"),
        )
        .where(personalizations.c.notification_id == notifications.c.id)
        .lateral("personalization")
    )
    return (
        select(
            notifications,
            templates.c.content,
            personalization.c.personalization_keys,
            personalization.c.personalization_values,
        )
        .select_from(notifications)
        .outerjoin(templates, templates.c.id == notifications.c.template_id)
        .join(personalization, true())
    )


async def get_notification(session: AsyncSession, notification_id: uuid.UUID) -> Row[tuple[object, ...]] | None:
    """Load one notification.

    Args:
        session: Any session.
        notification_id: The id.

    Returns:
        The row of :func:`select_notifications`, or None.
    """
    statement = select_notifications().where(notifications.c.id == notification_id)
    return (await session.execute(statement)).one_or_none()


async def get_position(session: AsyncSession, notification_id: uuid.UUID) -> tuple[datetime, uuid.UUID] | None:
    """Return the sort key of a notification, for keyset pagination.

    Args:
        session: Any session.
        notification_id: The id.

    Returns:
        ``(created_at, id)``, or None when there is no such notification.
    """
    statement = select(notifications.c.created_at, notifications.c.id).where(notifications.c.id == notification_id)
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else (row.created_at, row.id)


async def list_notifications(
    session: AsyncSession,
    limit: int,
    older_than: tuple[datetime, uuid.UUID] | None,
    status: str | None,
    template_id: uuid.UUID | None,
) -> Sequence[Row[tuple[object, ...]]]:
    """Load a page of notifications, newest first (``created_at`` then ``id``, both descending).

    Args:
        session: Any session.
        limit: Most rows to return.
        older_than: Sort key to start after, or None for the newest.
        status: Only this status, or any.
        template_id: Only this template, or any.

    Returns:
        Rows of :func:`select_notifications`.
    """
    statement = select_notifications()
    if older_than is not None:
        statement = statement.where(tuple_(notifications.c.created_at, notifications.c.id) < tuple_(*older_than))
    if status is not None:
        statement = statement.where(notifications.c.status == status)
    if template_id is not None:
        statement = statement.where(notifications.c.template_id == template_id)
    statement = statement.order_by(notifications.c.created_at.desc(), notifications.c.id.desc()).limit(limit)
    return (await session.execute(statement)).all()
