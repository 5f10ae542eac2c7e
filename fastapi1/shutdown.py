"""Graceful shutdown of the HTTP server: uvicorn's server and gunicorn's worker, draining first.

On SIGTERM the server, in this order:

1. sets the draining flag (``fastapi1.draining``), so ``/status/ready`` answers 503 at once;
2. keeps accepting and serving for ``SHUTDOWN_DRAIN_S`` seconds (0 by default), the time a
   load balancer needs to see the 503 and stop routing here;
3. stops accepting, closes idle keep-alive connections and lets requests in flight finish,
   up to ``SHUTDOWN_TIMEOUT_S`` (uvicorn's ``timeout_graceful_shutdown``), cancelling what
   is left after that;
4. runs the lifespan's shutdown (process pool, gateway, database engines).

A second SIGTERM, or SIGINT (Ctrl-C), skips what is left of the drain period.
"""

import logging
import math
import signal
import time
from types import FrameType
from typing import Any

import uvicorn
from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from fastapi1.config import Settings
from fastapi1.draining import start_draining

logger = logging.getLogger("fastapi1")


class DrainingServer(uvicorn.Server):
    """A uvicorn server that reports not ready, and keeps serving for a drain period, before it stops."""

    def __init__(self, config: uvicorn.Config, drain_s: float) -> None:
        """Wrap uvicorn's server.

        Args:
            config: uvicorn's configuration.
            drain_s: Seconds to keep serving after SIGTERM (readiness already 503).
        """
        super().__init__(config)
        self.drain_s = drain_s
        self.drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start draining on the first SIGTERM; stop as uvicorn does on anything else.

        Args:
            sig: The signal received.
            frame: The interrupted frame.
        """
        start_draining()
        if sig == signal.SIGTERM and self.drain_until is None and self.drain_s > 0:
            # Re-raised by uvicorn once it has shut down, as it does for the signals it handles.
            self._captured_signals.append(sig)
            self.drain_until = time.monotonic() + self.drain_s
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's tick (every 0.1 s), which also ends the drain period.

        Args:
            counter: uvicorn's tick counter.

        Returns:
            Whether the server should stop accepting and shut down.
        """
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.should_exit = True
        return await super().on_tick(counter)


def uvicorn_config(settings: Settings, options: dict[str, Any]) -> uvicorn.Config:
    """The single-process server's configuration (``WORKERS=1``).

    Args:
        settings: The service settings.
        options: The connection options shared with gunicorn's workers (loop, protocol, limits).

    Returns:
        uvicorn's configuration of the application factory.
    """
    return uvicorn.Config(
        "fastapi1.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=str(settings.log_config),
        timeout_graceful_shutdown=shutdown_timeout(settings),
        **options,
    )


def shutdown_timeout(settings: Settings) -> int:
    """uvicorn's ``timeout_graceful_shutdown``: whole seconds, rounded up.

    Args:
        settings: The service settings.

    Returns:
        Seconds in-flight requests get after the server stops accepting.
    """
    return math.ceil(settings.shutdown_timeout_s)


def gunicorn_graceful_timeout(settings: Settings) -> int:
    """Seconds gunicorn's arbiter waits for its workers after SIGTERM before it kills them.

    The drain period, the requests' shutdown timeout, and room for the lifespan's shutdown.

    Args:
        settings: The service settings.

    Returns:
        gunicorn's ``graceful_timeout``, whole seconds rounded up (gunicorn takes an integer).
    """
    return math.ceil(settings.shutdown_drain_s + settings.shutdown_timeout_s + LIFESPAN_SHUTDOWN_S)


# Room after the requests' deadline for the lifespan's shutdown (pool, gateway, engines).
LIFESPAN_SHUTDOWN_S = 10


class DrainingUvicornWorker(UvicornWorker):  # type: ignore[misc]
    """gunicorn's uvicorn worker, serving with :class:`DrainingServer` and the shutdown settings."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        """Build the worker, then apply the shutdown settings to uvicorn's configuration.

        Args:
            args: gunicorn's positional arguments.
            kwargs: gunicorn's keyword arguments.
        """
        super().__init__(*args, **kwargs)
        self.settings = Settings()
        self.config.timeout_graceful_shutdown = shutdown_timeout(self.settings)

    async def _serve(self) -> None:
        """Serve as :class:`UvicornWorker` does, with the draining server."""
        self.config.app = self.wsgi
        server = DrainingServer(self.config, self.settings.shutdown_drain_s)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR)
