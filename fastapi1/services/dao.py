"""All SQL for services, templates and their versions.

A template's current version is its highest; a template row joined with that version is what
the routes call a template (:data:`CURRENT`). Statements run as Core on the session's connection.
"""

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Integer, Row, Select, String, Table, Uuid, bindparam, func, select, true
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.models.services import Service, Template, TemplateVersion

templates = cast(Table, Template.__table__)
versions = cast(Table, TemplateVersion.__table__)


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


def template_with(version: Select[tuple[object, ...]]) -> Select[tuple[object, ...]]:
    """Templates joined with one version each, in the columns of the ``Template`` schema.

    Args:
        version: A LATERAL-able select of ``template_versions`` rows for ``templates.c.id``.
    """
    chosen = version.lateral("version")
    return (
        select(
            templates.c.id,
            templates.c.service_id,
            templates.c.name,
            templates.c.template_type,
            chosen.c.version,
            chosen.c.subject,
            chosen.c.content,
            templates.c.created_at,
            chosen.c.created_at.label("updated_at"),
        )
        .select_from(templates)
        .join(chosen, true())
    )


_latest = select(versions).where(versions.c.template_id == templates.c.id).order_by(versions.c.version.desc()).limit(1)
# Every template with its current version: one backward step into the versions' primary key.
CURRENT = template_with(_latest)
_BY_SERVICE = templates.c.service_id == bindparam("service_id", type_=Uuid())
_BY_ID = templates.c.id == bindparam("template_id", type_=Uuid())
GET_TEMPLATE = CURRENT.where(_BY_SERVICE, _BY_ID)
GET_VERSION = template_with(
    select(versions).where(
        versions.c.template_id == templates.c.id, versions.c.version == bindparam("version", type_=Integer())
    )
).where(_BY_SERVICE, _BY_ID)
LIST_VERSIONS = (
    template_with(select(versions).where(versions.c.template_id == templates.c.id))
    .where(_BY_SERVICE, _BY_ID)
    .order_by(templates.c.id, "version")
)
LIST_TEMPLATES = {
    typed: (
        CURRENT.where(_BY_SERVICE, templates.c.template_type == bindparam("template_type", type_=String()))
        if typed
        else CURRENT.where(_BY_SERVICE)
    ).order_by(templates.c.name)
    for typed in (True, False)
}
# The template's row, locked so that concurrent changes number their versions one after another,
# and each builds on the version the one before it made.
LOCK_TEMPLATE = select(templates.c.id).where(_BY_SERVICE, _BY_ID).with_for_update()
RENAME_TEMPLATE = templates.update().where(_BY_ID).values(name=bindparam("name", type_=String()))
UNIQUE_VIOLATION = "23505"
INSERT_VERSION = insert(versions).values(
    template_id=bindparam("template_id", type_=Uuid()),
    version=bindparam("version", type_=Integer()),
    subject=bindparam("subject", type_=String()),
    content=bindparam("content", type_=String()),
    created_at=bindparam("now"),
)


async def insert_template(
    session: AsyncSession,
    service_id: uuid.UUID,
    name: str,
    template_type: str,
    subject: str | None,
    content: str,
    now: datetime,
) -> Row[tuple[object, ...]] | None:
    """Insert a template and its first version, unless its service already has one of that name.

    Args:
        session: The write session.
        service_id: The owning service (it must exist).
        name: Name, unique within the service.
        template_type: ``email`` or ``sms``.
        subject: The subject (e-mail only).
        content: The message text.
        now: Creation time.

    Returns:
        The new template as :data:`CURRENT` gives it, or None when the name is taken in that service.
    """
    template_id = uuid.uuid4()
    inserted = (
        insert(templates)
        .values(id=template_id, service_id=service_id, name=name, template_type=template_type, created_at=now)
        .on_conflict_do_nothing(index_elements=[templates.c.service_id, templates.c.name])
        .returning(templates.c.id)
    )
    connection = await session.connection()
    if (await connection.execute(inserted)).first() is None:
        return None
    parameters = {"template_id": template_id, "version": 1, "subject": subject, "content": content, "now": now}
    await connection.execute(INSERT_VERSION, parameters)
    return await get_template(session, service_id, template_id)


