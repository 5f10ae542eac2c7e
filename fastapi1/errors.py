"""Application errors that carry their HTTP status, and the handlers that render them."""

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from fastapi1.logging import CLIENT_CLOSED_REQUEST as CLIENT_CLOSED_REQUEST
from fastapi1.logging import LogThrottle
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


class BadRequest(AppError):
    """The request cannot be carried out as asked (a team key sending outside its guest list)."""

    status_code = 400


class AuthError(AppError):
    """A request without a valid token where one is needed; GOV.UK Notify's messages."""

    def __init__(self, message: str) -> None:
        """Keep the message, and the challenge every refusal carries.

        Args:
            message: One of Notify's messages; never which part of a token was wrong beyond it.
        """
        super().__init__(message)
        self.headers["WWW-Authenticate"] = "Bearer"


class Unauthenticated(AuthError):
    """No token, or not a bearer token (401)."""

    status_code = 401


class Forbidden(AuthError):
    """A token that is invalid, expired, revoked, or not allowed here (403)."""

    status_code = 403


class BodyValidationError(RequestValidationError):
    """A rejected request body: the first errors found, and how many there were in all.

    pydantic reports every bad item; only the first few are kept, so a 1 MB list of bad
    items neither becomes a 10 MB answer nor 100,000 error objects held until rendered.
    """

    def __init__(self, errors: Sequence[Mapping[str, Any]], total: int) -> None:
        """Keep the errors to show and the total count.

        Args:
            errors: The first errors, in FastAPI's shape (``type``, ``loc``, ``msg``).
            total: How many errors the body had in all.
        """
        super().__init__(errors)
        self.total = total


# A 422 shows at most this many errors and then says how many more there were; strings
# in ``loc`` (a personalization key is sent back as its own name) and ``msg`` are cut to
# a few dozen characters, so a rejected request is never echoed back at its own size.
ERRORS_SHOWN = 20
LOC_CHARS = 64
MSG_CHARS = 200


class RetryLater(AppError):
    """An error whose response tells the client when to ask again (``Retry-After``)."""

    def __init__(self, message: str, retry_after: int) -> None:
        """Keep the message and when the client should come back.

        Args:
            message: Human-readable detail.
            retry_after: Whole seconds for the ``Retry-After`` header.
        """
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after)


class Overloaded(RetryLater):
    """Too much work is waiting; retry after the number of seconds in ``Retry-After``."""

    status_code = 503


class StillProcessing(RetryLater):
    """The prediction is still being processed; ask again after the seconds in ``Retry-After``."""

    status_code = 400


class RateLimitExceeded(RetryLater):
    """The API key made more requests than RATE_LIMIT_PER_MINUTE within the sliding window (Notify's message)."""

    status_code = 429

    def __init__(self, key_type: str, limit: int, window_s: int, retry_after: int) -> None:
        """Keep the facts that Notify's message and the ``/v2`` renderer use.

        Args:
            key_type: The key's type (``normal``, ``team``, ``test``).
            limit: The requests a key may make per window.
            window_s: The window's length in seconds.
            retry_after: Whole seconds until the oldest counted request leaves the window.
        """
        super().__init__(
            f"Exceeded rate limit for key type {key_type.upper()} of {limit} requests per {window_s} seconds",
            retry_after,
        )
        self.key_type = key_type
        self.limit = limit


class DailyLimitExceeded(RetryLater):
    """The service would send more than SERVICE_DAILY_LIMIT notifications this UTC day (Notify's message)."""

    status_code = 429

    def __init__(self, limit: int, retry_after: int) -> None:
        """Keep the limit for Notify's message.

        Args:
            limit: Notifications a service may send per UTC day.
            retry_after: Whole seconds until the next UTC midnight.
        """
        super().__init__(f"Exceeded send limits ({limit}) for today", retry_after)
        self.limit = limit


class LimitsUnavailable(ServiceUnavailable):
    """The store of the rate and daily limits (PostgreSQL or Redis) does not answer: nothing is admitted unchecked."""


