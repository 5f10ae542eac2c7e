"""LISTEN on a dedicated asyncpg connection that comes back by itself after an outage.

Not through SQLAlchemy's pool: a listening connection must stay open and idle for the life
of the process, and a pooled one would be recycled, pinged and shared.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

LISTEN_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def asyncpg_dsn(url: str) -> str:
    """The DSN ``asyncpg.connect`` takes for a SQLAlchemy ``postgresql+asyncpg://`` URL.

    Args:
        url: The SQLAlchemy URL.
    """
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_until_lost(dsn: str, channel: str, on_notify: Callable[[], None], check_s: float) -> None:
    """Listen on one connection until it fails a liveness check or closes.

    ``on_notify`` also runs once listening has started: whatever was committed while nobody
    listened is then claimed without waiting for the poll.

    Args:
        dsn: The asyncpg DSN.
        channel: The channel.
        on_notify: Called for every notification (its payload is not needed).
        check_s: Seconds between liveness checks; a dead peer that sent no RST is noticed by them.
    """
    connection = await asyncpg.connect(dsn, timeout=check_s)
    try:
        await connection.add_listener(channel, lambda *_: on_notify())
        on_notify()
        while not connection.is_closed():
            await asyncio.sleep(check_s)
            await connection.fetchval("SELECT 1", timeout=check_s)
    finally:
        with contextlib.suppress(*LISTEN_ERRORS):
            await asyncio.wait_for(connection.close(), check_s)
        connection.terminate()


async def listen(dsn: str, channel: str, on_notify: Callable[[], None], retry_s: float) -> None:
    """Keep listening on ``channel`` until cancelled, reconnecting after every failure.

    Args:
        dsn: The asyncpg DSN.
        channel: The channel.
        on_notify: Called for every notification and after every (re)connection.
        retry_s: Seconds between reconnection attempts, and between liveness checks.
    """
    while True:
        try:
            await listen_until_lost(dsn, channel, on_notify, retry_s)
        except LISTEN_ERRORS as error:
            logger.warning("LISTEN %s lost (%s); reconnecting in %.1fs", channel, error, retry_s)
        await asyncio.sleep(retry_s)
