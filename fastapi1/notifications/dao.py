"""All SQL for notifications and their personalization.

A write is one statement whatever the number of rows: the rows travel as one
array per column and PostgreSQL's ``unnest`` turns them back into rows, so 1,000
notifications cost the same number of round trips as one (and stay far below the
32,767 bind parameters a single statement may carry).

The statements are built once, at import, with named parameters: SQLAlchemy then computes
each statement's cache key once instead of on every request, and asyncpg reuses its
prepared statement. They run on the session's connection (Core), not through the ORM.
"""

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    Row,
    Select,
    String,
    Table,
    Uuid,
    bindparam,
    func,
    insert,
    literal,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.db.sql import unnest
from fastapi1.models.notifications import FAILURE_STATUSES, Notification, NotificationPersonalization
from fastapi1.models.services import TemplateVersion

notifications = cast(Table, Notification.__table__)
personalizations = cast(Table, NotificationPersonalization.__table__)
template_versions = cast(Table, TemplateVersion.__table__)

# Committing a notification sends a NOTIFY on this channel, which wakes the delivery workers
# (fastapi1.delivery) at once instead of at their next poll.
CREATED_CHANNEL = "notifications_created"
# The list filter's shorthand for every failure status, as Notify's.
FAILED = "failed"


@dataclass(slots=True)
class NewNotifications:
    """Rows to insert, column by column; personalization rows point at ``ids``."""

    ids: list[uuid.UUID] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    template_ids: list[uuid.UUID | None] = field(default_factory=list)
    template_versions: list[int | None] = field(default_factory=list)
    references: list[str | None] = field(default_factory=list)
    sms_sender_ids: list[uuid.UUID | None] = field(default_factory=list)
    email_reply_to_ids: list[uuid.UUID | None] = field(default_factory=list)
    unsubscribe_urls: list[str | None] = field(default_factory=list)
    personalization_ids: list[uuid.UUID] = field(default_factory=list)
    personalization_keys: list[str] = field(default_factory=list)
    personalization_values: list[str] = field(default_factory=list)


_new_notifications = unnest(
    "new_notifications",
    ids=Uuid(),
    recipients=String(),
    template_ids=Uuid(),
    template_versions=Integer(),
    references=String(),
    sms_sender_ids=Uuid(),
    email_reply_to_ids=Uuid(),
    unsubscribe_urls=String(),
)
_insert_notifications = insert(notifications).from_select(
    [
        "id",
        "service_id",
        "key_type",
        "to",
        "template_id",
        "template_version",
        "reference",
        "sms_sender_id",
        "email_reply_to_id",
        "one_click_unsubscribe_url",
        "status",
        "created_at",
        "updated_at",
        "next_attempt_at",
    ],
    select(
        _new_notifications.c.ids,
        # One sender for the whole request.
        bindparam("service_id", type_=Uuid()),
        bindparam("key_type", type_=String()),
        _new_notifications.c.recipients,
        _new_notifications.c.template_ids,
        _new_notifications.c.template_versions,
        _new_notifications.c.references,
        _new_notifications.c.sms_sender_ids,
        _new_notifications.c.email_reply_to_ids,
        _new_notifications.c.unsubscribe_urls,
        bindparam("status", type_=String()),
        bindparam("now", type_=DateTime(timezone=True)),
        bindparam("now", type_=DateTime(timezone=True)),
        # Due at once, by the database's clock: the one clock every worker compares against.
        func.now(),
    ),
)
# Both tables in one statement (one round trip): the notifications in a data-modifying CTE,
# their personalization in the main INSERT. The foreign key is checked at the end of the
# statement, when the CTE's rows exist.
INSERT_NOTIFICATIONS = (
    insert(personalizations)
    .from_select(
        ["notification_id", "key", "value"],
        select(unnest("new_personalizations", notification_ids=Uuid(), keys=String(), values=String())),
    )
    .add_cte(_insert_notifications.cte("inserted_notifications"))
)
# NOTIFY is transactional: delivered at COMMIT, so a worker never wakes for rows it cannot see
# yet, and not at all when the request rolls back.
WAKE_WORKERS = select(func.pg_notify(literal(CREATED_CHANNEL), literal("")))


