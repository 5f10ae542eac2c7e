"""Readiness logic: does every dependency answer in time; and the metrics scrape."""

import asyncio

import asyncpg

from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.draining import is_draining
from fastapi1.errors import ServiceUnavailable
from fastapi1.http_metrics import recorder
from fastapi1.metrics import exposition
from fastapi1.status.schemas import Readiness

# A probe fails with one of these when the database is down, unreachable, hung or refusing.
PROBE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def check_readiness(database: Database, settings: Settings) -> Readiness:
    """Not ready while draining; otherwise probe the database on a connection of its own, within the ready timeout.

    Args:
        database: The database handle.
        settings: The settings, for ``ready_timeout``.

    Returns:
        The readiness report.

    Raises:
        ServiceUnavailable: When the process is shutting down (SIGTERM), or the database does
            not answer in time.
    """
    if is_draining():
        raise ServiceUnavailable("Shutting down")
    try:
        await database.probe(settings)
    except PROBE_ERRORS as error:
        raise ServiceUnavailable(f"Database unavailable: {type(error).__name__}") from error
    return Readiness(database="ok")


async def scrape() -> bytes:
    """The metrics of every process of the instance (of this one when it runs alone), as Prometheus text.

    In a thread: with many processes the scrape reads many files, and the loop keeps serving.
    """
    recorder.flush()
    return await asyncio.to_thread(exposition)
