"""uvicorn's httptools protocol with the connection bounds uvicorn lacks: a header deadline and connection lifetime.

uvicorn (0.54) arms its keep-alive timer only after a response, and any byte received
disarms it: a client that connects and says nothing, or sends its headers a byte at a
time, holds the connection (and a file descriptor) for ever. Here

- the request head (request line and headers) must be complete within HTTP_HEADER_TIMEOUT_S,
  counted from the connection's opening, or from the first byte of a later request on it;
  otherwise the connection is closed;
- after HTTP_MAX_REQUESTS_PER_CONNECTION requests, or once the connection is older than
  HTTP_MAX_CONNECTION_AGE_S, the response carries ``Connection: close``, so clients reconnect
  and the kernel spreads them over every worker again (after a worker restart too).

The body's own deadline is kept where the body is read (:class:`fastapi1.bodies.BodyCounter`).
"""

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fastapi1.config import Settings

logger = logging.getLogger("fastapi1")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a header deadline and a bounded connection lifetime (class attributes)."""

    header_timeout_s: float = 10.0
    max_requests: int = 1_000
    max_age_s: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Set up uvicorn's protocol and this connection's counters.

        Args:
            args: uvicorn's positional arguments.
            kwargs: uvicorn's keyword arguments.
        """
        super().__init__(*args, **kwargs)
        self.head_deadline: asyncio.TimerHandle | None = None
        self.opened_at = 0.0
        self.requests = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the connection's clock and the deadline of its first request head.

        Args:
            transport: The connection.
        """
        super().connection_made(transport)
        self.opened_at = self.loop.time()
        self.arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the head deadline with the connection.

        Args:
            exc: Why the connection was lost, if not closed cleanly.
        """
        self.disarm_head_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A request begins: its head is due within the header timeout."""
        super().on_message_begin()
        if self.head_deadline is None:
            self.arm_head_deadline()

    def on_headers_complete(self) -> None:
        """The head arrived in time; a connection past its request count or age closes after this request."""
        self.disarm_head_deadline()
        super().on_headers_complete()
        self.requests += 1
        worn_out = self.requests >= self.max_requests or self.loop.time() - self.opened_at >= self.max_age_s
        if worn_out and self.cycle is not None:
            self.cycle.keep_alive = False

    def arm_head_deadline(self) -> None:
        """Close the connection unless a request head completes within the header timeout."""
        self.head_deadline = self.loop.call_later(self.header_timeout_s, self.head_timed_out)

    def disarm_head_deadline(self) -> None:
        """Cancel the pending head deadline, if any."""
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def head_timed_out(self) -> None:
        """Close a connection whose request head did not arrive in time."""
        self.head_deadline = None
        if not self.transport.is_closing():
            logger.debug("Closing %s: no complete request head within %gs", self.client, self.header_timeout_s)
            self.transport.close()


def bounded_protocol(settings: Settings) -> type[BoundedHttpToolsProtocol]:
    """The protocol class with the bounds of the settings.

    Args:
        settings: The HTTP settings.

    Returns:
        A subclass of :class:`BoundedHttpToolsProtocol` for uvicorn's ``http`` option.
    """
    return type(
        "Fastapi1HttpProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "header_timeout_s": settings.http_header_timeout_s,
            "max_requests": settings.http_max_requests_per_connection,
            "max_age_s": settings.http_max_connection_age_s,
        },
    )
