"""Notification logic: templates, personalization, pagination."""

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Row, RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.auth.schemas import Caller
from fastapi1.config import LIMITS
from fastapi1.db.session import on_rollback
from fastapi1.errors import BadRequest, NotFound, Unprocessable
from fastapi1.keys import dao as keys_dao
from fastapi1.limits.limiter import Limiter
from fastapi1.metrics import NO_STATUS, NOTIFICATION_TRANSITIONS
from fastapi1.notifications import dao
from fastapi1.notifications.schemas import NotificationCreate, NotificationRecord, NotificationStatus, StatusFilter
from fastapi1.recipients import guest_list_key
from fastapi1.services import dao as services_dao
from fastapi1.services import templating
from fastapi1.types import TemplateType

INITIAL_STATUS: NotificationStatus = "created"
# GOV.UK Notify's words (with its typographic apostrophe).
TEAM_KEY_REFUSED = "Can\u2019t send to this recipient using a team-only API key"
RENDERED_MAX = LIMITS.rendered_chars


class TemplateNotFound(NotFound):
    """A notification names a template that does not exist (in the caller's service)."""

    def __init__(self, template_id: uuid.UUID) -> None:
        """Keep the id.

        Args:
            template_id: The template named.
        """
        super().__init__(f"Template {template_id} not found")
        self.template_id = template_id


class MissingPersonalization(Unprocessable):
    """A personalization lacks some placeholders of its template."""

    def __init__(self, names: list[str], loc: tuple[str | int, ...]) -> None:
        """Keep the names.

        Args:
            names: The placeholders not supplied, sorted.
            loc: Where the personalization is in the request.
        """
        super().__init__(f"Missing personalization: {', '.join(names)}", loc)
        self.names = names


class RenderedTooLong(Unprocessable):
    """A personalization would render a subject or body past LIMIT_RENDERED_CHARS."""


@dataclass(frozen=True, slots=True)
class CurrentTemplate:
    """A template at its current version, scanned once for the whole request."""

    parsed: templating.ParsedTemplate
    version: int
    template_type: TemplateType


@dataclass(frozen=True, slots=True)
class NotifyFields:
    """What GOV.UK Notify's API records of a notification beyond ``/notifications/v1``'s fields."""

    reference: str | None = None
    sms_sender_id: uuid.UUID | None = None
    email_reply_to_id: uuid.UUID | None = None
    one_click_unsubscribe_url: str | None = None


NO_NOTIFY_FIELDS = NotifyFields()


async def load_templates(
    session: AsyncSession, items: Sequence[NotificationCreate], caller: Caller
) -> dict[uuid.UUID, CurrentTemplate]:
    """Load every template the items name at its current version, in one statement, and scan each once.

    Args:
        session: The session.
        items: The notifications to create.
        caller: Who sends them: a service may use its own templates only.

    Raises:
        TemplateNotFound: When an item names a template that does not exist (in the caller's service).
    """
    wanted = {item.template_id for item in items if item.template_id is not None}
    rows = await services_dao.get_template_contents(session, wanted, caller.service_id) if wanted else {}
    for template_id in wanted - rows.keys():
        raise TemplateNotFound(template_id)
    return {
        template_id: CurrentTemplate(
            templating.parse_template(row.subject, row.content), row.version, row.template_type
        )
        for template_id, row in rows.items()
    }


def check_personalization(
    template: templating.ParsedTemplate, values: dict[str, str], loc: tuple[str | int, ...]
) -> None:
    """Refuse a personalization that lacks a placeholder or would render a subject or body past the bound.

    The lengths are counted, not rendered: a small request may name a rendering of hundreds of megabytes.

    Args:
        template: The item's template.
        values: The item's personalization.
        loc: Where the personalization is in the request.

    Raises:
        MissingPersonalization: When a placeholder is not supplied.
        RenderedTooLong: When the subject or body would be too long.
    """
    if missing := sorted(name for name in template.names if name not in values):
        raise MissingPersonalization(missing, loc)
    for part, text in (("subject", template.subject), ("body", template.content)):
        length = 0 if text is None else text.rendered_length(values)
        if length > RENDERED_MAX:
            message = f"Personalization renders the {part} to {length:,} characters; at most {RENDERED_MAX:,} allowed"
            raise RenderedTooLong(message, loc)


