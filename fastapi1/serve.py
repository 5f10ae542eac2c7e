"""Launcher used by ``scripts/run_app.sh``: metrics, database, migrations, delivery workers, then HTTP workers.

``python -m fastapi1.serve`` starts the embedded PostgreSQL when ``DATABASE_URL`` is unset
(once, in this process, so every worker shares it), migrates to head, starts
``WORKER_PROCESSES`` delivery workers (``python -m fastapi1.worker``), and serves with
uvicorn (one worker) or gunicorn with uvicorn workers (``WORKERS`` > 1). When serving stops,
the delivery workers are stopped (SIGTERM, then their shutdown timeout), then the database.

Before any of that it prepares the metrics directory (``PROMETHEUS_MULTIPROC_DIR``, empty) and
exports it, so that every process it starts writes its metrics there and ``GET /metrics`` on
any HTTP worker covers the instance (see :mod:`fastapi1.metrics`). A process that exits is
marked dead there, so that its gauges leave the sums.
"""

import contextlib
import logging.config
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from gunicorn.app.base import BaseApplication

from fastapi1.config import DeliverySettings, Settings, load_settings
from fastapi1.db.embedded import embedded_postgres
from fastapi1.db.migrate import upgrade_to_head
from fastapi1.http import bounded_protocol
from fastapi1.logging import configure_log_format
from fastapi1.shutdown import DrainingServer, DrainingUvicornWorker, gunicorn_graceful_timeout, uvicorn_config

logger = logging.getLogger("fastapi1")

# prometheus-client's variable, read when it is imported in each process (and by Settings).
METRICS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


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


def worker_class(settings: Settings) -> type[DrainingUvicornWorker]:
    """gunicorn's draining uvicorn worker with the options of :func:`uvicorn_options` (they override gunicorn's).

    Args:
        settings: The HTTP settings.

    Returns:
        A DrainingUvicornWorker subclass.
    """
    return type("Fastapi1Worker", (DrainingUvicornWorker,), {"CONFIG_KWARGS": uvicorn_options(settings)})


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
            # Drain, requests in flight, lifespan shutdown: the workers are killed only after that.
            "graceful_timeout": gunicorn_graceful_timeout(settings),
            "timeout": 60,
            "keepalive": 5,
            # gunicorn >= 25.1 listens on ~/.gunicorn/gunicorn.ctl by default, one path per
            # user: a second instance on the machine replaces the first one's socket, and the
            # first removes the second's when it stops. Nothing here uses gunicornc; signals
            # to the arbiter work as before.
            "control_socket_disable": True,
            "child_exit": on_worker_exit,
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


def on_worker_exit(server: Any, worker: Any) -> None:
    """Gunicorn's ``child_exit`` hook, in the arbiter: the worker's gauges leave the metrics.

    Args:
        server: The arbiter.
        worker: The worker that exited.
    """
    mark_process_dead(worker.pid)


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of an exited process from the instance's metrics directory.

    Args:
        pid: The process's id.
    """
    # Imported here, once the directory is exported: never before metrics_directory.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def metrics_directory(configured: Path | None) -> Iterator[Path]:
    """Prepare the directory every process of the instance writes its metrics to, and export it.

    prometheus-client picks where its values live when it is imported, so the variable must be
    set before any process of the instance imports it: this one included.

    Args:
        configured: ``PROMETHEUS_MULTIPROC_DIR``, emptied here; None for a temporary directory.

    Yields:
        The directory; a temporary one is removed on exit.

    Raises:
        RuntimeError: When prometheus-client was imported already.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the metrics directory was set")
    if configured is None:
        directory = Path(tempfile.mkdtemp(prefix="fastapi1-metrics-"))
    else:
        directory = configured
        directory.mkdir(parents=True, exist_ok=True)
        # Counters of a previous run of the instance would otherwise be summed with this one's.
        for stale in directory.glob("*.db"):
            stale.unlink()
    os.environ[METRICS_DIRECTORY_VARIABLE] = str(directory)
    try:
        yield directory
    finally:
        if configured is None:
            shutil.rmtree(directory, ignore_errors=True)


def serve(settings: Settings) -> None:
    """Serve HTTP until SIGINT or SIGTERM.

    Args:
        settings: The service settings, with the database URL resolved.
    """
    if settings.workers > 1:
        GunicornServer(settings).run()
        return
    DrainingServer(uvicorn_config(settings, uvicorn_options(settings)), settings.shutdown_drain_s).run()


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
        mark_process_dead(worker.pid)


def main() -> None:
    """Resolve the database, migrate it, and serve."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, exit_cleanly)
    settings = load_settings()
    logging.config.fileConfig(settings.log_config, disable_existing_loggers=False)
    configure_log_format(settings.log_format)
    with contextlib.ExitStack() as stack:
        stack.enter_context(metrics_directory(settings.prometheus_multiproc_dir))
        if settings.database_url is None:
            url = stack.enter_context(embedded_postgres(settings.embedded_data_dir))
            # Workers inherit the environment, so they all connect to this one server.
            os.environ["DATABASE_URL"] = url
            settings = Settings()
        assert settings.database_url is not None
        if settings.migrate_on_start:
            upgrade_to_head(settings.database_url)
        else:
            logger.info("MIGRATE_ON_START=false: not migrating (a release job runs python -m fastapi1.db.migrate)")
        delivery = DeliverySettings()
        stack.enter_context(delivery_workers(delivery))
        logger.info(
            "Serving on http://%s:%d with %d worker(s) and %d delivery worker(s)",
            settings.host,
            settings.port,
            settings.workers,
            delivery.worker_processes,
        )
        serve(settings)


if __name__ == "__main__":
    main()
