"""Request bodies: one way of reading JSON for every route, and the byte cap on bodies.

Every route that takes a JSON body uses :class:`JsonBodyRoute`, so the same rules hold
everywhere, and a bad body is always a 422 in FastAPI's shape:

- the ``Content-Type`` must be ``application/json`` or ``application/*+json``;
- the body is UTF-8 (a leading byte order mark is ignored), or UTF-16 or UTF-32 recognised
  from its first bytes as ``json.loads`` does; bytes that do not decode are rejected;
- the body is parsed and validated in one pass by pydantic's ``validate_json`` (in Rust,
  several times faster than ``json.loads`` and then validating the Python objects, for a
  1,000-item list or 100,000 pairs), which also refuses nesting deeper than its limit;
- an object that repeats a key is refused (every parser keeps the last one silently), once
  the body has validated, by :mod:`fastapi1.duplicate_keys`;
- only the first errors are kept (see ``fastapi1.errors.ERRORS_SHOWN``).

FastAPI's own reading differs on each point (any content type, 400 on bytes that are not
UTF-8 or on deep nesting, every error sent back), so it only sees the already validated
value here: the route hands it a request whose ``json()`` returns that value.
"""

import asyncio
import codecs
import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Annotated, Any, ClassVar, TypeVar

from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi1.duplicate_keys import has_duplicate_keys, locate_duplicate_key
from fastapi1.errors import ERRORS_SHOWN, BodyValidationError, ErrorMessage
from fastapi1.http_metrics import RouteLabels
from fastapi1.responses import OrjsonResponse

T = TypeVar("T")

# Checks that a route's dependencies make before its body is read, keyed by the dependency:
# authentication registers its own (fastapi1.auth.dependencies), so that a client without a
# valid token is refused before its body is read and parsed. FastAPI itself would read and
# validate the body first.
BEFORE_BODY: dict[Callable[..., Any], Callable[[Request], Awaitable[None]]] = {}

# Declared on every route that takes a body, with 422 (FastAPI adds that one itself).
CONTENT_TOO_LARGE: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorMessage, "description": "The body did not arrive within HTTP_BODY_TIMEOUT_S"},
    413: {"model": ErrorMessage, "description": "The request body is larger than the limit (LIMIT_MAX_BODY_BYTES)"},
}


