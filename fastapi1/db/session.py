"""Session dependencies: one session per request, committed at the edge."""

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
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


ROLLBACK_CALLBACKS = "fastapi1.on_rollback"
COMMIT_CALLBACKS = "fastapi1.on_commit"
logger = logging.getLogger("fastapi1")


def on_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Have ``callback`` run once the session's transaction has committed (not if it rolls back).

    Args:
        session: A session of :func:`write_transaction`.
        callback: What the commit makes true elsewhere (a cache to forget).
    """
    session.info.setdefault(COMMIT_CALLBACKS, []).append(callback)


def on_rollback(session: AsyncSession, callback: Callable[[], Awaitable[None]]) -> None:
    """Have ``callback`` run if the session's transaction does not commit (the block raised, or the commit did).

    For what a request did outside its transaction and must undo with it: the notifications it
    reserved against its service's daily limit.

    Args:
        session: A session of :func:`write_transaction`.
        callback: What undoes it; it must not raise.
    """
    session.info.setdefault(ROLLBACK_CALLBACKS, []).append(callback)


@contextlib.asynccontextmanager
async def write_transaction(database: Database) -> AsyncIterator[AsyncSession]:
    """A primary-database session in a transaction, committed when the block ends.

    This is the only place that commits: code below it only flushes. It rolls back
    when the block raises, so a failed request leaves the database as it was, and runs what
    :func:`on_rollback` registered.

    Args:
        database: The database.

    Yields:
        A session in a fresh transaction.
    """
    async with database.write_sessions() as session:
        try:
            async with session.begin():
                yield session
        except BaseException:
            await undo(session.info.pop(ROLLBACK_CALLBACKS, ()))
            raise
        for committed in session.info.pop(COMMIT_CALLBACKS, ()):
            committed()


async def undo(callbacks: list[Callable[[], Awaitable[None]]]) -> None:
    """Run the rollback callbacks; one that fails is logged and the others still run.

    Args:
        callbacks: What :func:`on_rollback` registered.
    """
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            logger.exception("Undoing what a failed request did outside its transaction failed")


async def get_write_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a primary-database session, committed when the handler returns.

    Args:
        request: The current request.

    Yields:
        A session in a fresh transaction.
    """
    async with write_transaction(get_database(request)) as session:
        yield session


WriteTransactions = Callable[[], contextlib.AbstractAsyncContextManager[AsyncSession]]


async def get_write_transactions(request: Request) -> WriteTransactions:
    """Return a factory of write transactions, for a route that writes on only some of its paths.

    A route that depends on a write session holds a pooled connection for its whole run; the
    prediction route may wait seconds for the backend and writes only in ``Async-Mode``.

    Args:
        request: The current request.
    """
    return functools.partial(write_transaction, get_database(request))


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
WriteTransactionsDep = Annotated[WriteTransactions, Depends(get_write_transactions)]
DatabaseDep = Annotated[Database, Depends(get_database)]
