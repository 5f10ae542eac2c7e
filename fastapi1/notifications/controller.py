"""Notification logic: templates, personalization, pagination."""

import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.errors import NotFound, Unprocessable
from fastapi1.notifications import dao
from fastapi1.notifications.schemas import NotificationCreate, NotificationRecord, NotificationStatus
from fastapi1.services import dao as services_dao
from fastapi1.services import templating

INITIAL_STATUS: NotificationStatus = "created"


async def load_template_contents(session: AsyncSession, items: Sequence[NotificationCreate]) -> dict[uuid.UUID, str]:
    """Load the content of every template the items name, in one statement.

    Args:
        session: The session.
        items: The notifications to create.

    Returns:
        Content by template id.

    Raises:
        NotFound: When an item names a template that does not exist.
    """
    wanted = {item.template_id for item in items if item.template_id is not None}
    contents = await services_dao.get_template_contents(session, wanted) if wanted else {}
    for template_id in wanted - contents.keys():
        raise NotFound(f"Template {template_id} not found")
    return contents


def render_bodies(
    items: Sequence[NotificationCreate], contents: dict[uuid.UUID, str], in_list: bool
) -> list[str | None]:
    """Render each item's template with its personalization.

    Args:
        items: The notifications to create.
        contents: Template content by id.
        in_list: Whether the request body is a list, so that an error names the item's index.

    Returns:
        The bodies, None for items without a template.

    Raises:
        Unprocessable: When a personalization lacks some placeholder of its template.
    """
    bodies: list[str | None] = []
    for index, item in enumerate(items):
        if item.template_id is None:
            bodies.append(None)
            continue
        content, values = contents[item.template_id], item.personalization or {}
        if missing := templating.missing(content, values):
            loc = ("body", index, "personalization") if in_list else ("body", "personalization")
            raise Unprocessable(f"Missing personalization: {', '.join(missing)}", loc)
        bodies.append(templating.render(content, values))
    return bodies


def new_ids(count: int) -> list[uuid.UUID]:
    """Random (version 4) UUIDs from a single read of the system's random source.

    Args:
        count: How many.

    Returns:
        The ids.
    """
    random = os.urandom(16 * count)
    return [uuid.UUID(bytes=random[start : start + 16], version=4) for start in range(0, 16 * count, 16)]


def timestamp(moment: datetime) -> str:
    """ISO 8601 with microseconds and a numeric offset, as every response writes timestamps.

    Args:
        moment: An aware datetime.

    Returns:
        The text.
    """
    return moment.isoformat(timespec="microseconds")


async def create_notifications(
    session: AsyncSession, items: Sequence[NotificationCreate], in_list: bool = True
) -> list[NotificationRecord]:
    """Create notifications, all or none, in a constant number of statements.

    Args:
        session: The write session.
        items: The notifications to create, in order.
        in_list: Whether the request body is a list (error locations then carry the index).

    Returns:
        The stored notifications, in the order given.
    """
    bodies = render_bodies(items, await load_template_contents(session, items), in_list)
    now = datetime.now(UTC)
    stamp = timestamp(now)
    rows = dao.NewNotifications(ids=new_ids(len(items)))
    created: list[NotificationRecord] = []
    for notification_id, item, body in zip(rows.ids, items, bodies, strict=True):
        personalization = item.personalization or {}
        rows.recipients.append(item.to)
        rows.template_ids.append(item.template_id)
        if personalization:
            rows.personalization_ids.extend([notification_id] * len(personalization))
            rows.personalization_keys.extend(personalization)
            rows.personalization_values.extend(personalization.values())
        created.append(
            {
                "id": notification_id,
                "to": item.to,
                "personalization": personalization,
                "template_id": item.template_id,
                "status": INITIAL_STATUS,
                "body": body,
                "created_at": stamp,
                "updated_at": stamp,
                "sent_at": None,
            }
        )
    await dao.insert_notifications(session, rows, INITIAL_STATUS, now)
    return created


def to_notification(row: Row[tuple[object, ...]]) -> NotificationRecord:
    """Build a notification from a row of :func:`dao.select_notifications`.

    Args:
        row: The row.

    Returns:
        The notification, body rendered from its template.
    """
    values = row._mapping
    keys, texts = values["personalization_keys"], values["personalization_values"]
    personalization = dict(zip(keys, texts, strict=True)) if keys else {}
    content, sent_at = values["content"], values["sent_at"]
    return {
        "id": values["id"],
        "to": values["to"],
        "personalization": personalization,
        "template_id": values["template_id"],
        "status": values["status"],
        "body": None if content is None else templating.render(content, personalization),
        "created_at": timestamp(values["created_at"]),
        "updated_at": timestamp(values["updated_at"]),
        "sent_at": None if sent_at is None else timestamp(sent_at),
    }


async def get_notification(session: AsyncSession, notification_id: uuid.UUID) -> NotificationRecord:
    """Load one notification.

    Args:
        session: Any session.
        notification_id: The id.

    Returns:
        The notification.

    Raises:
        NotFound: When there is no such notification.
    """
    row = await dao.get_notification(session, notification_id)
    if row is None:
        raise NotFound(f"Notification {notification_id} not found")
    return to_notification(row)


async def list_notifications(
    session: AsyncSession,
    limit: int,
    older_than: uuid.UUID | None,
    status: NotificationStatus | None,
    template_id: uuid.UUID | None,
) -> dict[str, object]:
    """Load a page of notifications, newest first.

    Args:
        session: Any session.
        limit: Page size.
        older_than: Id of the last notification of the previous page, or None.
        status: Only this status, or any.
        template_id: Only this template, or any.

    Returns:
        The page (the shape of NotificationPage); ``next`` is set when more notifications follow.

    Raises:
        NotFound: When ``older_than`` names no notification.
    """
    position = None
    if older_than is not None:
        position = await dao.get_position(session, older_than)
        if position is None:
            raise NotFound(f"Notification {older_than} not found")
    rows = await dao.list_notifications(session, limit + 1, position, status, template_id)
    page = [to_notification(row) for row in rows[:limit]]
    has_more = len(rows) > limit
    return {"notifications": page, "next": page[-1]["id"] if has_more else None}
