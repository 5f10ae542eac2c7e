"""All SQL for senders: both kinds live in tables of one shape (id, service, value, default, created)."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, cast

from sqlalchemy import Row, Table, Uuid, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.models.services import EmailReplyTo, Service, SmsSender

SenderKind = Literal["sms_sender", "email_reply_to"]
# Each kind's table and the name of its value column.
TABLES: dict[SenderKind, tuple[Table, str]] = {
    "sms_sender": (cast(Table, SmsSender.__table__), "sms_sender"),
    "email_reply_to": (cast(Table, EmailReplyTo.__table__), "email_address"),
}
services = cast(Table, Service.__table__)
_SERVICE = bindparam("service_id", type_=Uuid())
# The service's row, locked: senders of one service are added one after another, so that
# exactly one of them is the default whatever the concurrency.
LOCK_SERVICE = select(services.c.id).where(services.c.id == _SERVICE).with_for_update()


async def insert_sender(
    session: AsyncSession, kind: SenderKind, service_id: uuid.UUID, value: str, is_default: bool, now: datetime
) -> Row[tuple[object, ...]] | None:
    """Add a sender to a service; the first is the default, and a new default replaces the old one.

    Args:
        session: The write session; the service stays locked until it ends.
        kind: Which kind of sender.
        service_id: The service.
        value: The sender's name, number or address.
        is_default: Whether it becomes the default.
        now: Creation time.

    Returns:
        The new sender's row, or None when there is no such service.
    """
    table, column = TABLES[kind]
    connection = await session.connection()
    if (await connection.execute(LOCK_SERVICE, {"service_id": service_id})).first() is None:
        return None
    has_default = await connection.execute(
        select(table.c.id).where(table.c.service_id == service_id, table.c.is_default)
    )
    if has_default.first() is None:
        is_default = True
    elif is_default:
        await connection.execute(
            update(table).where(table.c.service_id == service_id, table.c.is_default).values(is_default=False)
        )
    values = {"id": uuid.uuid4(), "service_id": service_id, column: value, "is_default": is_default, "created_at": now}
    return (await connection.execute(insert(table).values(values).returning(*table.c))).one()


async def list_senders(
    session: AsyncSession, kind: SenderKind, service_id: uuid.UUID
) -> Sequence[Row[tuple[object, ...]]]:
    """A service's senders of one kind, oldest first.

    Args:
        session: Any session.
        kind: Which kind.
        service_id: The service.
    """
    table, _ = TABLES[kind]
    statement = select(table).where(table.c.service_id == service_id).order_by(table.c.created_at, table.c.id)
    return (await (await session.connection()).execute(statement)).all()