class BackendFailed(AppError):
    """The model backend failed, timed out or answered wrongly for the batch holding this request."""

    status_code = 502


class GatewayTimeout(AppError):
    """No worker process answered in time (with a broker: none consuming, or all of them too busy)."""

    status_code = 504


class ServerBusy(Overloaded):
    """Every pooled database connection stayed busy for DB_POOL_TIMEOUT; retry after ``Retry-After`` seconds."""


SERVER_BUSY = "Server busy, try again shortly."
DATABASE_UNAVAILABLE_DETAIL = "Database unavailable, try again shortly"

# What SQLAlchemy raises when PostgreSQL is down, unreachable or hung. A bare OSError or
# TimeoutError from the driver reaches the application as an OperationalError, translated
# where the engine is made (fastapi1.db.engine); the same classes from anywhere else are bugs.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (sa_exc.OperationalError, sa_exc.InterfaceError)

# SQLSTATE classes that say the server cannot serve now, not that the statement was wrong:
# 08 connection exception, 53 insufficient resources, 57 operator intervention (57014 is a
# statement_timeout, 57P01 a shutdown), 58 system error.
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot serve now, rather than that the statement was wrong.

    A connection cut in the middle of a statement reaches SQLAlchemy as a plain DBAPIError
    (asyncpg's ConnectionDoesNotExistError has no closer DB-API class) that SQLAlchemy marks
    as having invalidated its connection; a cancelled statement (``statement_timeout``) as a
    DBAPIError with its SQLSTATE. A pool timeout counts too (the worker retries it shortly);
    HTTP requests get the busy 503 for it from its own handler instead.

    Args:
        error: What a database call raised.
    """
    if isinstance(error, (*DATABASE_UNAVAILABLE, sa_exc.TimeoutError)):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return error.connection_invalidated or sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES


def responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """Describe error responses for a route's OpenAPI ``responses`` argument.

    Args:
        errors: The AppError subclasses the route can raise.

    Returns:
        A mapping from status code to its documented body model.
    """
    return {error.status_code: {"model": ErrorMessage, "description": error.__doc__} for error in errors}


def shorten(text: str, limit: int) -> str:
    """Cut a string to ``limit`` characters, marking the cut with an ellipsis.

    Args:
        text: The string.
        limit: Characters kept.

    Returns:
        The string, or its first ``limit`` characters followed by "…".
    """
    return text if len(text) <= limit else f"{text[:limit]}…"


def validation_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """One error in FastAPI's shape, its location and message bounded, without the input.

    Args:
        error: A pydantic or FastAPI error (``type``, ``loc``, ``msg``).

    Returns:
        The error as it is sent.
    """
    loc = [shorten(part, LOC_CHARS) if isinstance(part, str) else part for part in error["loc"]]
    return {"type": error["type"], "loc": loc, "msg": shorten(error["msg"], MSG_CHARS)}


def unprocessable_response(errors: Sequence[Mapping[str, Any]], total: int) -> Response:
    """Render a 422 ``{"detail": [...]}``: the first ERRORS_SHOWN errors, then how many more.

    ASCII-escaped JSON keeps any character a client sent (even a lone surrogate in a key)
    renderable.

    Args:
        errors: The errors, first ones first.
        total: How many errors there were in all (at least ``len(errors)``).

    Returns:
        The 422 response.
    """
    detail = [validation_error(error) for error in errors[:ERRORS_SHOWN]]
    if total > len(detail):
        more = total - len(detail)
        detail.append({"type": "too_many_errors", "loc": detail[-1]["loc"][:1], "msg": f"{more} more errors not shown"})
    return Response(json.dumps({"detail": detail}), status_code=422, media_type="application/json")


async def handle_app_error(request: Request, error: Exception) -> Response:
    """Render an AppError as ``{"detail": message}`` with its status.

    Args:
        request: The failed request.
        error: The AppError raised below the view.

    Returns:
        The JSON error response.
    """
    assert isinstance(error, AppError)
    if isinstance(error, Unprocessable):
        return unprocessable_response([{"type": "value_error", "loc": error.loc, "msg": error.message}], 1)
    if error.log_cause:
        logger.error("%s %s: %s", request.method, request.url.path, error.message, exc_info=error.__cause__)
    return OrjsonResponse({"detail": error.message}, status_code=error.status_code, headers=error.headers)


async def handle_request_validation(request: Request, error: Exception) -> Response:
    """Render a 422 in FastAPI's ``{"detail": [...]}`` shape without echoing the input back.

    FastAPI's own handler repeats each bad ``input``, which for a rejected 1,000-item list
    sends the whole list back.

    Args:
        request: The rejected request.
        error: The RequestValidationError.

    Returns:
        The 422 response.
    """
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    return unprocessable_response(errors, error.total if isinstance(error, BodyValidationError) else len(errors))


async def handle_database_unavailable(request: Request, error: Exception) -> OrjsonResponse:
    """Turn a lost, refused or hung database connection into a 503 without a stack trace in the body.

    During an outage every request fails the same way: the traceback is logged once per
    LOG_OUTAGE_INTERVAL_S with the count of those held back since (each is still on its request line).

    Args:
        request: The failed request.
        error: The driver or pool error.

    Returns:
        The 503 response.
    """
    throttle: LogThrottle = request.app.state.outage_log
    held_back = throttle.admit()
    if held_back is not None:
        logger.error(
            "Database unavailable during %s %s (%d more since the last traceback)",
            request.method,
            request.url.path,
            held_back,
            exc_info=error,
        )
    return OrjsonResponse({"detail": DATABASE_UNAVAILABLE_DETAIL}, status_code=503)


async def handle_pool_timeout(request: Request, error: Exception) -> Response:
    """A pool checkout that timed out while the database may be healthy: ``503 Server busy`` with Retry-After.

    Args:
        request: The request that found every connection busy.
        error: SQLAlchemy's pool TimeoutError.

    Returns:
        The 503 response.
    """
    logger.warning("Database pool busy during %s %s: %s", request.method, request.url.path, error)
    return await handle_app_error(request, ServerBusy(SERVER_BUSY, retry_after=1))


async def handle_database_error(request: Request, error: Exception) -> OrjsonResponse:
    """A 503 for a driver error that lost its connection mid-statement, else the unexpected 500.

    Args:
        request: The failed request.
        error: A DBAPIError that none of the DATABASE_UNAVAILABLE classes matched.

    Returns:
        The 503 or 500 response.
    """
    if database_unavailable(error):
        return await handle_database_unavailable(request, error)
    return await handle_unexpected(request, error)


async def handle_client_disconnect(request: Request, error: Exception) -> Response:
    """A client that went away while its body was read: no traceback, logged as ``499``.

    Nobody reads the response; the status is for the request log (nginx's code for it).

    Args:
        request: The abandoned request.
        error: The ClientDisconnect.

    Returns:
        An empty 499.
    """
    return Response(status_code=CLIENT_CLOSED_REQUEST)


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


def install_error_handlers(app: FastAPI, outage_log_interval_s: float) -> None:
    """Register the handlers on the application, and the outage log's throttle they use.

    Args:
        app: The application.
        outage_log_interval_s: Seconds between two logged outage tracebacks.
    """
    app.state.outage_log = LogThrottle(outage_log_interval_s)
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_request_validation)
    app.add_exception_handler(sa_exc.TimeoutError, handle_pool_timeout)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, handle_database_unavailable)
    # The classes above are more specific, so their handler wins for them.
    app.add_exception_handler(sa_exc.DBAPIError, handle_database_error)
    app.add_exception_handler(ClientDisconnect, handle_client_disconnect)
    app.add_exception_handler(Exception, handle_unexpected)
