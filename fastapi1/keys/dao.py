"""All SQL for API keys and the guest list."""

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import DateTime, Row, String, Uuid, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.models.keys import ApiKey, GuestListRecipient
from fastapi1.models.services import Service

_LIVE = text("revoked_at IS NULL")


async def insert_key(
    session: AsyncSession, service_id: uuid.UUID, name: str, key_type: str, secret: str, now: datetime
) -> ApiKey | None:
    """Insert a key unless the service has a live key of that name.

    Args:
        session: The write session.
        service_id: The owning service (it must exist).
        name: The key's name.
        key_type: normal, team or test.
        secret: The encrypted secret.
        now: Creation time.

    Returns:
        The new key, or None when the name is taken by a live key.
    """
    statement = (
        insert(ApiKey)
        .values(id=uuid.uuid4(), service_id=service_id, name=name, key_type=key_type, secret=secret, created_at=now)
        .on_conflict_do_nothing(index_elements=[ApiKey.service_id, ApiKey.name], index_where=_LIVE)
        .returning(ApiKey)
    )
    return (await session.scalars(statement)).one_or_none()


async def list_keys(session: AsyncSession, service_id: uuid.UUID) -> Sequence[ApiKey]:
    """A service's keys, live and revoked, oldest first.

    Args:
        session: Any session.
        service_id: The service.
    """
    statement = select(ApiKey).where(ApiKey.service_id == service_id).order_by(ApiKey.created_at, ApiKey.id)
    return (await session.scalars(statement)).all()


async def revoke_key(session: AsyncSession, service_id: uuid.UUID, key_id: uuid.UUID, now: datetime) -> bool:
    """Revoke a key of a service; a key revoked before keeps its time of revocation.

    Args:
        session: The write session.
        service_id: The service the key must belong to.
        key_id: The key.
        now: Time of revocation.

    Returns:
        Whether the service has such a key.
    """
    statement = (
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.service_id == service_id)
        .values(revoked_at=func.coalesce(ApiKey.revoked_at, now))
        .returning(ApiKey.id)
    )
    return (await session.execute(statement)).one_or_none() is not None


# What authentication needs of a service, in one statement built once: a row per key that is
# live or revoked since ``revoked_since`` (for "revoked" rather than "not found"), or one row
# with null key columns when the service has none, or no row when there is no such service.
SERVICE_KEYS = (
    select(Service.id.label("service_id"), ApiKey.id, ApiKey.key_type, ApiKey.secret, ApiKey.revoked_at)
    .select_from(Service)
    .outerjoin(
        ApiKey,
        (ApiKey.service_id == Service.id)
        & or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > bindparam("revoked_since", type_=DateTime(True))),
    )
    .where(Service.id == bindparam("service_id", type_=Uuid()))
    .order_by(ApiKey.created_at.desc())
)


async def service_keys(
    session: AsyncSession, service_id: uuid.UUID, revoked_since: datetime
) -> Sequence[Row[uuid.UUID, uuid.UUID, str, str, datetime | None]] | None:
    """The keys a token of a service may be signed with, newest first.

    Args:
        session: Any session on the primary (a replica could lag behind a revocation).
        service_id: The token's ``iss``.
        revoked_since: Keys revoked before this are left out.

    Returns:
        Rows ``(service_id, id, key_type, secret, revoked_at)``, the key columns null (whatever
        their declared types) when the service has no key; None when there is no such service.
    """
    connection = await session.connection()
    rows = (await connection.execute(SERVICE_KEYS, {"service_id": service_id, "revoked_since": revoked_since})).all()
    return rows or None


async def insert_guest(
    session: AsyncSession, service_id: uuid.UUID, recipient: str, now: datetime
) -> GuestListRecipient | None:
    """Add a recipient to a service's guest list unless it is there.

    Args:
        session: The write session.
        service_id: The service (it must exist).
        recipient: The normalised recipient.
        now: Creation time.

    Returns:
        The new entry, or None when the recipient is already on the list.
    """
    statement = (
        insert(GuestListRecipient)
        .values(id=uuid.uuid4(), service_id=service_id, recipient=recipient, created_at=now)
        .on_conflict_do_nothing(index_elements=[GuestListRecipient.service_id, GuestListRecipient.recipient])
        .returning(GuestListRecipient)
    )
    return (await session.scalars(statement)).one_or_none()


async def list_guests(session: AsyncSession, service_id: uuid.UUID) -> Sequence[GuestListRecipient]:
    """A service's guest list, by recipient.

    Args:
        session: Any session.
        service_id: The service.
    """
    statement = (
        select(GuestListRecipient)
        .where(GuestListRecipient.service_id == service_id)
        .order_by(GuestListRecipient.recipient)
    )
    return (await session.scalars(statement)).all()


async def delete_guest(session: AsyncSession, service_id: uuid.UUID, guest_id: uuid.UUID) -> bool:
    """Remove an entry of a service's guest list.

    Args:
        session: The write session.
        service_id: The service the entry must belong to.
        guest_id: The entry.

    Returns:
        Whether the service had such an entry.
    """
    statement = (
        delete(GuestListRecipient)
        .where(GuestListRecipient.id == guest_id, GuestListRecipient.service_id == service_id)
        .returning(GuestListRecipient.id)
    )
    return (await session.execute(statement)).one_or_none() is not None


GUESTS_AMONG = select(GuestListRecipient.recipient).where(
    GuestListRecipient.service_id == bindparam("service_id", type_=Uuid()),
    GuestListRecipient.recipient == func.any(bindparam("recipients", type_=ARRAY(String()))),
)


async def guests_among(session: AsyncSession, service_id: uuid.UUID, recipients: Collection[str]) -> set[str]:
    """Which of some normalised recipients are on a service's guest list, in one statement.

    Args:
        session: Any session.
        service_id: The service.
        recipients: Normalised recipients.
    """
    connection = await session.connection()
    rows = await connection.execute(GUESTS_AMONG, {"service_id": service_id, "recipients": list(recipients)})
    return set(rows.scalars())
