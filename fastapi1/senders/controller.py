"""Senders' logic."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.errors import NotFound
from fastapi1.senders import dao
from fastapi1.senders.dao import SenderKind
from fastapi1.services import controller as services_controller


async def create_sender(
    session: AsyncSession, kind: SenderKind, service_id: uuid.UUID, value: str, is_default: bool
) -> Row[tuple[object, ...]]:
    """Add a sender to a service.

    Args:
        session: The write session.
        kind: Which kind of sender.
        service_id: The service.
        value: Its name, number or address.
        is_default: Whether it becomes the default (the first always does).

    Returns:
        The stored sender.

    Raises:
        NotFound: When there is no such service.
    """
    sender = await dao.insert_sender(session, kind, service_id, value, is_default, datetime.now(UTC))
    if sender is None:
        raise NotFound(f"Service {service_id} not found")
    return sender


async def list_senders(
    session: AsyncSession, kind: SenderKind, service_id: uuid.UUID
) -> Sequence[Row[tuple[object, ...]]]:
    """A service's senders of one kind, oldest first.

    Args:
        session: Any session.
        kind: Which kind.
        service_id: The service.

    Returns:
        The senders.
    """
    await services_controller.get_service(session, service_id)
    return await dao.list_senders(session, kind, service_id)
