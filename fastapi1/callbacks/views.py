"""Routes under ``/services/v1/{service_id}/callbacks``: a service's delivery-status callback (admin routes)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from fastapi1.auth.controller import Authenticator
from fastapi1.auth.dependencies import ADMIN_ONLY, get_authenticator
from fastapi1.bodies import CONTENT_TOO_LARGE, JsonBodyRoute
from fastapi1.callbacks import controller
from fastapi1.callbacks.schemas import Callback, CallbackCreate
from fastapi1.db.session import ReadSession, WriteSession
from fastapi1.errors import Forbidden, NotFound, ServiceUnavailable, Unauthenticated, responses

router = APIRouter(
    prefix="/services/v1/{service_id}",
    tags=["callbacks"],
    route_class=JsonBodyRoute,
    dependencies=[ADMIN_ONLY],
    responses=responses(Unauthenticated, Forbidden, NotFound, ServiceUnavailable),
)
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


@router.post(
    "/callbacks", status_code=201, summary="Set the service's delivery-status callback", responses=CONTENT_TOO_LARGE
)
async def set_callback(
    service_id: uuid.UUID,
    new: CallbackCreate,
    request: Request,
    session: WriteSession,
    authenticator: AuthenticatorDep,
) -> Callback:
    """Whenever a notification of the service reaches a final status, its receipt is POSTed to `url` with
    `Authorization: Bearer <bearer_token>`. A second callback replaces the first. In production the URL must
    be https and resolve to public addresses only (422 otherwise).

    \f
    Args:
        service_id: The service.
        new: The callback.
        request: The request (the application's settings).
        session: The write session.
        authenticator: Encrypts the bearer token.
    """
    rules = controller.url_rules(request.app.state.settings)
    return Callback.model_validate(await controller.set_callback(session, authenticator.box, rules, service_id, new))


@router.get("/callbacks", summary="Get the service's delivery-status callback")
async def get_callback(service_id: uuid.UUID, session: ReadSession) -> Callback:
    """The callback, without its bearer token; 404 when the service has none.

    \f
    Args:
        service_id: The service.
        session: A read session.
    """
    return Callback.model_validate(await controller.get_callback(session, service_id))


@router.delete("/callbacks", status_code=204, summary="Remove the service's delivery-status callback")
async def delete_callback(service_id: uuid.UUID, session: WriteSession) -> Response:
    """No receipt is sent after this, including those still owed; 404 when the service has none.

    \f
    Args:
        service_id: The service.
        session: The write session.
    """
    await controller.delete_callback(session, service_id)
    return Response(status_code=204)