async def insert_notifications(
    session: AsyncSession,
    rows: NewNotifications,
    status: str,
    now: datetime,
    service_id: uuid.UUID | None,
    key_type: str | None,
) -> None:
    """Insert the notifications and their personalization in one statement.

    Args:
        session: The write session.
        rows: The new rows, column by column.
        status: Initial status of every notification.
        now: Creation (and update) time of every notification.
        service_id: The service that sends them, None without a key (development).
        key_type: The type of the key that sends them, None without a key.
    """
    connection = await session.connection()
    await connection.execute(
        INSERT_NOTIFICATIONS,
        {
            "service_id": service_id,
            "key_type": key_type,
            "ids": rows.ids,
            "recipients": rows.recipients,
            "template_ids": rows.template_ids,
            "template_versions": rows.template_versions,
            "references": rows.references,
            "sms_sender_ids": rows.sms_sender_ids,
            "email_reply_to_ids": rows.email_reply_to_ids,
            "unsubscribe_urls": rows.unsubscribe_urls,
            "status": status,
            "now": now,
            "notification_ids": rows.personalization_ids,
            "keys": rows.personalization_keys,
            "values": rows.personalization_values,
        },
    )
    await connection.execute(WAKE_WORKERS)


def of_version(template_id: ColumnElement[uuid.UUID], version: ColumnElement[int]) -> ColumnElement[bool]:
    """The join of a notification to the template version it was rendered from.

    Args:
        template_id: The notification's template column.
        version: The notification's version column.
    """
    return (template_versions.c.template_id == template_id) & (template_versions.c.version == version)


