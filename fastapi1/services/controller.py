"""Services and templates logic."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.errors import Conflict, NotFound, Unprocessable
from fastapi1.models.services import Service
from fastapi1.services import dao
from fastapi1.services.schemas import ServiceCreate, TemplateCreate, TemplateUpdate, check_subject
from fastapi1.types import TemplateType


async def create_service(session: AsyncSession, new: ServiceCreate) -> Service:
    """Create a service.

    Args:
        session: The write session.
        new: The requested service.

    Returns:
        The stored service.

    Raises:
        Conflict: When the name is taken.
    """
    service = await dao.insert_service(session, new.name, datetime.now(UTC))
    if service is None:
        raise Conflict(f"Service name {new.name!r} already exists")
    return service


async def get_service(session: AsyncSession, service_id: uuid.UUID) -> Service:
    """Load a service.

    Args:
        session: Any session.
        service_id: The service's id.

    Returns:
        The service.

    Raises:
        NotFound: When there is no such service.
    """
    service = await dao.get_service(session, service_id)
    if service is None:
        raise NotFound(f"Service {service_id} not found")
    return service


async def create_template(session: AsyncSession, service_id: uuid.UUID, new: TemplateCreate) -> Row[tuple[object, ...]]:
    """Create a template in a service, at version 1.

    Args:
        session: The write session.
        service_id: The owning service.
        new: The requested template.

    Returns:
        The stored template.

    Raises:
        Conflict: When the service already has a template of that name.
    """
    await get_service(session, service_id)
    template_type: TemplateType = new.template_type or "sms"
    template = await dao.insert_template(
        session, service_id, new.name, template_type, new.subject, new.content, datetime.now(UTC)
    )
    if template is None:
        raise Conflict(f"Template name {new.name!r} already exists in service {service_id}")
    return template


async def update_template(
    session: AsyncSession, service_id: uuid.UUID, template_id: uuid.UUID, change: TemplateUpdate
) -> Row[tuple[object, ...]]:
    """Change a template: the next version, unless nothing would change (then the current one, as Notify does).

    Args:
        session: The write session.
        service_id: The owning service.
        template_id: The template.
        change: The fields to replace.

    Returns:
        The template at its (new) current version.

    Raises:
        NotFound: When the service has no such template.
        Conflict: When the new name is another template's.
        Unprocessable: When the change gives a text message template a subject or takes an e-mail's away.
    """
    if not await dao.lock_template(session, service_id, template_id):
        raise NotFound(f"Template {template_id} not found")
    # Read under the lock: a change that waited for another one builds on the version it made.
    current = await get_template(session, service_id, template_id)
    name, subject, content = applied(current, change)
    if name is None and (subject, content) == (current.subject, current.content):
        return current
    if name is not None and not await dao.rename_template(session, template_id, name):
        raise Conflict(f"Template name {name!r} already exists in service {service_id}")
    await dao.insert_version(session, template_id, current.version + 1, subject, content, datetime.now(UTC))
    return await get_template(session, service_id, template_id)


def applied(current: Row[tuple[object, ...]], change: TemplateUpdate) -> tuple[str | None, str | None, str]:
    """A change applied to the current version: the new name (None when it stays), the subject and the content.

    Args:
        current: The template at its current version.
        change: The fields to replace.

    Raises:
        Unprocessable: When the change gives a text message template a subject or takes an e-mail's away.
    """
    given = change.model_fields_set
    name = change.name if "name" in given and change.name != current.name else None
    subject = change.subject if "subject" in given else current.subject
    content = change.content if change.content is not None else current.content
    try:
        check_subject(current.template_type, subject)
    except ValueError as error:
        raise Unprocessable(str(error), ("body", "subject")) from None
    return name, subject, content


async def list_templates(
    session: AsyncSession, service_id: uuid.UUID, template_type: TemplateType | None = None
) -> Sequence[Row[tuple[object, ...]]]:
    """List a service's templates at their current versions.

    Args:
        session: Any session.
        service_id: The service's id.
        template_type: Only this type, or every type.

    Returns:
        The templates, by name.
    """
    await get_service(session, service_id)
    return await dao.list_templates(session, service_id, template_type)


async def get_template(
    session: AsyncSession, service_id: uuid.UUID, template_id: uuid.UUID, version: int | None = None
) -> Row[tuple[object, ...]]:
    """Load one template of a service, at its current version or at ``version``.

    Args:
        session: Any session.
        service_id: The owning service.
        template_id: The template's id.
        version: The version wanted, or None for the current one.

    Returns:
        The template.

    Raises:
        NotFound: When the service has no such template, or the template no such version.
    """
    template = await dao.get_template(session, service_id, template_id, version)
    if template is None:
        what = f"Template {template_id}" if version is None else f"Version {version} of template {template_id}"
        raise NotFound(f"{what} not found")
    return template


async def list_versions(
    session: AsyncSession, service_id: uuid.UUID, template_id: uuid.UUID
) -> Sequence[Row[tuple[object, ...]]]:
    """Every version of a template of a service, oldest first.

    Args:
        session: Any session.
        service_id: The owning service.
        template_id: The template.

    Returns:
        The versions.

    Raises:
        NotFound: When the service has no such template.
    """
    rows = await dao.list_versions(session, service_id, template_id)
    if not rows:
        raise NotFound(f"Template {template_id} not found")
    return rows
