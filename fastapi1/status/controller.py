"""Readiness logic: does every dependency answer in time."""

import asyncpg

from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.errors import ServiceUnavailable
from fastapi1.status.schemas import Readiness

# A probe fails with one of these when the database is down, unreachable, hung or refusing.
PROBE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def check_readiness(database: Database, settings: Settings) -> Readiness:
    """Probe the database on a connection of its own, within the ready timeout of the settings.

    Args:
        database: The database handle.
        settings: The settings, for ``ready_timeout``.

    Returns:
        The readiness report.

    Raises:
        ServiceUnavailable: When the database does not answer in time.
    """
    try:
        await database.probe(settings)
    except PROBE_ERRORS as error:
        raise ServiceUnavailable(f"Database unavailable: {type(error).__name__}") from error
    return Readiness(database="ok")
