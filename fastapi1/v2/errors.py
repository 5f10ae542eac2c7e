"""GOV.UK Notify's error shape for every ``/v2`` refusal: ``{"status_code": 400, "errors": [{"error", "message"}]}``.

Every ``/v2`` route uses :class:`NotifyRoute`: whatever its handler raises (bad input, a
refused token, a limit, a missing row, an outage) is answered here, in Notify's shape and
with Notify's error names and messages, instead of the ``{"detail": ...}`` of the other routes.
"""

import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response

from fastapi1.bodies import JsonBodyRoute
from fastapi1.errors import (
    ERRORS_SHOWN,
    MSG_CHARS,
    AppError,
    AuthError,
    BadRequest,
    DailyLimitExceeded,
    NotFound,
    RateLimitExceeded,
    Unprocessable,
    shorten,
)
from fastapi1.notifications.controller import MissingPersonalization, TemplateNotFound
from fastapi1.responses import OrjsonResponse

NO_RESULT_FOUND = "No result found"
TEMPLATE_NOT_FOUND = "Template not found"


class NotifyBadRequest(BadRequest):
    """A request Notify refuses as ``BadRequestError`` (400)."""


class NotifyValidationError(AppError):
    """Input Notify refuses as ``ValidationError`` (400) that no schema caught (a query value out of a list)."""

    status_code = 400


def error_body(status_code: int, errors: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Notify's error body.

    Args:
        status_code: The HTTP status.
        errors: ``(error name, message)`` pairs.
    """
    return {"status_code": status_code, "errors": [{"error": name, "message": message} for name, message in errors]}


def field_name(loc: Sequence[str | int]) -> str:
    """The name Notify gives a field in its messages: the path below the body or query, dotted.

    Args:
        loc: A validation error's location, such as ``("body", "personalisation", "name")``.
    """
    parts = [str(part) for part in loc[1:]] if loc and loc[0] in ("body", "query", "path") else [str(p) for p in loc]
    return shorten(".".join(parts), 64) if parts else "body"


# Notify's JSON-schema messages by pydantic's error type; ``{field}`` is the field's dotted name.
MESSAGES = {
    "missing": "{field} is a required property",
    "uuid_parsing": "{field} is not a valid UUID",
    "uuid_type": "{field} is not a valid UUID",
    "string_type": "{field} is not of type string",
    "dict_type": "{field} should contain key value pairs",
    "model_type": "{field} is not of type object",
    "model_attributes_type": "{field} is not of type object",
    "list_type": "{field} is not of type array",
}


def validation_message(error: Mapping[str, Any]) -> str:
    """One validation error in the words of Notify's JSON-schema messages.

    Args:
        error: A pydantic or FastAPI error (``type``, ``loc``, ``msg``).
    """
    kind, loc, msg = error["type"], tuple(error["loc"]), str(error["msg"])
    if kind == "extra_forbidden":
        return f"Additional properties are not allowed ({shorten(str(loc[-1]), 64)} was unexpected)"
    field = field_name(loc)
    if kind in MESSAGES:
        return MESSAGES[kind].format(field=field)
    return shorten(f"{field} {msg.removeprefix('Value error, ')}", MSG_CHARS)


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Notify's ``ValidationError`` entries for a rejected request: the first few, then how many more.

    Args:
        errors: The validation errors.
    """
    shown = [("ValidationError", validation_message(error)) for error in errors[:ERRORS_SHOWN]]
    if len(errors) > len(shown):
        shown.append(("ValidationError", f"{len(errors) - len(shown)} more errors not shown"))
    return shown


# Notify's status and error name for each error of the controllers, the most specific first;
# a message of None keeps the error's own.
NOTIFY_ERRORS: tuple[tuple[type[AppError], int | None, str, str | None], ...] = (
    (NotifyValidationError, 400, "ValidationError", None),
    (TemplateNotFound, 400, "BadRequestError", TEMPLATE_NOT_FOUND),
    (Unprocessable, 400, "BadRequestError", None),
    (NotFound, 404, "NoResultFound", NO_RESULT_FOUND),
    (AuthError, None, "AuthError", None),
    (RateLimitExceeded, 429, "RateLimitError", None),
    (DailyLimitExceeded, 429, "TooManyRequestsError", None),
    (BadRequest, 400, "BadRequestError", None),
)


def app_error(error: AppError) -> tuple[int, str, str]:
    """The status, Notify's error name and message for an error the controllers raised.

    Args:
        error: The error.
    """
    if isinstance(error, MissingPersonalization):
        return 400, "BadRequestError", f"Missing personalisation: {', '.join(error.names)}"
    for cls, status, name, message in NOTIFY_ERRORS:
        if isinstance(error, cls):
            return status or error.status_code, name, message or error.message
    return error.status_code, type(error).__name__, error.message


def app_handler(request: Request, error: Exception) -> Callable[[Request, Exception], Any] | None:
    """The application's handler for an error, looked up along its class hierarchy as Starlette does.

    Args:
        request: The request.
        error: The error.
    """
    handlers: Mapping[Any, Callable[[Request, Exception], Any]] = request.app.exception_handlers
    for cls in type(error).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


def validation_response(error: RequestValidationError) -> Response:
    """A ``400 ValidationError`` for a rejected body, query or path.

    Args:
        error: The validation error (the project's body reader keeps the first errors and the total).
    """
    errors = list(error.errors())
    entries = validation_errors(errors)
    total: int = getattr(error, "total", len(errors))
    if total > len(errors):
        entries.append(("ValidationError", f"{total - len(errors)} more errors not shown"))
    return OrjsonResponse(error_body(400, entries), status_code=400)


async def reshaped(request: Request, error: Exception) -> Response:
    """The application's own answer to an error (logged, 503 or 500), in Notify's shape.

    Args:
        request: The request.
        error: An error of the database, the pool or anything unexpected.

    Returns:
        The response.

    Raises:
        Exception: The error itself, when no handler of the application takes it.
    """
    handler = app_handler(request, error)
    if handler is None:
        raise error
    response: Response = await handler(request, error)
    try:
        detail = json.loads(bytes(response.body))["detail"]
    except (ValueError, KeyError, TypeError):
        return response  # no body to reshape (a client that went away)
    name = "ServiceUnavailableError" if response.status_code == 503 else "Exception"
    headers = {key: value for key, value in response.headers.items() if key.lower() == "retry-after"}
    body = error_body(response.status_code, [(name, str(detail))])
    return OrjsonResponse(body, status_code=response.status_code, headers=headers)


async def notify_error_response(request: Request, error: Exception) -> Response:
    """Answer a failed ``/v2`` request in Notify's shape.

    Args:
        request: The request.
        error: What its handler raised.

    Returns:
        The error response.
    """
    if isinstance(error, RequestValidationError):
        return validation_response(error)
    if isinstance(error, AppError):
        status, name, message = app_error(error)
        return OrjsonResponse(error_body(status, [(name, message)]), status_code=status, headers=error.headers)
    return await reshaped(request, error)


class NotifyRoute(JsonBodyRoute):
    """A ``/v2`` route: the project's body reading, and every refusal in Notify's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, its failures answered by :func:`notify_error_response`.

        Returns:
            The request handler.
        """
        handler = super().get_route_handler()

        async def answer_in_notify_shape(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:  # every failure is answered, in Notify's shape
                return await notify_error_response(request, error)

        return answer_in_notify_shape
