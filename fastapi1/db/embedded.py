"""The embedded PostgreSQL server used when ``DATABASE_URL`` is unset."""

import asyncio
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from fastapi1.config import to_async_url

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Run the embedded PostgreSQL on ``data_dir`` for the duration of the block.

    pgserver keeps one server per data directory for all processes on the machine and
    counts their handles, so nested or concurrent users share a single server, which
    stops when the last of them leaves.

    Args:
        data_dir: Data directory, created on first use and kept afterwards.

    Yields:
        The asyncpg URL of the server's ``postgres`` database (a unix socket, no TCP port).
    """
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI)
        # and falls back to /tmp, which is what pgserver's lock file needs anyway.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    url = to_async_url(server.get_uri())
    logger.info("Embedded PostgreSQL running in %s", data_dir)
    try:
        yield url
    finally:
        server.cleanup()


@contextlib.asynccontextmanager
async def embedded_postgres_async(data_dir: Path) -> AsyncIterator[str]:
    """Async form of :func:`embedded_postgres`; start and stop run off the event loop.

    Args:
        data_dir: Data directory, created on first use and kept afterwards.

    Yields:
        The asyncpg URL of the server's ``postgres`` database.
    """
    manager = embedded_postgres(data_dir)
    url = await asyncio.to_thread(manager.__enter__)
    try:
        yield url
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)