def checked_templates(
    items: Sequence[NotificationCreate], templates: dict[uuid.UUID, CurrentTemplate], in_list: bool
) -> list[CurrentTemplate | None]:
    """Check every templated item before any is rendered, so that a rejected list costs no rendering.

    Args:
        items: The notifications to create.
        templates: Their templates by id.
        in_list: Whether the request body is a list, so that an error names the item's index.

    Returns:
        Each item's template, None for items without one.
    """
    checked: list[CurrentTemplate | None] = []
    for index, item in enumerate(items):
        template = None if item.template_id is None else templates[item.template_id]
        if template is not None:
            loc = ("body", index, "personalization") if in_list else ("body", "personalization")
            check_personalization(template.parsed, item.personalization or {}, loc)
        checked.append(template)
    return checked


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


async def check_guest_list(
    session: AsyncSession, items: Sequence[NotificationCreate], caller: Caller, in_list: bool
) -> None:
    """Refuse a team key's notification to anyone outside its service's guest list.

    Args:
        session: The session.
        items: The notifications to create.
        caller: Who sends them.
        in_list: Whether the request body is a list (the refusal then names the item).

    Raises:
        BadRequest: When a recipient is not on the guest list (Notify's message).
    """
    if caller.key_type != "team" or caller.service_id is None:
        return
    wanted = [guest_list_key(item.to) for item in items]
    guests = await keys_dao.guests_among(session, caller.service_id, {key for key in wanted if key is not None})
    for index, key in enumerate(wanted):
        if key not in guests:
            raise BadRequest(f"{TEAM_KEY_REFUSED} (item {index})" if in_list else TEAM_KEY_REFUSED)


async def reserve_sends(session: AsyncSession, limiter: Limiter, caller: Caller, count: int) -> None:
    """Count the notifications against the caller's daily limit, given back if the request does not commit.

    Args:
        session: The write session whose commit they belong to.
        limiter: The limits.
        caller: Who sends them (a test key, or no key, counts nothing).
        count: How many.

    Raises:
        DailyLimitExceeded: When they do not all fit in today's limit.
    """
    if caller.service_id is None or not caller.counts_against_limits:
        return
    reservation = await limiter.reserve_sends(caller.service_id, count)
    on_rollback(session, reservation.release)


async def create_notifications(
    session: AsyncSession,
    items: Sequence[NotificationCreate],
    caller: Caller,
    limiter: Limiter,
    in_list: bool = True,
    fields: NotifyFields = NO_NOTIFY_FIELDS,
    templates: list[CurrentTemplate | None] | None = None,
) -> list[NotificationRecord]:
    """Create notifications, all or none, in a constant number of statements.

    Args:
        session: The write session.
        items: The notifications to create, in order.
        caller: Who sends them (the service they will belong to).
        limiter: Counts them against the service's daily limit.
        in_list: Whether the request body is a list (error locations then carry the index).
        fields: Notify's fields, the same for every item (``/v2`` sends one at a time).
        templates: Each item's template, already loaded and checked by the caller; loaded here when None.

    Returns:
        The stored notifications, in the order given.
    """
    if templates is None:
        templates = checked_templates(items, await load_templates(session, items, caller), in_list)
    await check_guest_list(session, items, caller, in_list)
    # Last, once nothing but the insert can refuse the request.
    await reserve_sends(session, limiter, caller, len(items))
    now = datetime.now(UTC)
    stamp = timestamp(now)
    rows = dao.NewNotifications(ids=new_ids(len(items)))
    created: list[NotificationRecord] = []
    count = len(items)
    rows.references = [fields.reference] * count
    rows.sms_sender_ids = [fields.sms_sender_id] * count
    rows.email_reply_to_ids = [fields.email_reply_to_id] * count
    rows.unsubscribe_urls = [fields.one_click_unsubscribe_url] * count
    for notification_id, item, template in zip(rows.ids, items, templates, strict=True):
        personalization = item.personalization or {}
        rows.recipients.append(item.to)
        rows.template_ids.append(item.template_id)
        rows.template_versions.append(None if template is None else template.version)
        if personalization:
            rows.personalization_ids.extend([notification_id] * len(personalization))
            rows.personalization_keys.extend(personalization)
            rows.personalization_values.extend(personalization.values())
        subject, body = rendered(None if template is None else template.parsed, personalization)
        created.append(
            {
                "id": notification_id,
                "to": item.to,
                "personalization": personalization,
                "template_id": item.template_id,
                "status": INITIAL_STATUS,
                "body": body,
                "subject": subject,
                "created_at": stamp,
                "updated_at": stamp,
                "sent_at": None,
                "completed_at": None,
            }
        )
    await dao.insert_notifications(session, rows, INITIAL_STATUS, now, caller.service_id, caller.key_type)
    # Counted once inserted: the request's commit follows, and a failed commit is a 503.
    NOTIFICATION_TRANSITIONS.labels(NO_STATUS, INITIAL_STATUS).inc(len(created))
    return created


