"""API keys and the guest list: created, listed and revoked by an admin for one service."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.auth.controller import Authenticator
from fastapi1.auth.tokens import combined_key
from fastapi1.db.session import on_commit
from fastapi1.errors import Conflict, NotFound
from fastapi1.keys import dao
from fastapi1.models.keys import ApiKey, GuestListRecipient
from fastapi1.services import controller as services_controller
from fastapi1.types import KeyType


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key and its combined form ``{name}-{service_id}-{secret}``, which nothing stores."""

    key: ApiKey
    combined: str


def forget_after_commit(session: AsyncSession, authenticator: Authenticator, service_id: uuid.UUID) -> None:
    """Have this process look the service's keys up again once the change is committed, and not before.

    Forgotten now as well: a lookup in flight now, or made before the commit, would cache the old keys.

    Args:
        session: The write session of the change.
        authenticator: Holds the cache.
        service_id: The service whose keys changed.
    """
    authenticator.forget(service_id)
    on_commit(session, lambda: authenticator.forget(service_id))


async def create_key(
    session: AsyncSession, authenticator: Authenticator, service_id: uuid.UUID, name: str, key_type: KeyType
) -> CreatedKey:
    """Create a key with a new random secret, stored encrypted.

    Args:
        session: The write session.
        authenticator: Encrypts the secret; forgets the service's cached keys.
        service_id: The service.
        name: The key's name, unique among the service's live keys.
        key_type: normal, team or test.

    Raises:
        Conflict: When a live key of the service has the name.
    """
    await services_controller.get_service(session, service_id)
    secret = str(uuid.uuid4())
    key = await dao.insert_key(session, service_id, name, key_type, authenticator.encrypt(secret), datetime.now(UTC))
    if key is None:
        raise Conflict(f"API key name {name!r} already exists in service {service_id}")
    forget_after_commit(session, authenticator, service_id)
    return CreatedKey(key, combined_key(name, service_id, secret))


async def list_keys(session: AsyncSession, service_id: uuid.UUID) -> Sequence[ApiKey]:
    """A service's keys, oldest first.

    Args:
        session: Any session.
        service_id: The service.
    """
    await services_controller.get_service(session, service_id)
    return await dao.list_keys(session, service_id)


async def revoke_key(
    session: AsyncSession, authenticator: Authenticator, service_id: uuid.UUID, key_id: uuid.UUID
) -> None:
    """Revoke a key: this process refuses its tokens once it is committed, every other within AUTH_KEY_CACHE_S.

    Args:
        session: The write session.
        authenticator: Forgets the service's cached keys.
        service_id: The service.
        key_id: The key.

    Raises:
        NotFound: When the service has no such key.
    """
    if not await dao.revoke_key(session, service_id, key_id, datetime.now(UTC)):
        raise NotFound(f"API key {key_id} not found")
    forget_after_commit(session, authenticator, service_id)


async def add_guest(session: AsyncSession, service_id: uuid.UUID, recipient: str) -> GuestListRecipient:
    """Put a recipient on a service's guest list.

    Args:
        session: The write session.
        service_id: The service.
        recipient: The normalised recipient.

    Raises:
        Conflict: When it is on the list already.
    """
    await services_controller.get_service(session, service_id)
    guest = await dao.insert_guest(session, service_id, recipient, datetime.now(UTC))
    if guest is None:
        raise Conflict(f"{recipient} is already on the guest list of service {service_id}")
    return guest


async def list_guests(session: AsyncSession, service_id: uuid.UUID) -> Sequence[GuestListRecipient]:
    """A service's guest list.

    Args:
        session: Any session.
        service_id: The service.
    """
    await services_controller.get_service(session, service_id)
    return await dao.list_guests(session, service_id)


async def remove_guest(session: AsyncSession, service_id: uuid.UUID, guest_id: uuid.UUID) -> None:
    """Take an entry off a service's guest list.

    Args:
        session: The write session.
        service_id: The service.
        guest_id: The entry.

    Raises:
        NotFound: When the service has no such entry.
    """
    if not await dao.delete_guest(session, service_id, guest_id):
        raise NotFound(f"Guest list entry {guest_id} not found")
