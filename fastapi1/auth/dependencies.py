"""Authentication as FastAPI dependencies, one per kind of caller, declared as bearer schemes in OpenAPI."""

from collections.abc import Awaitable, Callable
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from fastapi1.auth import tokens
from fastapi1.auth.controller import Authenticator
from fastapi1.auth.schemas import Caller
from fastapi1.bodies import BEFORE_BODY
from fastapi1.errors import Unauthenticated
from fastapi1.limits.limiter import Limiter


class BearerHeader(HTTPBearer):
    """The ``Authorization`` header as it was sent, for a route documented with a bearer scheme.

    FastAPI's HTTPBearer reads a malformed header as none; here a header that is present is
    always checked (and refused when it is not a bearer token), whether or not auth is required.
    """

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        """Return the raw header.

        Args:
            request: The request.
        """
        return request.headers.get("authorization")


# Where a request's caller is kept once checked (the ASGI scope: one per request).
CALLER = "fastapi1.caller"
TOKEN_FORMAT = "JWT (HS256, iss + iat), as GOV.UK Notify's client libraries make"  # noqa: S105 (a description)
service_token = BearerHeader(
    scheme_name="ServiceToken",
    bearerFormat=TOKEN_FORMAT,
    description="A token signed with one of the service's API-key secrets, `iss` the service id.",
    auto_error=False,
)
admin_token = BearerHeader(
    scheme_name="AdminToken",
    bearerFormat=TOKEN_FORMAT,
    description="A token signed with ADMIN_CLIENT_SECRET, `iss` ADMIN_CLIENT_ID"
    " (`python -m fastapi1.admin token` prints one).",
    auto_error=False,
)


def get_authenticator(request: Request) -> Authenticator:
    """The process's authenticator, made by the lifespan.

    Args:
        request: The current request.
    """
    return cast(Authenticator, request.app.state.authenticator)


def get_limiter(request: Request) -> Limiter:
    """The process's limiter, opened by the lifespan.

    Args:
        request: The current request.
    """
    return cast(Limiter, request.app.state.limiter)


async def authenticate_service(
    request: Request, authorization: Annotated[str | None, Depends(service_token)]
) -> Caller:
    """The service calling a service route (anonymous without a token in development), within its rate limit.

    Checked once per request, before its body is read (see :data:`fastapi1.bodies.BEFORE_BODY`),
    so that a client without a valid token costs no parse of a large body.

    Args:
        request: The request.
        authorization: Its ``Authorization`` header.
    """
    caller: Caller | None = request.scope.get(CALLER)
    if caller is None:
        caller = await get_authenticator(request).service_caller(authorization)
        if caller.key_id is not None and caller.key_type is not None:
            await get_limiter(request).check_request(caller.key_id, caller.key_type)
        request.scope[CALLER] = caller
    return caller


async def authenticate_notify_client(
    request: Request, authorization: Annotated[str | None, Depends(service_token)]
) -> Caller:
    """The service calling a ``/v2`` route: a service token is always required there, whatever AUTH_REQUIRED says.

    Args:
        request: The request.
        authorization: Its ``Authorization`` header.

    Raises:
        Unauthenticated: Without a token.
    """
    if not authorization:
        raise Unauthenticated(tokens.NO_TOKEN)
    return await authenticate_service(request, authorization)


async def authenticate_admin(request: Request, authorization: Annotated[str | None, Depends(admin_token)]) -> None:
    """Refuse an admin route's request without a valid admin token (where one is needed).

    Args:
        request: The request.
        authorization: Its ``Authorization`` header.
    """
    get_authenticator(request).check_admin(authorization)


def before_body(dependency: Callable[[Request, str | None], Awaitable[object]]) -> Callable[[Request], Awaitable[None]]:
    """An authentication dependency as the check JsonBodyRoute makes before reading the body.

    Args:
        dependency: :func:`authenticate_service` or :func:`authenticate_admin`.
    """

    async def check(request: Request) -> None:
        await dependency(request, request.headers.get("authorization"))

    return check


BEFORE_BODY[authenticate_service] = before_body(authenticate_service)
BEFORE_BODY[authenticate_admin] = before_body(authenticate_admin)
BEFORE_BODY[authenticate_notify_client] = before_body(authenticate_notify_client)
ServiceCaller = Annotated[Caller, Depends(authenticate_service)]
NotifyClient = Annotated[Caller, Depends(authenticate_notify_client)]
LimiterDep = Annotated[Limiter, Depends(get_limiter)]
ADMIN_ONLY = Depends(authenticate_admin)
