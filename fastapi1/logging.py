"""Request logging: one line per request on the ``fastapi1`` logger, request ids, text or JSON lines."""

import contextvars
import logging
import os
import re
import threading
import time
from asyncio import CancelledError
from typing import Any

import orjson
from starlette.datastructures import URL
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("fastapi1")

REQUEST_ID_HEADER = b"x-request-id"
# What a client may send as its request id: 1-128 visible ASCII characters; anything else is replaced.
VALID_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")
# nginx's status for "the client closed the request": nobody reads it, the request log does.
CLIENT_CLOSED_REQUEST = 499

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    """A fresh id: 128 random bits as 32 hex digits, like a uuid4's hex.

    ``os.urandom`` directly: building a ``uuid.UUID`` costs several times more per request.

    Returns:
        The id.
    """
    return os.urandom(16).hex()


def incoming_request_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when it is valid, else a fresh id.

    Args:
        scope: The ASGI connection scope.

    Returns:
        The request id.
    """
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if VALID_REQUEST_ID.fullmatch(value) else new_request_id()
    return new_request_id()


class RequestLogMiddleware:
    """Give every HTTP request an id, echo it, and log ``METHOD URL STATUS SECONDSs`` once per request.

    The id is taken from a valid ``X-Request-ID`` or generated, set in the ``request_id``
    context variable (so every record logged while the request runs carries it, see
    :func:`install_record_factory`) and sent back as ``X-Request-ID`` on every response,
    errors included. A pure ASGI middleware: one wrapped ``send``, no request object.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap an ASGI application.

        Args:
            app: The application to wrap.
        """
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request and log its outcome, also when the application raises.

        A request the client abandoned (its body cut short, or the work cancelled because
        it left) is logged as 499, not 500.

        Args:
            scope: The ASGI connection scope.
            receive: The ASGI receive channel.
            send: The ASGI send channel.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = incoming_request_id(scope)
        token = request_id.set(rid)
        header = (REQUEST_ID_HEADER, rid.encode("ascii"))
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except (CancelledError, ClientDisconnect):
            status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            elapsed = time.perf_counter() - started
            # The request fields are only rendered separately in JSON lines; text lines skip building them.
            extra = (
                {"method": scope["method"], "path": scope["path"], "status": status, "duration": round(elapsed, 6)}
                if LogFormatter.json_lines
                else None
            )
            logger.info("%s %s %d %.6fs", scope["method"], URL(scope=scope), status, elapsed, extra=extra)
            request_id.reset(token)


def install_record_factory() -> None:
    """Make every log record carry the current request id (``record.request_id``, None outside requests).

    A record factory rather than a filter: ``fileConfig`` (log.ini) cannot attach filters, and
    a filter on a logger misses the records its child loggers propagate. Installing twice is
    harmless.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "adds_request_id", False):
        return

    def record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    record_with_request_id.adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_request_id)


# The request-log fields of a JSON line, present (possibly null) on every line.
REQUEST_FIELDS = ("method", "path", "status", "duration")


class LogFormatter(logging.Formatter):
    """log.ini's formatter: the configured text line, or one JSON object per line (``LOG_FORMAT=json``).

    The text line gains `` request_id=<id>`` at its end for records logged during a request;
    the message itself (e.g. the request line ``GET http://h/p 204 0.014161s``) is unchanged.
    """

    # Set once per process from the settings (configure_log_format); fileConfig builds formatters without arguments.
    json_lines: bool = False

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as text or JSON.

        Args:
            record: The log record.

        Returns:
            One line (a text record with a traceback spans several).
        """
        rid = getattr(record, "request_id", None)
        if not self.json_lines:
            line = super().format(record)
            return line if rid is None else f"{line} request_id={rid}"
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": rid,
            "process": record.process,
        }
        for field in REQUEST_FIELDS:
            entry[field] = getattr(record, field, None)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_log_format(log_format: str) -> None:
    """Choose the line format of every :class:`LogFormatter` in this process and tag records with request ids.

    Args:
        log_format: ``"text"`` or ``"json"`` (the LOG_FORMAT setting).
    """
    install_record_factory()
    LogFormatter.json_lines = log_format == "json"


class LogThrottle:
    """Let one event through per interval and count the ones held back (thread-safe)."""

    def __init__(self, interval_s: float) -> None:
        """Start with the next event let through.

        Args:
            interval_s: Seconds between two events let through.
        """
        self.interval_s = interval_s
        self.next_at = 0.0
        self.suppressed = 0
        self.lock = threading.Lock()

    def admit(self) -> int | None:
        """Whether this event is to be logged in full.

        Returns:
            How many were held back since the last one let through, or None to hold this one back.
        """
        now = time.monotonic()
        with self.lock:
            if now < self.next_at:
                self.suppressed += 1
                return None
            held_back, self.suppressed = self.suppressed, 0
            self.next_at = now + self.interval_s
            return held_back