def body_error(kind: str, message: str, loc: tuple[str | int, ...] = ("body",)) -> BodyValidationError:
    """A 422 about the body as a whole.

    Args:
        kind: The error ``type``.
        message: The error ``msg``.
        loc: Where the problem is.

    Returns:
        The exception to raise.
    """
    return BodyValidationError([{"type": kind, "loc": loc, "msg": message}], 1)


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names JSON (``application/json`` or ``application/*+json``).

    Args:
        content_type: The header's value, if any.

    Returns:
        True for JSON, whatever the parameters (``charset=...``).
    """
    media_type = (content_type or "").partition(";")[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def json_text(body: bytes) -> bytes | str:
    """The body as ``validate_json`` reads it: UTF-8 bytes as they are, other encodings decoded.

    Args:
        body: The raw body.

    Returns:
        UTF-8 bytes (without a byte order mark), or the text of a UTF-16 or UTF-32 body.

    Raises:
        BodyValidationError: When a UTF-16 or UTF-32 body does not decode.
    """
    encoding = json.detect_encoding(body)
    if encoding == "utf-8":
        return body
    if encoding == "utf-8-sig":
        return body[len(codecs.BOM_UTF8) :]
    try:
        return body.decode(encoding)
    except UnicodeDecodeError:
        raise body_error("json_invalid", f"Invalid JSON: not valid {encoding.upper()}") from None


def reread(adapter: TypeAdapter[Any], text: bytes | str, error: ValidationError) -> ValidationError:
    """Give the standard library's parser a second look at a body pydantic's parser refused.

    JSON that pydantic cannot represent, a lone surrogate escaped as ``"\\ud800"``, is read
    by ``json.loads``; validating that names the field holding it, as for any other bad
    value. Anything ``json.loads`` cannot read either keeps pydantic's error.

    Args:
        adapter: The type the body must have.
        text: The body as given to ``validate_json``.
        error: pydantic's ``json_invalid`` error.

    Returns:
        The error that locates the problem best.
    """
    try:
        # Decoded strictly first: json.loads would let bytes that are not UTF-8 through.
        adapter.validate_python(json.loads(text if isinstance(text, str) else text.decode()))
    except ValidationError as located:
        return located
    except (ValueError, RecursionError):
        pass
    return error


def parse_json_body(adapter: TypeAdapter[T], body: bytes) -> T:
    """Decode, parse and validate a raw JSON body in one pass.

    Args:
        adapter: The type the body must have.
        body: The raw request body.

    Returns:
        The validated value.

    Raises:
        BodyValidationError: When the body is not JSON, not of that type or repeats a key (a
            422); ``loc`` starts with ``"body"`` as in FastAPI's errors.
    """
    text = json_text(body)
    try:
        value = adapter.validate_json(text)
    except ValidationError as error:
        # A body that does not parse has exactly one error; counting first spares building
        # the error list of a 100,000-item body that parsed but did not validate.
        if error.error_count() == 1 and error.errors(include_url=False)[0]["type"] == "json_invalid":
            error = reread(adapter, text, error)
        found = error.errors(include_url=False, include_context=False, include_input=False)
        shown = [
            {"type": item["type"], "loc": ("body", *item["loc"]), "msg": item["msg"]} for item in found[:ERRORS_SHOWN]
        ]
        raise BodyValidationError(shown, error.error_count()) from None
    reject_duplicate_keys(text)
    return value


def reject_duplicate_keys(text: bytes | str) -> None:
    """Refuse a valid JSON body in which an object repeats a key, naming the object and the key.

    Args:
        text: The body as given to ``validate_json``.

    Raises:
        BodyValidationError: A 422 whose ``loc`` is the object's (``["body", 3]`` for the
            fourth item of a list).
    """
    # Only a refused body pays for finding where: a second parse that keeps every pair.
    found = locate_duplicate_key(text) if has_duplicate_keys(text) else None
    if found is not None:
        path, key = found
        raise body_error("duplicate_key", f"Duplicate key {key!r}", ("body", *path))


async def read_json_body(request: Request, adapter: TypeAdapter[T]) -> tuple[bytes, T]:
    """Check the content type, read the body and validate it.

    Args:
        request: The request.
        adapter: The type the body must have.

    Returns:
        The raw body and the validated value.

    Raises:
        BodyValidationError: When the content type is not JSON, the body is empty or invalid.
    """
    if not is_json_media_type(request.headers.get("content-type")):
        raise body_error("content_type", "Content-Type must be application/json", ("header", "content-type"))
    body = await request.body()
    if not body:
        raise body_error("missing", "Field required")
    return body, parse_json_body(adapter, body)


class ValidatedJsonRequest(Request):
    """The request FastAPI's handler receives once the body has been read and validated here."""

    def __init__(self, request: Request, body: bytes, value: object) -> None:
        """Wrap a request whose body has been read.

        Args:
            request: The original request.
            body: Its raw body.
            value: The validated body.
        """
        super().__init__(request.scope, request.receive)
        self.raw_body = body
        self.value = value

    async def body(self) -> bytes:
        """The raw body, already read."""
        return self.raw_body

    async def json(self) -> Any:
        """The validated body: FastAPI's own validation then accepts it as it is."""
        return self.value


class JsonBodyRoute(APIRoute):
    """An APIRoute whose JSON body is read by :func:`read_json_body` (FastAPI's "custom route class").

    The body parameter is declared as usual, so the OpenAPI document describes it; FastAPI
    then validates the value already validated here, which for model instances (not
    revalidated) and lists of them costs a type check per item.
    """

    # The byte cap of the route's bodies (BodyLimitMiddleware applies it); None: the application's.
    max_body_bytes: ClassVar[int | None] = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, preceded by reading the body when the route has one.

        Returns:
            The request handler.
        """
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        body_params = self.dependant.body_params
        if len(body_params) > 1 or getattr(body_params[0].field_info, "embed", False):
            # FastAPI would look the fields up in a dict, and json() hands it the validated value.
            raise TypeError(f"{self.path}: JsonBodyRoute reads one whole body, not embedded or several bodies")
        # The parameter's type with its constraints (Body(max_length=...) lands in metadata).
        field = self.body_field.field_info
        body_type: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        adapter: TypeAdapter[Any] = TypeAdapter(body_type)
        checks = [
            BEFORE_BODY[dependency.call] for dependency in self.dependant.dependencies if dependency.call in BEFORE_BODY
        ]

        async def read_body_then_handle(request: Request) -> Response:
            for check in checks:
                await check(request)
            body, value = await read_json_body(request, adapter)
            return await handler(ValidatedJsonRequest(request, body, value))

        return read_body_then_handle


def too_large(max_body_bytes: int) -> str:
    """The detail of a 413.

    Args:
        max_body_bytes: The cap the body went over.
    """
    return f"Request body is larger than {max_body_bytes} bytes"


class BodyCaps:
    """The byte cap of each route's bodies: its ``max_body_bytes`` (see :class:`JsonBodyRoute`), else the default.

    Found by the route the router will pick, matched as the HTTP metrics match it, from a
    table built on first use, once every router is included.
    """

    def __init__(self, routes: Sequence[BaseRoute], default: int) -> None:
        """Cap by these routes.

        Args:
            routes: The application's routes (the router's own list).
            default: The cap of a route that declares none.
        """
        self.routes = routes
        self.labels = RouteLabels(routes)
        self.default = default
        self.by_route: dict[str, int] | None = None

    def cap(self, scope: Scope) -> int:
        """The cap of the route that serves ``scope``.

        Args:
            scope: An HTTP scope.
        """
        if self.by_route is None:
            self.by_route = self.prepare()
        return self.by_route.get(self.labels.label(scope), self.default)

    def prepare(self) -> dict[str, int]:
        """The cap of every route template that declares one."""
        caps: dict[str, int] = {}
        for context in iter_route_contexts(self.routes):
            cap, template = getattr(context.original_route, "max_body_bytes", None), context.path_format
            if cap is not None and template is not None:
                # Routes of one template (GET and POST) share the larger cap: one without a body never reads it.
                caps[template] = max(cap, caps.get(template, cap))
        return caps


class BodyLimitMiddleware:
    """Refuse a request body over its route's byte cap with ``413 {"detail": ...}``, or too slow with ``408``.

    Starlette's limiter (FastAPI's ``max_body_size``) answers ``text/plain`` when the
    ``Content-Length`` is over the cap but JSON when a chunked body goes over it; here
    both are the same JSON. A declared length over the cap is refused before the
    application runs; a streamed body is counted as it is read. The cap is the route's
    (:class:`BodyCaps`) for a request that declares a body (``Content-Length`` or
    ``Transfer-Encoding``), the default for any other.

    uvicorn bounds neither how long a body may take (its keep-alive timer is re-armed only
    after a response) nor how long headers may take; the body deadline is kept here, where
    the body is read, and the header deadline in :mod:`fastapi1.http`.
    """

    def __init__(
        self, app: ASGIApp, routes: Sequence[BaseRoute], max_body_bytes: int, body_timeout_s: float = 30.0
    ) -> None:
        """Wrap an ASGI application.

        Args:
            app: The application.
            routes: Its routes, whose caps are read on first use.
            max_body_bytes: The largest body accepted by a route that declares no cap.
            body_timeout_s: Seconds the whole body may take to arrive, from the application's first read.
        """
        self.app = app
        self.caps = BodyCaps(routes, max_body_bytes)
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request with its body counted.

        Args:
            scope: The ASGI connection scope.
            receive: The ASGI receive channel.
            send: The ASGI send channel.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = self.declared_length(headers)
        # Only a request that carries a body pays for matching its route (a GET by id matches by regex).
        cap = self.caps.cap(scope) if declared or "transfer-encoding" in headers else self.caps.default
        if declared > cap:
            await OrjsonResponse({"detail": too_large(cap)}, status_code=413)(scope, receive, send)
        else:
            counter = BodyCounter(receive, cap, too_large(cap), self.body_timeout_s)
            await self.app(scope, counter.receive, send)

    @staticmethod
    def declared_length(headers: Headers) -> int:
        """The request's ``Content-Length``, 0 when absent or not a number.

        Args:
            headers: The request's headers.

        Returns:
            The declared length.
        """
        value = headers.get("content-length", "")
        return int(value) if value.isascii() and value.isdigit() else 0


class BodyCounter:
    """A receive channel that raises 413 past a number of body bytes, and 408 past a deadline."""

    def __init__(self, receive: Receive, max_body_bytes: int, detail: str, body_timeout_s: float = 30.0) -> None:
        """Wrap a receive channel.

        Args:
            receive: The ASGI receive channel.
            max_body_bytes: The largest body accepted.
            detail: The 413's message.
            body_timeout_s: Seconds the body may take, from the first read.
        """
        self.inner = receive
        self.remaining = max_body_bytes
        self.detail = detail
        self.body_timeout_s = body_timeout_s
        self.deadline: float | None = None
        self.body_done = False

    async def receive(self) -> Message:
        """Receive the next message, counting body bytes, within the body deadline until the body is complete.

        Returns:
            The message.

        Raises:
            HTTPException: 413 when the body went over the cap; 408 with ``Connection: close``
                when it did not arrive in time (the rest of it is never read). An HTTPException,
                rather than an AppError, because FastAPI's own body reading passes only those on
                intact; its handler renders it as ``{"detail": ...}`` like every other error.
        """
        if self.body_done:
            return await self.inner()
        message = await self.receive_in_time()
        if message["type"] == "http.request":
            self.remaining -= len(message.get("body", b""))
            if self.remaining < 0:
                raise HTTPException(status_code=413, detail=self.detail)
            self.body_done = not message.get("more_body", False)
        return message

    async def receive_in_time(self) -> Message:
        """Receive the next message before the body's deadline, which starts at the first read.

        Returns:
            The message.

        Raises:
            HTTPException: 408 with ``Connection: close`` when the deadline passed first.
        """
        if self.deadline is None:
            self.deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        try:
            async with asyncio.timeout_at(self.deadline):
                return await self.inner()
        except TimeoutError:
            detail = f"Request body not received within {self.body_timeout_s:g} seconds"
            raise HTTPException(status_code=408, detail=detail, headers={"Connection": "close"}) from None