async def lock_template(session: AsyncSession, service_id: uuid.UUID, template_id: uuid.UUID) -> bool:
    """Lock a template of a service until the transaction ends.

    Args:
        session: The write session.
        service_id: The owning service.
        template_id: The template.

    Returns:
        False when the service has no such template.
    """
    connection = await session.connection()
    locked = await connection.execute(LOCK_TEMPLATE, {"service_id": service_id, "template_id": template_id})
    return locked.first() is not None


async def rename_template(session: AsyncSession, template_id: uuid.UUID, name: str) -> bool:
    """Rename a template, unless its service has another of that name.

    The unique constraint decides, in a savepoint: a check before the UPDATE cannot see a
    template of that name that a transaction still open is creating or renaming.

    Args:
        session: The write session.
        template_id: The template.
        name: Its new name.

    Returns:
        False when the name is another template's of the service.
    """
    try:
        async with session.begin_nested():
            await (await session.connection()).execute(RENAME_TEMPLATE, {"template_id": template_id, "name": name})
    except IntegrityError as error:
        if getattr(error.orig, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        return False
    return True


async def insert_version(
    session: AsyncSession,
    template_id: uuid.UUID,
    version: int,
    subject: str | None,
    content: str,
    now: datetime,
) -> None:
    """Add a version of a template.

    Args:
        session: The write session, holding the template's lock (:func:`lock_template`).
        template_id: The template.
        version: Its number: the current one's plus one.
        subject: The version's subject.
        content: The version's content.
        now: When the version was made.
    """
    parameters = {"template_id": template_id, "version": version, "subject": subject, "content": content, "now": now}
    await (await session.connection()).execute(INSERT_VERSION, parameters)


async def list_templates(
    session: AsyncSession, service_id: uuid.UUID, template_type: str | None = None
) -> Sequence[Row[tuple[object, ...]]]:
    """Load a service's templates, each at its current version, by name.

    Args:
        session: Any session.
        service_id: The service's id.
        template_type: Only this type, or every type.

    Returns:
        Rows of :data:`CURRENT`, sorted by name.
    """
    connection = await session.connection()
    statement = LIST_TEMPLATES[template_type is not None]
    return (await connection.execute(statement, {"service_id": service_id, "template_type": template_type})).all()


async def get_template(
    session: AsyncSession, service_id: uuid.UUID, template_id: uuid.UUID, version: int | None = None
) -> Row[tuple[object, ...]] | None:
    """Load one template of one service, at its current version or at ``version``.

    Args:
        session: Any session.
        service_id: The owning service.
        template_id: The template's id.
        version: The version wanted; None for the current one.

    Returns:
        The row of :data:`CURRENT`, or None when that service has no such template (or version).
    """
    connection = await session.connection()
    statement = GET_TEMPLATE if version is None else GET_VERSION
    parameters = {"service_id": service_id, "template_id": template_id, "version": version}
    return (await connection.execute(statement, parameters)).first()


async def list_versions(
    session: AsyncSession, service_id: uuid.UUID, template_id: uuid.UUID
) -> Sequence[Row[tuple[object, ...]]]:
    """Every version of a template of one service, oldest first.

    Args:
        session: Any session.
        service_id: The owning service.
        template_id: The template.

    Returns:
        One row of :data:`CURRENT`'s shape per version; none when the service has no such template.
    """
    connection = await session.connection()
    return (await connection.execute(LIST_VERSIONS, {"service_id": service_id, "template_id": template_id})).all()


# Built once, like the notification statements: this runs on every templated create. A service
# may use its own templates only; a request without a key (development) any.
_CURRENT_BY_IDS = CURRENT.where(templates.c.id == func.any(bindparam("ids", type_=ARRAY(Uuid()))))
GET_TEMPLATE_CONTENTS = {True: _CURRENT_BY_IDS.where(_BY_SERVICE), False: _CURRENT_BY_IDS}


async def get_template_contents(
    session: AsyncSession, template_ids: Collection[uuid.UUID], service_id: uuid.UUID | None
) -> dict[uuid.UUID, Row[tuple[object, ...]]]:
    """Load several templates at their current version in one statement.

    Args:
        session: Any session.
        template_ids: The ids to look up.
        service_id: The service they must belong to; None for any service.

    Returns:
        Rows of :data:`CURRENT` by template id; ids that do not exist (in that service) are absent.
    """
    connection = await session.connection()
    statement = GET_TEMPLATE_CONTENTS[service_id is not None]
    rows = await connection.execute(statement, {"ids": list(template_ids), "service_id": service_id})
    return {row.id: row for row in rows}
