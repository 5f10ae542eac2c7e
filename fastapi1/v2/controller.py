"""``/v2`` logic: GOV.UK Notify's requests mapped onto the notification and template controllers, and Notify's answers.

Nothing here creates, renders or stores a notification by itself: sending goes through
:func:`fastapi1.notifications.controller.create_notifications`, reading through the
notification DAO, as ``/notifications/v1`` does; this module only checks what Notify checks
on top (template type, senders) and writes Notify's bodies.
"""

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Row, RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.auth.schemas import Caller
from fastapi1.errors import NotFound
from fastapi1.limits.limiter import Limiter
from fastapi1.models.notifications import NOTIFICATION_STATUSES
from fastapi1.notifications import controller as notifications
from fastapi1.notifications import dao as notifications_dao
from fastapi1.notifications.schemas import NotificationCreate, NotificationRecord
from fastapi1.recipients import is_email_address, is_simulated_delivered
from fastapi1.senders.dao import SenderKind
from fastapi1.services import controller as services
from fastapi1.services import templating
from fastapi1.types import TemplateType
from fastapi1.v2 import dao
from fastapi1.v2.errors import NotifyBadRequest, NotifyValidationError
from fastapi1.v2.schemas import EmailNotificationRequest, SmsNotificationRequest

# Characters that start Markdown formatting, escaped in the values named by ``sanitise_content_for``,
# and the links taken out of them (Notify's clients: "Markdown is escaped and URLs are removed").
MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]#>~^|])")
LINKS = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)
LETTERS_REFUSED = "Service is not allowed to send letters"


@dataclass(frozen=True, slots=True)
class Urls:
    """Where the routes are, for the ``uri`` fields: the request's own base URL."""

    base: str

    def notification(self, notification_id: uuid.UUID) -> str:
        """The notification's URL.

        Args:
            notification_id: The notification.
        """
        return f"{self.base}v2/notifications/{notification_id}"

    def template(self, template_id: uuid.UUID, version: int) -> dict[str, Any]:
        """Notify's ``template`` object: the id, the version, and where that version is read.

        Args:
            template_id: The template.
            version: Its version.
        """
        return {"id": template_id, "version": version, "uri": f"{self.base}v2/template/{template_id}/version/{version}"}


def sanitised(value: str) -> str:
    """A value that can format nothing and link nowhere: links removed, Markdown characters backslash-escaped.

    Args:
        value: A personalisation value.
    """
    return MARKDOWN_SPECIALS.sub(r"\\\1", LINKS.sub("", value))


def require_service(caller: Caller) -> uuid.UUID:
    """The caller's service: ``/v2`` always has one (its dependency requires a service token).

    Args:
        caller: The caller.
    """
    assert caller.service_id is not None
    return caller.service_id


SENDER_FIELDS: dict[SenderKind, str] = {"sms_sender": "sms_sender_id", "email_reply_to": "email_reply_to_id"}


def check_template_and_sender(
    row: Row[tuple[object, ...]] | None,
    template_id: uuid.UUID,
    kind: SenderKind,
    service_id: uuid.UUID,
    sender_id: uuid.UUID | None,
) -> None:
    """Notify's checks of a send's template and sender, in its order.

    Args:
        row: What :func:`dao.get_template_and_sender` read.
        template_id: The template asked for.
        kind: The route's sender kind.
        service_id: The sending service.
        sender_id: The sender asked for, or None.

    Raises:
        TemplateNotFound: When the service has no such template.
        NotifyBadRequest: When the template is of the other type, or the sender is not the service's.
    """
    if row is None:
        raise notifications.TemplateNotFound(template_id)
    expected = "sms" if kind == "sms_sender" else "email"
    if row.template_type != expected:
        raise NotifyBadRequest(f"{row.template_type} template is not suitable for {expected} notification")
    if sender_id is not None and row.sender_id is None:
        field = SENDER_FIELDS[kind]
        raise NotifyBadRequest(f"{field} {sender_id} does not exist in database for service id {service_id}")