def select_notifications() -> Select[tuple[object, ...]]:
    """Notifications with the subject and content of their template's version and their personalization.

    Returns:
        A select of the notification columns plus ``subject`` and ``content`` of the version the
        notification was rendered from (null without a template) and the personalization as two
        parallel arrays (null when there is none).
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
            template_versions.c.subject,
            template_versions.c.content,
            personalization.c.personalization_keys,
            personalization.c.personalization_values,
        )
        .select_from(notifications)
        .outerjoin(template_versions, of_version(notifications.c.template_id, notifications.c.template_version))
        .join(personalization, true())
    )


def owned(of_service: bool) -> ColumnElement[bool]:
    """The scope of a request: one service's notifications, or those of none (sent without a key).

    Two statements rather than ``IS NOT DISTINCT FROM``, which no index serves.

    Args:
        of_service: Whether the caller is a service (parameter ``service_id``).
    """
    if of_service:
        return notifications.c.service_id == bindparam("service_id", type_=Uuid())
    return notifications.c.service_id.is_(None)


_BY_ID = notifications.c.id == bindparam("notification_id", type_=Uuid())
# By whether the caller is a service.
GET_NOTIFICATION = {scope: select_notifications().where(_BY_ID, owned(scope)) for scope in (True, False)}
GET_POSITION = {
    scope: select(notifications.c.created_at, notifications.c.id).where(_BY_ID, owned(scope)) for scope in (True, False)
}


@functools.cache
def list_statement(
    of_service: bool, after: bool, by_status: bool, failed: bool, by_template: bool
) -> Select[tuple[object, ...]]:
    """The page query for one combination of scope, cursor and filters, built once per combination.

    Args:
        of_service: Whether the caller is a service (else the notifications of none).
        after: Whether the page starts after a ``(created_at, id)`` position.
        by_status: Whether to filter by one status.
        failed: Whether to keep the failure statuses only (Notify's ``failed``).
        by_template: Whether to filter by template.

    Returns:
        The statement; parameters ``limit`` and, as used, ``service_id``, ``created_at``, ``id``, ``status``,
        ``template_id``.
    """
    statement = select_notifications().where(owned(of_service))
    if after:
        position = tuple_(bindparam("created_at", type_=DateTime(timezone=True)), bindparam("id", type_=Uuid()))
        statement = statement.where(tuple_(notifications.c.created_at, notifications.c.id) < position)
    if by_status:
        statement = statement.where(notifications.c.status == bindparam("status", type_=String()))
    if failed:
        statement = statement.where(notifications.c.status.in_(FAILURE_STATUSES))
    if by_template:
        statement = statement.where(notifications.c.template_id == bindparam("template_id", type_=Uuid()))
    order = (notifications.c.created_at.desc(), notifications.c.id.desc())
    return statement.order_by(*order).limit(bindparam("limit", type_=Integer()))


async def get_notification(
    session: AsyncSession, notification_id: uuid.UUID, service_id: uuid.UUID | None
) -> Row[tuple[object, ...]] | None:
    """Load one notification of a service.

    Args:
        session: Any session.
        notification_id: The id.
        service_id: The service it must belong to; None for the notifications of no service.

    Returns:
        The row of :func:`select_notifications`, or None.
    """
    connection = await session.connection()
    statement = GET_NOTIFICATION[service_id is not None]
    parameters = {"notification_id": notification_id, "service_id": service_id}
    return (await connection.execute(statement, parameters)).one_or_none()


async def get_position(
    session: AsyncSession, notification_id: uuid.UUID, service_id: uuid.UUID | None
) -> tuple[datetime, uuid.UUID] | None:
    """Return the sort key of a notification of a service, for keyset pagination.

    Args:
        session: Any session.
        notification_id: The id.
        service_id: The service it must belong to; None for the notifications of no service.

    Returns:
        ``(created_at, id)``, or None when that service has no such notification.
    """
    connection = await session.connection()
    statement = GET_POSITION[service_id is not None]
    row = (await connection.execute(statement, {"notification_id": notification_id, "service_id": service_id})).first()
    return None if row is None else (row.created_at, row.id)


async def list_notifications(
    session: AsyncSession,
    service_id: uuid.UUID | None,
    limit: int,
    older_than: tuple[datetime, uuid.UUID] | None,
    status: str | None,
    template_id: uuid.UUID | None,
) -> Sequence[Row[tuple[object, ...]]]:
    """Load a page of notifications, newest first (``created_at`` then ``id``, both descending).

    Args:
        session: Any session.
        service_id: The service whose notifications to list; None for those of no service.
        limit: Most rows to return.
        older_than: Sort key to start after, or None for the newest.
        status: Only this status, ``failed`` for any failure status, or None for any.
        template_id: Only this template, or any.

    Returns:
        Rows of :func:`select_notifications`.
    """
    failed = status == FAILED
    statement = list_statement(
        service_id is not None,
        older_than is not None,
        status is not None and not failed,
        failed,
        template_id is not None,
    )
    parameters: dict[str, object] = {
        "service_id": service_id,
        "limit": limit,
        "status": status,
        "template_id": template_id,
    }
    if older_than is not None:
        parameters["created_at"], parameters["id"] = older_than
    connection = await session.connection()
    return (await connection.execute(statement, parameters)).all()


def expanded_statuses(statuses: Sequence[str]) -> list[str] | None:
    """The statuses a list of status filters keeps (``failed``: every failure status); None for no filter.

    Args:
        statuses: Statuses, and maybe ``failed``.
    """
    if not statuses:
        return None
    expanded = {status for status in statuses if status != FAILED}
    if FAILED in statuses:
        expanded.update(FAILURE_STATUSES)
    return sorted(expanded)


# A notification's channel, as delivery decides it: an address is e-mail, anything else SMS.
_IS_EMAIL = func.strpos(notifications.c.to, "@") > 0


@functools.cache
def notify_list_statement(
    after: bool, by_statuses: bool, channel: str | None, by_reference: bool
) -> Select[tuple[object, ...]]:
    """The page query of Notify's list for one combination of cursor and filters, built once per combination.

    Args:
        after: Whether the page starts after a ``(created_at, id)`` position.
        by_statuses: Whether to keep some statuses only (parameter ``statuses``).
        channel: ``email`` or ``sms`` to keep that channel only, None for both.
        by_reference: Whether to keep one client reference only (parameter ``reference``).

    Returns:
        The statement; parameters ``service_id``, ``limit`` and, as used, ``created_at``, ``id``,
        ``statuses``, ``reference``.
    """
    statement = select_notifications().where(owned(True))
    if after:
        position = tuple_(bindparam("created_at", type_=DateTime(timezone=True)), bindparam("id", type_=Uuid()))
        statement = statement.where(tuple_(notifications.c.created_at, notifications.c.id) < position)
    if by_statuses:
        statement = statement.where(notifications.c.status == func.any(bindparam("statuses", type_=ARRAY(String()))))
    if channel is not None:
        statement = statement.where(_IS_EMAIL if channel == "email" else ~_IS_EMAIL)
    if by_reference:
        statement = statement.where(
            notifications.c.reference == bindparam("reference", type_=String()), notifications.c.reference.is_not(None)
        )
    order = (notifications.c.created_at.desc(), notifications.c.id.desc())
    return statement.order_by(*order).limit(bindparam("limit", type_=Integer()))


async def list_notify_notifications(
    session: AsyncSession,
    service_id: uuid.UUID,
    limit: int,
    older_than: tuple[datetime, uuid.UUID] | None,
    statuses: list[str] | None,
    channels: Sequence[str],
    reference: str | None,
) -> Sequence[Row[tuple[object, ...]]]:
    """Load a page of a service's notifications for Notify's list, newest first.

    Args:
        session: Any session.
        service_id: The service.
        limit: Most rows to return.
        older_than: Sort key to start after, or None for the newest.
        statuses: Only these statuses, or None for any.
        channels: Only these channels (``email``, ``sms``); none or both for any.
        reference: Only this client reference, or any.

    Returns:
        Rows of :func:`select_notifications`.
    """
    channel = channels[0] if len(set(channels)) == 1 else None
    statement = notify_list_statement(older_than is not None, statuses is not None, channel, reference is not None)
    parameters: dict[str, object] = {
        "service_id": service_id,
        "limit": limit,
        "statuses": statuses,
        "reference": reference,
    }
    if older_than is not None:
        parameters["created_at"], parameters["id"] = older_than
    connection = await session.connection()
    return (await connection.execute(statement, parameters)).all()
