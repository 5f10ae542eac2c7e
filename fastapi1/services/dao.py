"""All SQL for services and templates."""

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import Uuid, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.models.services import Service, Template


async def insert_service(session: AsyncSession, name: str, now: datetime) -> Service | None:
    """Insert a service unless its name is taken.

    Args:
        session: The write session.
        name: The unique name.
        now: Creation time.

    Returns:
        The new service, or None when another service has the name.
    """
    statement = (
        insert(Service)
        .values(id=uuid.uuid4(), name=name, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[Service.name])
        .returning(Service)
    )
    return (await session.scalars(statement)).one_or_none()


async def get_service(session: AsyncSession, service_id: uuid.UUID) -> Service | None:
    """Load one service.

    Args:
        session: Any session.
        service_id: The service's id.

    Returns:
        The service, or None.
    """
    return await session.get(Service, service_id)


async def insert_template(
    session: AsyncSession, service_id: uuid.UUID, name: str, subject: str | None, content: str, now: datetime
) -> Template | None:
    """Insert a template unless its service already has one of that name.

    Args:
        session: The write session.
        service_id: The owning service (it must exist).
        name: Name, unique within the service.
        subject: Optional subject.
        content: The message text.
        now: Creation time.

    Returns:
        The new template, or None when the name is taken in that service.
    """
    statement = (
        insert(Template)
        .values(
            id=uuid.uuid4(),
            service_id=service_id,
            name=name,
            subject=subject,
            content=content,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[Template.service_id, Template.name])
        .returning(Template)
    )
    return (await session.scalars(statement)).one_or_none()


async def list_templates(session: AsyncSession, service_id: uuid.UUID) -> Sequence[Template]:
    """Load a service's templates by name.

    Args:
        session: Any session.
        service_id: The service's id.

    Returns:
        The templates, sorted by name.
    """
    statement = select(Template).where(Template.service_id == service_id).order_by(Template.name)
    return (await session.scalars(statement)).all()


async def get_template(session: AsyncSession, service_id: uuid.UUID, template_id: uuid.UUID) -> Template | None:
    """Load one template of one service.

    Args:
        session: Any session.
        service_id: The owning service.
        template_id: The template's id.

    Returns:
        The template, or None when that service has no such template.
    """
    statement = select(Template).where(Template.id == template_id, Template.service_id == service_id)
    return (await session.scalars(statement)).one_or_none()


# Built once, like the notification statements: this runs on every templated create. A service
# may use its own templates only; a request without a key (development) any.
_TEMPLATES_BY_ID = select(Template.id, Template.subject, Template.content).where(
    Template.id == func.any(bindparam("ids", type_=ARRAY(Uuid())))
)
GET_TEMPLATE_CONTENTS = {
    True: _TEMPLATES_BY_ID.where(Template.service_id == bindparam("service_id", type_=Uuid())),
    False: _TEMPLATES_BY_ID,
}


async def get_template_contents(
    session: AsyncSession, template_ids: Collection[uuid.UUID], service_id: uuid.UUID | None
) -> dict[uuid.UUID, tuple[str | None, str]]:
    """Load the subject and content of several templates in one statement.

    Args:
        session: Any session.
        template_ids: The ids to look up.
        service_id: The service they must belong to; None for any service.

    Returns:
        ``(subject, content)`` by template id; ids that do not exist (in that service) are absent.
    """
    connection = await session.connection()
    statement = GET_TEMPLATE_CONTENTS[service_id is not None]
    rows = await connection.execute(statement, {"ids": list(template_ids), "service_id": service_id})
    return {row.id: (row.subject, row.content) for row in rows}