@dataclass(frozen=True, slots=True)
class Sent:
    """A notification sent through ``/v2``: as stored, the template version it came from, and its sender."""

    record: NotificationRecord
    template: notifications.CurrentTemplate
    sender: str | None


async def send(
    session: AsyncSession,
    caller: Caller,
    limiter: Limiter,
    item: NotificationCreate,
    kind: SenderKind,
    sender_id: uuid.UUID | None,
    fields: notifications.NotifyFields,
) -> Sent:
    """Create one notification from a template of the route's type, through the shared controller.

    The template and the sender are read in one statement; the checks are Notify's, in its
    order: the template, its type, the sender, the personalisation.

    Args:
        session: The write session.
        caller: The sending service.
        limiter: Its limits.
        item: The notification, as ``/notifications/v1`` takes it.
        kind: The route's sender kind (which also says the template type it sends).
        sender_id: The sender asked for, or None for the service's default.
        fields: Notify's fields, but the sender.

    Returns:
        What was sent.

    """
    service_id = require_service(caller)
    assert item.template_id is not None
    row = await dao.get_template_and_sender(session, kind, service_id, item.template_id, sender_id)
    check_template_and_sender(row, item.template_id, kind, service_id, sender_id)
    assert row is not None
    template = notifications.CurrentTemplate(
        templating.parse_template(row.subject, row.content), row.version, row.template_type
    )
    checked = notifications.checked_templates([item], {item.template_id: template}, in_list=False)
    if is_simulated_delivered(item.to):
        return Sent(smoke_test(item, template), template, row.sender)
    if kind == "sms_sender":
        fields = replace(fields, sms_sender_id=row.sender_id)
    else:
        fields = replace(fields, email_reply_to_id=row.sender_id)
    (created,) = await notifications.create_notifications(
        session, [item], caller, limiter, in_list=False, fields=fields, templates=checked
    )
    return Sent(created, template, row.sender)


def smoke_test(item: NotificationCreate, template: notifications.CurrentTemplate) -> NotificationRecord:
    """The answer to a notification for one of Notify's smoke-test recipients: checked, never stored or sent.

    Notify answers these as it would any other (so a client's smoke test exercises its whole
    request) but stores nothing, counts nothing against the daily limit and sends no receipt;
    reading the id back is a 404, as on Notify.

    Args:
        item: The notification.
        template: Its template.

    Returns:
        The notification as it would have been created.
    """
    subject, body = template.parsed.render(item.personalization or {})
    stamp = notifications.timestamp(datetime.now(UTC))
    return {
        "id": uuid.uuid4(),
        "to": item.to,
        "personalization": item.personalization or {},
        "template_id": item.template_id,
        "status": notifications.INITIAL_STATUS,
        "body": body,
        "subject": subject,
        "created_at": stamp,
        "updated_at": stamp,
        "sent_at": None,
        "completed_at": None,
    }


async def send_email(
    session: AsyncSession,
    caller: Caller,
    limiter: Limiter,
    request: EmailNotificationRequest,
    urls: Urls,
    from_email: str,
) -> dict[str, Any]:
    """``POST /v2/notifications/email``.

    Args:
        session: The write session.
        caller: The sending service.
        limiter: Its limits.
        request: The request.
        urls: Where the routes are.
        from_email: The address e-mails come from.

    Returns:
        Notify's answer.
    """
    personalisation = dict(request.personalisation or {})
    cleaned = {key: sanitised(personalisation[key]) for key in request.sanitise_content_for or ()}
    personalisation.update(cleaned)
    fields = notifications.NotifyFields(
        reference=request.reference, one_click_unsubscribe_url=request.one_click_unsubscribe_url
    )
    item = NotificationCreate.model_construct(
        to=request.email_address, personalization=personalisation or None, template_id=request.template_id
    )
    sent = await send(session, caller, limiter, item, "email_reply_to", request.email_reply_to_id, fields)
    created, template = sent.record, sent.template
    return {
        "id": created["id"],
        "reference": request.reference,
        "content": {
            "body": created["body"],
            "subject": created["subject"],
            "from_email": from_email,
            "one_click_unsubscribe_url": request.one_click_unsubscribe_url,
        },
        "uri": urls.notification(created["id"]),
        "template": urls.template(request.template_id, template.version),
        "scheduled_for": None,
        # The values sanitise_content_for named, as they went into the e-mail.
        "sanitised_content": cleaned,
    }


