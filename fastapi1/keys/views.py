"""Routes under ``/services/v1/{service_id}``: API keys and the guest list (admin routes)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from fastapi1.auth.controller import Authenticator
from fastapi1.auth.dependencies import ADMIN_ONLY, get_authenticator
from fastapi1.bodies import CONTENT_TOO_LARGE, JsonBodyRoute
from fastapi1.db.session import ReadSession, WriteSession
from fastapi1.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, Unauthenticated, responses
from fastapi1.keys import controller
from fastapi1.keys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated, Guest, GuestCreate

router = APIRouter(
    prefix="/services/v1/{service_id}",
    tags=["API keys"],
    route_class=JsonBodyRoute,
    dependencies=[ADMIN_ONLY],
    responses=responses(Unauthenticated, Forbidden, ServiceUnavailable),
)
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


@router.post(
    "/api-keys",
    status_code=201,
    summary="Create an API key",
    responses=responses(NotFound, Conflict) | CONTENT_TOO_LARGE,
)
async def create_api_key(
    service_id: uuid.UUID,
    new: ApiKeyCreate,
    session: WriteSession,
    authenticator: AuthenticatorDep,
    response: Response,
) -> ApiKeyCreated:
    """Create a key: `key` is the combined form (`{name}-{service_id}-{secret}`) that Notify's client
    libraries take, returned this once and never again. A live key's name is unique in its service (409).

    \f
    Args:
        service_id: The service.
        new: The key's name and type.
        session: The write session.
        authenticator: Encrypts the secret.
        response: Carries ``Cache-Control: no-store``.
    """
    created = await controller.create_key(session, authenticator, service_id, new.name, new.key_type)
    key = created.key
    # The only answer that carries a secret: no cache or proxy on the way may keep it.
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(
        id=key.id, name=key.name, key_type=new.key_type, key=created.combined, created_at=key.created_at
    )


@router.get("/api-keys", summary="List a service's API keys", responses=responses(NotFound))
async def list_api_keys(service_id: uuid.UUID, session: ReadSession) -> list[ApiKey]:
    """The service's keys, live and revoked, oldest first, without their secrets.

    \f
    Args:
        service_id: The service.
        session: A read session.
    """
    return [ApiKey.model_validate(key) for key in await controller.list_keys(session, service_id)]


@router.delete("/api-keys/{key_id}", status_code=204, summary="Revoke an API key", responses=responses(NotFound))
async def revoke_api_key(
    service_id: uuid.UUID, key_id: uuid.UUID, session: WriteSession, authenticator: AuthenticatorDep
) -> Response:
    """Revoke a key: its tokens are refused on every process and replica within AUTH_KEY_CACHE_S.
    Revoking a revoked key changes nothing.

    \f
    Args:
        service_id: The service.
        key_id: The key.
        session: The write session.
        authenticator: Forgets the service's cached keys.
    """
    await controller.revoke_key(session, authenticator, service_id, key_id)
    return Response(status_code=204)


@router.post(
    "/guest-list",
    status_code=201,
    summary="Add a recipient to the guest list",
    responses=responses(NotFound, Conflict) | CONTENT_TOO_LARGE,
)
async def add_guest(service_id: uuid.UUID, new: GuestCreate, session: WriteSession) -> Guest:
    """An address or phone number the service's team keys may send to (stored normalised: addresses in
    lower case, UK and international numbers in E.164); 409 when it is on the list already.

    \f
    Args:
        service_id: The service.
        new: The recipient.
        session: The write session.
    """
    return Guest.model_validate(await controller.add_guest(session, service_id, new.recipient))


@router.get("/guest-list", summary="List the guest list", responses=responses(NotFound))
async def list_guests(service_id: uuid.UUID, session: ReadSession) -> list[Guest]:
    """The service's guest list, by recipient.

    \f
    Args:
        service_id: The service.
        session: A read session.
    """
    return [Guest.model_validate(guest) for guest in await controller.list_guests(session, service_id)]


@router.delete(
    "/guest-list/{guest_id}", status_code=204, summary="Remove a guest list entry", responses=responses(NotFound)
)
async def remove_guest(service_id: uuid.UUID, guest_id: uuid.UUID, session: WriteSession) -> Response:
    """Take an entry off the guest list.

    \f
    Args:
        service_id: The service.
        guest_id: The entry.
        session: The write session.
    """
    await controller.remove_guest(session, service_id, guest_id)
    return Response(status_code=204)
