"""The SQL of ``/v2``'s own: a send's template and sender, read in one round trip.

A ``/v2`` send needs what ``/notifications/v1`` needs (the template at its current version) and
one thing more, the sender; reading both in one statement keeps a ``/v2`` send at the round
trips of a ``/v1`` one.
"""

import uuid

from sqlalchemy import Row, Select, Uuid, bindparam, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.senders.dao import TABLES, SenderKind
from fastapi1.services import dao as services_dao

_SERVICE = bindparam("service_id", type_=Uuid())
_SENDER = bindparam("sender_id", type_=Uuid())


def template_and_sender(kind: SenderKind) -> Select[tuple[object, ...]]:
    """The statement for one kind of sender: the template's current version, and the sender asked for or the default.

    Args:
        kind: Which kind of sender.

    Returns:
        A select of the template's :data:`fastapi1.services.dao.CURRENT` columns plus ``sender_id`` and
        ``sender`` (null when the service has no such sender, or no default); no row when the service has
        no such template.
    """
    table, column = TABLES[kind]
    sender = (
        select(table.c.id.label("sender_id"), table.c[column].label("sender"))
        .where(table.c.service_id == _SERVICE, (table.c.id == _SENDER) | (_SENDER.is_(None) & table.c.is_default))
        .limit(1)
        .lateral("sender")
    )
    current = services_dao.CURRENT.where(
        services_dao.templates.c.service_id == _SERVICE,
        services_dao.templates.c.id == bindparam("template_id", type_=Uuid()),
    )
    return current.add_columns(sender.c.sender_id, sender.c.sender).outerjoin(sender, true())


TEMPLATE_AND_SENDER = {kind: template_and_sender(kind) for kind in TABLES}


async def get_template_and_sender(
    session: AsyncSession, kind: SenderKind, service_id: uuid.UUID, template_id: uuid.UUID, sender_id: uuid.UUID | None
) -> Row[tuple[object, ...]] | None:
    """A service's template at its current version and the sender a notification from it goes out with.

    Args:
        session: Any session.
        kind: Which kind of sender.
        service_id: The sending service.
        template_id: The template.
        sender_id: The sender asked for, or None for the service's default.

    Returns:
        The row (``sender_id`` and ``sender`` null when there is no such sender), or None without the template.
    """
    connection = await session.connection()
    parameters = {"service_id": service_id, "template_id": template_id, "sender_id": sender_id}
    return (await connection.execute(TEMPLATE_AND_SENDER[kind], parameters)).first()