async def send_sms(
    session: AsyncSession, caller: Caller, limiter: Limiter, request: SmsNotificationRequest, urls: Urls
) -> dict[str, Any]:
    """``POST /v2/notifications/sms``.

    Args:
        session: The write session.
        caller: The sending service.
        limiter: Its limits.
        request: The request.
        urls: Where the routes are.

    Returns:
        Notify's answer.
    """
    fields = notifications.NotifyFields(reference=request.reference)
    item = NotificationCreate.model_construct(
        to=request.phone_number, personalization=request.personalisation or None, template_id=request.template_id
    )
    sent = await send(session, caller, limiter, item, "sms_sender", request.sms_sender_id, fields)
    created, template = sent.record, sent.template
    return {
        "id": created["id"],
        "reference": request.reference,
        "content": {"body": created["body"], "from_number": sent.sender},
        "uri": urls.notification(created["id"]),
        "template": urls.template(request.template_id, template.version),
        "scheduled_for": None,
    }


def notify_notification(
    row: Row[tuple[object, ...]], scanned: notifications.ScannedTemplates, urls: Urls
) -> dict[str, Any]:
    """A stored notification as Notify shows it.

    Args:
        row: A row of :func:`fastapi1.notifications.dao.select_notifications`.
        scanned: Template versions scanned for this response.
        urls: Where the routes are.
    """
    record = notifications.to_notification(row, scanned)
    values: RowMapping = row._mapping
    email = is_email_address(record["to"])
    template_id, version = values["template_id"], values["template_version"]
    letter_fields: dict[str, None] = dict.fromkeys(("line_1", "line_2", "line_3", "line_4", "line_5", "line_6"))
    return {
        "id": record["id"],
        "reference": values["reference"],
        "email_address": record["to"] if email else None,
        "phone_number": None if email else record["to"],
        **letter_fields,
        "postcode": None,
        "postage": None,
        "type": "email" if email else "sms",
        "status": record["status"],
        "template": None if template_id is None else urls.template(template_id, version),
        "body": record["body"] if record["body"] is not None else notifications.plain_body(record["personalization"]),
        "subject": record["subject"] if email else None,
        "created_at": record["created_at"],
        "created_by_name": None,
        "sent_at": record["sent_at"],
        "completed_at": record["completed_at"],
        "scheduled_for": None,
        "one_click_unsubscribe_url": values["one_click_unsubscribe_url"],
    }


async def get_notification(
    session: AsyncSession, caller: Caller, notification_id: uuid.UUID, urls: Urls
) -> dict[str, Any]:
    """``GET /v2/notifications/{id}``.

    Args:
        session: A read session.
        caller: The service whose notification it must be.
        notification_id: The id.
        urls: Where the routes are.

    Returns:
        Notify's notification.

    Raises:
        NotFound: When the service has no such notification.
    """
    row = await notifications_dao.get_notification(session, notification_id, require_service(caller))
    if row is None:
        raise NotFound(f"Notification {notification_id} not found")
    return notify_notification(row, {}, urls)


# What the list's status filter takes: a status, or Notify's ``failed`` for the three failures.
STATUS_FILTERS = (*NOTIFICATION_STATUSES, notifications_dao.FAILED)
# Notify's template types; fastapi1 has no letters, so a letter filter finds nothing.
NOTIFY_TYPES = ("sms", "email", "letter")
LIST_PARAMETERS = frozenset({"status", "template_type", "reference", "older_than", "include_jobs"})