def plain_body(personalization: dict[str, str]) -> str:
    """The body of a notification without a template: its personalization, one ``key: value`` per line.

    Args:
        personalization: The personalization.
    """
    return "\n".join(f"{key}: {value}" for key, value in sorted(personalization.items()))


def rendered(template: templating.ParsedTemplate | None, values: dict[str, str]) -> tuple[str | None, str | None]:
    """The subject and body of a notification, both None without a template.

    Args:
        template: The notification's template, or None.
        values: Its personalization.
    """
    return (None, None) if template is None else template.render(values)


# Templates scanned for one response or batch, by id and version.
ScannedTemplates = dict[tuple[uuid.UUID, int], templating.ParsedTemplate]


def stored_template(values: RowMapping, templates: ScannedTemplates) -> templating.ParsedTemplate | None:
    """The template version of a stored notification, scanned once per version for a whole page.

    Args:
        values: The row of :func:`dao.select_notifications`.
        templates: Template versions scanned so far; filled as new ones are met.
    """
    template_id: uuid.UUID | None = values["template_id"]
    if template_id is None:
        return None
    key = (template_id, values["template_version"])
    if (template := templates.get(key)) is None:
        template = templates[key] = templating.parse_template(values["subject"], values["content"])
    return template


def to_notification(row: Row[tuple[object, ...]], templates: ScannedTemplates) -> NotificationRecord:
    """Build a notification from a row of :func:`dao.select_notifications`.

    Args:
        row: The row.
        templates: Templates already scanned for this response, by id (see :func:`stored_template`).

    Returns:
        The notification, subject and body rendered from its template.
    """
    values = row._mapping
    keys, texts = values["personalization_keys"], values["personalization_values"]
    personalization = dict(zip(keys, texts, strict=True)) if keys else {}
    subject, body = rendered(stored_template(values, templates), personalization)
    sent_at, completed_at = values["sent_at"], values["completed_at"]
    return {
        "id": values["id"],
        "to": values["to"],
        "personalization": personalization,
        "template_id": values["template_id"],
        "status": values["status"],
        "body": body,
        "subject": subject,
        "created_at": timestamp(values["created_at"]),
        "updated_at": timestamp(values["updated_at"]),
        "sent_at": None if sent_at is None else timestamp(sent_at),
        "completed_at": None if completed_at is None else timestamp(completed_at),
    }


async def get_notification(session: AsyncSession, notification_id: uuid.UUID, caller: Caller) -> NotificationRecord:
    """Load one notification of the caller's.

    Args:
        session: Any session.
        notification_id: The id.
        caller: Whose it must be: a service sees its own only, another's is as absent.

    Returns:
        The notification.

    Raises:
        NotFound: When the caller has no such notification.
    """
    row = await dao.get_notification(session, notification_id, caller.service_id)
    if row is None:
        raise NotFound(f"Notification {notification_id} not found")
    return to_notification(row, {})


async def list_notifications(
    session: AsyncSession,
    caller: Caller,
    limit: int,
    older_than: uuid.UUID | None,
    status: StatusFilter | None,
    template_id: uuid.UUID | None,
) -> dict[str, object]:
    """Load a page of notifications, newest first.

    Args:
        session: Any session.
        caller: Whose notifications to list.
        limit: Page size.
        older_than: Id of the last notification of the previous page, or None.
        status: Only this status (``failed``: any failure), or any.
        template_id: Only this template, or any.

    Returns:
        The page (the shape of NotificationPage); ``next`` is set when more notifications follow.

    Raises:
        NotFound: When ``older_than`` names no notification.
    """
    position = None
    if older_than is not None:
        position = await dao.get_position(session, older_than, caller.service_id)
        if position is None:
            raise NotFound(f"Notification {older_than} not found")
    rows = await dao.list_notifications(session, caller.service_id, limit + 1, position, status, template_id)
    templates: ScannedTemplates = {}
    page = [to_notification(row, templates) for row in rows[:limit]]
    has_more = len(rows) > limit
    return {"notifications": page, "next": page[-1]["id"] if has_more else None}
