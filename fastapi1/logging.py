"""Request logging: one line per request on the ``fastapi1`` logger."""

import logging
import time

from starlette.datastructures import URL
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("fastapi1")


class RequestLogMiddleware:
    """Log ``METHOD URL STATUS SECONDSs`` once per HTTP request, e.g. ``GET http://h/p 204 0.014161s``."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap an ASGI application.

        Args:
            app: The application to wrap.
        """
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request and log its outcome, also when the application raises.

        Args:
            scope: The ASGI connection scope.
            receive: The ASGI receive channel.
            send: The ASGI send channel.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            elapsed = time.perf_counter() - started
            logger.info("%s %s %d %.6fs", scope["method"], URL(scope=scope), status, elapsed)