def one_of(name: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """Query values, each one of those allowed.

    Args:
        name: The parameter.
        values: Its values.
        allowed: What it takes.

    Raises:
        NotifyValidationError: For a value not allowed (Notify's message).
    """
    for value in values:
        if value not in allowed:
            raise NotifyValidationError(f"{name} {value[:64]} is not one of [{', '.join(allowed)}]")
    return list(values)


def checked_list_query(names: Sequence[str]) -> None:
    """Refuse a query parameter the list does not take, as Notify's schema does.

    Args:
        names: The query's parameter names.

    Raises:
        NotifyValidationError: For an unknown one.
    """
    for name in names:
        if name not in LIST_PARAMETERS:
            raise NotifyValidationError(f"Additional properties are not allowed ({name[:64]} was unexpected)")


@dataclass(frozen=True, slots=True)
class NotificationFilters:
    """The filters of ``GET /v2/notifications``."""

    statuses: Sequence[str] = ()
    template_types: Sequence[str] = ()
    reference: str | None = None
    older_than: uuid.UUID | None = None


async def list_notifications(
    session: AsyncSession,
    caller: Caller,
    filters: NotificationFilters,
    page_size: int,
    urls: Urls,
    query: Mapping[str, Any],
) -> dict[str, Any]:
    """``GET /v2/notifications``: a page, newest first, and Notify's links.

    Args:
        session: A read session.
        caller: Whose notifications.
        filters: The filters.
        page_size: Notifications per page.
        urls: Where the routes are.
        query: The request's query, as pairs to repeat in the links.

    Returns:
        ``{"notifications", "links"}``; ``links.next`` whenever the page is not empty, as Notify's clients expect.
    """
    service_id = require_service(caller)
    channels = sorted(set(filters.template_types) - {"letter"})
    if filters.template_types and not channels:
        return {"notifications": [], "links": {"current": links_url(urls, query, filters.older_than)}}
    position = None
    if filters.older_than is not None:
        position = await notifications_dao.get_position(session, filters.older_than, service_id)
        if position is None:
            # Notify answers an unknown cursor with an empty page, not an error.
            return {"notifications": [], "links": {"current": links_url(urls, query, None)}}
    rows = await notifications_dao.list_notify_notifications(
        session,
        service_id,
        page_size,
        position,
        notifications_dao.expanded_statuses(filters.statuses),
        channels,
        filters.reference,
    )
    scanned: notifications.ScannedTemplates = {}
    page = [notify_notification(row, scanned, urls) for row in rows]
    links = {"current": links_url(urls, query, filters.older_than)}
    if page:
        links["next"] = links_url(urls, query, page[-1]["id"])
    return {"notifications": page, "links": links}


def links_url(urls: Urls, query: Mapping[str, Any], older_than: uuid.UUID | None) -> str:
    """The list's URL with the same filters, starting after ``older_than``.

    Args:
        urls: Where the routes are.
        query: The request's filters (``older_than`` is replaced).
        older_than: The cursor, or None.
    """
    pairs = [(key, value) for key, value in query.items() if key != "older_than"]
    if older_than is not None:
        pairs.append(("older_than", str(older_than)))
    suffix = f"?{urlencode(pairs, doseq=True)}" if pairs else ""
    return f"{urls.base}v2/notifications{suffix}"


def notify_template(row: Row[tuple[object, ...]], created_by: str) -> dict[str, Any]:
    """A template at one version as Notify shows it.

    Args:
        row: A template row of :mod:`fastapi1.services.dao`.
        created_by: Who made templates: the admin client (fastapi1 has no users).
    """
    values = row._mapping
    return {
        "id": values["id"],
        "name": values["name"],
        "type": values["template_type"],
        "created_at": notifications.timestamp(values["created_at"]),
        "updated_at": notifications.timestamp(values["updated_at"]) if values["version"] > 1 else None,
        "created_by": created_by,
        "version": values["version"],
        "body": values["content"],
        "subject": values["subject"],
        "letter_contact_block": None,
        "postage": None,
        "personalisation": {
            name: {"required": True} for name in templating.placeholders(values["subject"], values["content"])
        },
    }


async def get_template(
    session: AsyncSession, caller: Caller, template_id: uuid.UUID, created_by: str, version: int | None = None
) -> dict[str, Any]:
    """``GET /v2/template/{id}`` and ``/version/{version}``.

    Args:
        session: A read session.
        caller: Whose template it must be.
        template_id: The template.
        created_by: Who made templates.
        version: The version, or None for the current one.

    Returns:
        Notify's template.
    """
    row = await services.get_template(session, require_service(caller), template_id, version)
    return notify_template(row, created_by)


async def list_templates(
    session: AsyncSession, caller: Caller, template_type: str | None, created_by: str
) -> dict[str, Any]:
    """``GET /v2/templates``.

    Args:
        session: A read session.
        caller: Whose templates.
        template_type: Only this type (``letter`` finds none), or every type.
        created_by: Who made templates.

    Returns:
        ``{"templates": [...]}``.
    """
    if template_type is not None:
        one_of("type", [template_type], NOTIFY_TYPES)
        if template_type == "letter":
            return {"templates": []}
    chosen: TemplateType | None = "email" if template_type == "email" else "sms" if template_type == "sms" else None
    rows = await services.list_templates(session, require_service(caller), chosen)
    return {"templates": [notify_template(row, created_by) for row in rows]}


async def list_template_versions(
    session: AsyncSession, caller: Caller, service_id: uuid.UUID, template_id: uuid.UUID, created_by: str
) -> dict[str, Any]:
    """Every version of a template, oldest first, in the history shape of Notify's internal route its client calls.

    Args:
        session: A read session.
        caller: The calling service: it may read its own templates only.
        service_id: The service the path names.
        template_id: The template.
        created_by: Who made templates.

    Returns:
        ``{"data": [...]}``.

    Raises:
        NotFound: When the path names another service, or the service has no such template.
    """
    if service_id != require_service(caller):
        raise NotFound(f"Template {template_id} not found")
    rows = await services.list_versions(session, service_id, template_id)
    return {"data": [template_history(row, created_by) for row in rows]}


def template_history(row: Row[tuple[object, ...]], created_by: str) -> dict[str, Any]:
    """One version as Notify's internal template history writes it (``template_type``, ``content``).

    Args:
        row: A version row of :mod:`fastapi1.services.dao`.
        created_by: Who made templates.
    """
    values = row._mapping
    return {
        "id": values["id"],
        "service": values["service_id"],
        "name": values["name"],
        "template_type": values["template_type"],
        "version": values["version"],
        "subject": values["subject"],
        "content": values["content"],
        "created_at": notifications.timestamp(values["created_at"]),
        "updated_at": notifications.timestamp(values["updated_at"]),
        "created_by": created_by,
        "archived": False,
        "hidden": False,
        "postage": None,
    }


async def preview_template(
    session: AsyncSession, caller: Caller, template_id: uuid.UUID, personalisation: dict[str, str]
) -> dict[str, Any]:
    """``POST /v2/template/{id}/preview``: the current version rendered, checked as a notification would be.

    Args:
        session: A read session.
        caller: Whose template it must be.
        template_id: The template.
        personalisation: The values.

    Returns:
        Notify's preview.
    """
    row = await services.get_template(session, require_service(caller), template_id)
    parsed = templating.parse_template(row.subject, row.content)
    notifications.check_personalization(parsed, personalisation, ("body", "personalisation"))
    subject, body = parsed.render(personalisation)
    return {
        "id": row.id,
        "type": row.template_type,
        "version": row.version,
        "body": body,
        "subject": subject,
        "html": None,
        "postage": None,
    }
