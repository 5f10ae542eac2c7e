"""Launcher used by ``scripts/run_app.sh``: database, migrations, delivery workers, then HTTP workers.

``python -m fastapi1.serve`` starts the embedded PostgreSQL when ``DATABASE_URL`` is unset
(once, in this process, so every worker shares it), migrates to head, starts
``WORKER_PROCESSES`` delivery workers (``python -m fastapi1.worker``), and serves with
uvicorn (one worker) or gunicorn with uvicorn workers (``WORKERS`` > 1). When serving stops,
the delivery workers are stopped (SIGTERM, then their shutdown timeout), then the database.
"""

import contextlib
import logging.config
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn
from gunicorn.app.base import BaseApplication
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from fastapi1.config import DeliverySettings, Settings
from fastapi1.db.embedded import embedded_postgres
from fastapi1.db.migrate import upgrade_to_head
from fastapi1.http import bounded_protocol
from fastapi1.logging import configure_log_format

logger = logging.getLogger("fastapi1")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options that bound connections, the same with and without gunicorn.

    Args:
        settings: The HTTP settings.

    Returns:
        Keyword arguments for ``uvicorn.Config``.
    """
    return {
        "loop": "uvloop",
        "http": bounded_protocol(settings),
        "timeout_keep_alive": settings.http_keep_alive_s,
        "limit_concurrency": settings.http_limit_concurrency,
    }


def worker_class(settings: Settings) -> type[UvicornWorker]:
    """gunicorn's uvicorn worker with the options of :func:`uvicorn_options` (they override gunicorn's).

    Args:
        settings: The HTTP settings.

    Returns:
        A UvicornWorker subclass.
    """
    return type("Fastapi1Worker", (UvicornWorker,), {"CONFIG_KWARGS": uvicorn_options(settings)})


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """Gunicorn arbiter serving fastapi1 with uvicorn workers, configured from Settings."""

    def __init__(self, settings: Settings) -> None:
        """Keep the settings that become gunicorn options.

        Args:
            settings: The service settings.
        """
        self.options: dict[str, Any] = {
            "bind": f"{settings.host}:{settings.port}",
            "workers": settings.workers,
            "worker_class": worker_class(settings),
            "logconfig": str(settings.log_config),
            "graceful_timeout": 10,
            "timeout": 60,
            "keepalive": 5,
            # gunicorn >= 25.1 listens on ~/.gunicorn/gunicorn.ctl by default, one path per
            # user: a second instance on the machine replaces the first one's socket, and the
            # first removes the second's when it stops. Nothing here uses gunicornc; signals
            # to the arbiter work as before.
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        """Copy the options into gunicorn's configuration."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Build the application in each worker, after the fork.

        Returns:
            The ASGI application.
        """
        from fastapi1.app import create_app

        return create_app()


def serve(settings: Settings) -> None:
    """Serve HTTP until SIGINT or SIGTERM.

    Args:
        settings: The service settings, with the database URL resolved.
    """
    if settings.workers > 1:
        GunicornServer(settings).run()
        return
    uvicorn.run(
        "fastapi1.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=str(settings.log_config),
        **uvicorn_options(settings),
    )


def exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """Turn SIGINT/SIGTERM into SystemExit, so the embedded database is stopped on the way out.

    uvicorn re-raises the signal that stopped it once it has shut down; with this handler
    in place that unwinds through ``main`` instead of killing the process outright.

    Args:
        signum: The signal received.
        frame: The interrupted frame.

    Raises:
        SystemExit: Always, with status 0.
    """
    raise SystemExit(0)


@contextlib.contextmanager
def delivery_workers(settings: DeliverySettings) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run ``WORKER_PROCESSES`` delivery workers for the duration of the block.

    Each worker holds the read end of a pipe whose write end only this process holds: if this
    process dies without stopping them (SIGKILL), they read end-of-file and stop themselves.

    Args:
        settings: The delivery settings.

    Yields:
        The worker processes.
    """
    parent_alive_reader, parent_alive = os.pipe()
    command = [sys.executable, "-m", "fastapi1.worker", "--parent-fd", str(parent_alive_reader)]
    workers = [
        subprocess.Popen(command, pass_fds=(parent_alive_reader,))  # noqa: S603 (our own interpreter and module)
        for _ in range(settings.worker_processes)
    ]
    os.close(parent_alive_reader)
    try:
        yield workers
    finally:
        stop_workers(workers, settings.delivery_shutdown_timeout_s + 10)
        os.close(parent_alive)


def stop_workers(workers: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM the workers, wait for them, and SIGKILL whichever outlives ``timeout``.

    Args:
        workers: The worker processes.
        timeout: Seconds each may take to finish its deliveries and exit.
    """
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.error("Delivery worker %d did not stop in %.0fs; killing it", worker.pid, timeout)
            worker.kill()
            worker.wait()


def main() -> None:
    """Resolve the database, migrate it, and serve."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, exit_cleanly)
    settings = Settings()
    logging.config.fileConfig(settings.log_config, disable_existing_loggers=False)
    configure_log_format(settings.log_format)
    with contextlib.ExitStack() as stack:
        if settings.database_url is None:
            url = stack.enter_context(embedded_postgres(settings.embedded_data_dir))
            # Workers inherit the environment, so they all connect to this one server.
            os.environ["DATABASE_URL"] = url
            settings = Settings()
        assert settings.database_url is not None
        upgrade_to_head(settings.database_url)
        delivery = DeliverySettings()
        stack.enter_context(delivery_workers(delivery))
        logger.info(
            "Database at head; serving on http://%s:%d with %d worker(s) and %d delivery worker(s)",
            settings.host,
            settings.port,
            settings.workers,
            delivery.worker_processes,
        )
        serve(settings)


if __name__ == "__main__":
    main()
