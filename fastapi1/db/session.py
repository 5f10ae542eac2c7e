"""Session dependencies: one session per request, committed at the edge."""

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.db.engine import Database


def get_database(request: Request) -> Database:
    """Return the database handle the lifespan put on the application state.

    Args:
        request: The current request.

    Returns:
        The application's database handle.
    """
    return cast(Database, request.app.state.database)


async def get_write_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a primary-database session, committed when the handler returns.

    This is the only place that commits: code below it only flushes. It rolls back
    when the handler raises, so a failed request leaves the database as it was.

    Args:
        request: The current request.

    Yields:
        A session in a fresh transaction.
    """
    async with get_database(request).write_sessions() as session, session.begin():
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a session on the read replica (or the primary when there is none).

    Args:
        request: The current request.

    Yields:
        A session for reads; nothing it does is committed.
    """
    async with get_database(request).read_sessions() as session:
        yield session


# scope="function" ends the dependency before the response is sent, so a failed
# commit becomes an error response instead of a 201 for rows that were never stored.
WriteSession = Annotated[AsyncSession, Depends(get_write_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]
