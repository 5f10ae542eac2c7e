"""Services and templates logic."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.errors import Conflict, NotFound
from fastapi1.models.services import Service, Template
from fastapi1.services import dao
from fastapi1.services.schemas import ServiceCreate, TemplateCreate


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


async def create_template(session: AsyncSession, service_id: uuid.UUID, new: TemplateCreate) -> Template:
    """Create a template in a service.

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
    template = await dao.insert_template(session, service_id, new.name, new.subject, new.content, datetime.now(UTC))
    if template is None:
        raise Conflict(f"Template name {new.name!r} already exists in service {service_id}")
    return template


async def list_templates(session: AsyncSession, service_id: uuid.UUID) -> Sequence[Template]:
    """List a service's templates.

    Args:
        session: Any session.
        service_id: The service's id.

    Returns:
        The templates, by name.
    """
    await get_service(session, service_id)
    return await dao.list_templates(session, service_id)


async def get_template(session: AsyncSession, service_id: uuid.UUID, template_id: uuid.UUID) -> Template:
    """Load one template of a service.

    Args:
        session: Any session.
        service_id: The owning service.
        template_id: The template's id.

    Returns:
        The template.

    Raises:
        NotFound: When the service has no such template.
    """
    template = await dao.get_template(session, service_id, template_id)
    if template is None:
        raise NotFound(f"Template {template_id} not found")
    return template
