"""Callback logic: setting a service's callback under the URL rules, its token encrypted."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.auth.encryption import SecretBox
from fastapi1.callbacks import dao
from fastapi1.callbacks.schemas import CallbackCreate
from fastapi1.callbacks.urls import RefusedUrl, UrlRules, resolve, split
from fastapi1.config import Settings
from fastapi1.errors import NotFound, Unprocessable
from fastapi1.services import controller as services_controller


def url_rules(settings: Settings) -> UrlRules:
    """The rules callback URLs are held to under these settings.

    Args:
        settings: The configuration: production requires https and public addresses
            (``CALLBACK_ALLOW_PRIVATE`` lifts the second).
    """
    production = settings.environment == "production"
    return UrlRules(https_only=production, public_only=production and not settings.callback_allow_private)


async def set_callback(
    session: AsyncSession, box: SecretBox, rules: UrlRules, service_id: uuid.UUID, new: CallbackCreate
) -> Row[tuple[object, ...]]:
    """Set (or replace) a service's callback.

    Args:
        session: The write session.
        box: Encrypts the bearer token.
        rules: What the URL must be.
        service_id: The service.
        new: The callback.

    Returns:
        The stored callback.

    Raises:
        Unprocessable: When the URL is refused (its form, or an address its host resolves to).
    """
    await services_controller.get_service(session, service_id)
    try:
        # The addresses matter only where the rules hold them to public ones; the form always.
        await resolve(new.url, rules) if rules.public_only else split(new.url, rules)
    except RefusedUrl as error:
        raise Unprocessable(f"url {error}", ("body", "url")) from None
    token = box.encrypt(new.bearer_token)
    return await dao.upsert_callback(session, service_id, new.url, token, datetime.now(UTC))


async def get_callback(session: AsyncSession, service_id: uuid.UUID) -> Row[tuple[object, ...]]:
    """A service's callback.

    Args:
        session: Any session.
        service_id: The service.

    Returns:
        The callback.

    Raises:
        NotFound: When the service has none.
    """
    callback = await dao.get_callback(session, service_id)
    if callback is None:
        raise NotFound(f"Callback of service {service_id} not found")
    return callback


async def delete_callback(session: AsyncSession, service_id: uuid.UUID) -> None:
    """Remove a service's callback.

    Args:
        session: The write session.
        service_id: The service.

    Raises:
        NotFound: When the service has none.
    """
    if not await dao.delete_callback(session, service_id):
        raise NotFound(f"Callback of service {service_id} not found")
