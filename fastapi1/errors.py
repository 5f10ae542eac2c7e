"""Application errors that carry their HTTP status, and the handlers that render them."""

import json
import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.responses import Response

from fastapi1.responses import OrjsonResponse

logger = logging.getLogger("fastapi1")


class ErrorMessage(BaseModel):
    """Body of every non-validation error response."""

    detail: str


class AppError(Exception):
    """An error a client can act on; rendered as ``{"detail": message}``."""

    status_code: ClassVar[int] = 500
    # Failures inside the service are logged with the traceback of their cause.
    log_cause: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        """Keep the message shown to the client.

        Args:
            message: Human-readable detail for the response body.
        """
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = {}


class NotFound(AppError):
    """The resource named in the request does not exist."""

    status_code = 404


class Conflict(AppError):
    """The request conflicts with stored state (duplicate name, reused key)."""

    status_code = 409


class ProcessingError(AppError):
    """Processing failed inside the service for reasons the client cannot fix by editing input."""

    status_code = 400
    log_cause = True


class Unprocessable(AppError):
    """The request is well-formed but its content cannot be accepted (422, FastAPI's shape)."""

    status_code = 422

    def __init__(self, message: str, loc: tuple[str | int, ...]) -> None:
        """Keep the message and where in the request the problem is.

        Args:
            message: Human-readable problem.
            loc: Location in the request, as FastAPI's validation errors give it.
        """
        super().__init__(message)
        self.loc = loc


class ServiceUnavailable(AppError):
    """A dependency (the database, the broker) does not answer."""

    status_code = 503
    log_cause = True


class Overloaded(AppError):
    """Too much work is waiting; retry after the number of seconds in ``Retry-After``."""

    status_code = 503

    def __init__(self, message: str, retry_after: int) -> None:
        """Keep the message and when the client should come back.

        Args:
            message: Human-readable detail.
            retry_after: Whole seconds for the ``Retry-After`` header.
        """
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after)


class BackendFailed(AppError):
    """The model backend failed, timed out or answered wrongly for the batch holding this request."""

    status_code = 502


class NotImplementedYet(AppError):
    """The request asks for a documented feature this version does not offer yet."""

    status_code = 501


# What the driver and the pool raise when PostgreSQL is down or unreachable.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    sa_exc.TimeoutError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
)


def responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """Describe error responses for a route's OpenAPI ``responses`` argument.

    Args:
        errors: The AppError subclasses the route can raise.

    Returns:
        A mapping from status code to its documented body model.
    """
    return {error.status_code: {"model": ErrorMessage, "description": error.__doc__} for error in errors}


async def handle_app_error(request: Request, error: Exception) -> OrjsonResponse:
    """Render an AppError as ``{"detail": message}`` with its status.

    Args:
        request: The failed request.
        error: The AppError raised below the view.

    Returns:
        The JSON error response.
    """
    assert isinstance(error, AppError)
    if isinstance(error, Unprocessable):
        detail = [{"type": "value_error", "loc": list(error.loc), "msg": error.message}]
        return OrjsonResponse({"detail": detail}, status_code=error.status_code)
    if error.log_cause:
        logger.error("%s %s: %s", request.method, request.url.path, error.message, exc_info=error.__cause__)
    return OrjsonResponse({"detail": error.message}, status_code=error.status_code, headers=error.headers)


async def handle_request_validation(request: Request, error: Exception) -> Response:
    """Render a 422 in FastAPI's ``{"detail": [...]}`` shape without echoing the input back.

    FastAPI's own handler repeats each bad ``input``, which for a rejected 1,000-item list
    sends the whole list back. ASCII-escaped JSON keeps any character a client sent (even
    a lone surrogate in a key) renderable.

    Args:
        request: The rejected request.
        error: The RequestValidationError.

    Returns:
        The 422 response.
    """
    assert isinstance(error, RequestValidationError)
    detail = [{"type": item["type"], "loc": item["loc"], "msg": item["msg"]} for item in error.errors()]
    return Response(json.dumps({"detail": detail}), status_code=422, media_type="application/json")


async def handle_database_unavailable(request: Request, error: Exception) -> OrjsonResponse:
    """Turn a lost or refused database connection into a 503 without a stack trace in the body.

    Args:
        request: The failed request.
        error: The driver or pool error.

    Returns:
        The 503 response.
    """
    logger.error("Database unavailable during %s %s", request.method, request.url.path, exc_info=error)
    return OrjsonResponse({"detail": "Database unavailable, try again shortly"}, status_code=503)


async def handle_unexpected(request: Request, error: Exception) -> OrjsonResponse:
    """Log an unexpected error with its traceback and answer 500 without details.

    Args:
        request: The failed request.
        error: The unhandled exception.

    Returns:
        The 500 response.
    """
    logger.error("Unhandled error during %s %s", request.method, request.url.path, exc_info=error)
    return OrjsonResponse({"detail": "Internal server error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on the application.

    Args:
        app: The application.
    """
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_request_validation)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, handle_database_unavailable)
    app.add_exception_handler(Exception, handle_unexpected)
