"""Engines and session factories for the primary database and its optional read replica."""

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from fastapi1.config import Settings
from fastapi1.metrics import DB_POOL_CHECKED_OUT, DB_POOL_WAITING

# What asyncpg raises, outside its own exception classes, when the server is unreachable,
# cuts the connection or does not answer within command_timeout / the connect timeout.
TRANSPORT_ERRORS = (OSError, TimeoutError)


def milliseconds(seconds: float) -> str:
    """A PostgreSQL duration setting in milliseconds (``"0"`` turns the timeout off).

    Args:
        seconds: The duration.

    Returns:
        The setting's value.
    """
    return str(round(seconds * 1000))


def connect_args(settings: Settings) -> dict[str, Any]:
    """asyncpg's connection arguments: connect and command timeouts, and the session settings.

    Args:
        settings: The database timeouts and application name.

    Returns:
        Keyword arguments for ``asyncpg.connect``.
    """
    return {
        "timeout": settings.db_connect_timeout,
        "command_timeout": settings.db_command_timeout_s,
        "server_settings": {
            "application_name": settings.db_application_name,
            "statement_timeout": milliseconds(settings.db_statement_timeout_s),
            "idle_in_transaction_session_timeout": milliseconds(settings.db_idle_in_transaction_timeout_s),
        },
    }


def translate_transport_error(context: ExceptionContext) -> BaseException | None:
    """Make a bare OSError or TimeoutError of a statement an OperationalError on an invalidated connection.

    asyncpg raises them unwrapped (a reset socket, command_timeout on a hung server), and
    SQLAlchemy passes them on as they are; translated here, they are told apart from the
    same classes raised by code that has nothing to do with the database. The connection
    is invalidated: after a timeout its protocol state is unknown.

    Args:
        context: SQLAlchemy's description of the failed statement.

    Returns:
        The exception to raise instead, or None to leave the error as it is.
    """
    error = context.original_exception
    if not isinstance(error, TRANSPORT_ERRORS):
        return None
    context.is_disconnect = True
    return sa_exc.OperationalError(context.statement, context.parameters, error, connection_invalidated=True)


def connect_or_translate(
    dialect: Dialect, record: ConnectionPoolEntry, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    """Open a DB-API connection; a refused, unreachable or silent server is an OperationalError.

    Args:
        dialect: The engine's dialect.
        record: The pool entry being connected.
        cargs: Positional connection arguments.
        cparams: Keyword connection arguments.

    Returns:
        The DB-API connection.

    Raises:
        OperationalError: When the connection could not be opened in time.
    """
    try:
        return dialect.connect(*cargs, **cparams)
    except TRANSPORT_ERRORS as error:
        raise sa_exc.OperationalError(None, None, error) from error


class MeteredPool(AsyncAdaptedQueuePool):
    """The engine's pool, reporting connections checked out and checkouts waiting (``fastapi1_db_pool_*``)."""

    # SQLAlchemy names a pool's logger after its class: keep it among SQLAlchemy's (root: WARNING),
    # not under fastapi1's INFO logger, where every dispose would log.
    __module__ = "sqlalchemy.pool"
    checked_out = DB_POOL_CHECKED_OUT.labels("write")
    waiting = DB_POOL_WAITING.labels("write")
    # What this pool has added to the checked-out gauge so far: the gauge is adjusted by the
    # difference, so pools sharing a label in one process add up and none drifts.
    reported = 0

    def _do_get(self) -> ConnectionPoolEntry:
        """Check a connection out; a checkout that finds no idle connection counts as waiting meanwhile.

        Returns:
            The pool entry.
        """
        if self.checkedin():
            entry = super()._do_get()
        else:
            self.waiting.inc()
            try:
                entry = super()._do_get()
            finally:
                self.waiting.dec()
        self.report_checked_out()
        return entry

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        """Return a connection to the pool.

        Args:
            record: The pool entry.
        """
        super()._do_return_conn(record)
        self.report_checked_out()

    def report_checked_out(self) -> None:
        """Bring the checked-out gauge up to date with this pool's count."""
        current = self.checkedout()
        if current != self.reported:
            self.checked_out.inc(current - self.reported)
            self.reported = current


@functools.cache
def metered_pool(engine: str) -> type[MeteredPool]:
    """The pool class of an engine label; a class, because the pool is rebuilt from its class on dispose.

    Args:
        engine: ``write`` or ``read``.
    """
    gauges = {"checked_out": DB_POOL_CHECKED_OUT.labels(engine), "waiting": DB_POOL_WAITING.labels(engine)}
    return type(f"MeteredPool_{engine}", (MeteredPool,), {"__module__": MeteredPool.__module__, **gauges})


def create_engine(url: str, settings: Settings, name: str = "write") -> AsyncEngine:
    """Create an asyncpg engine sized and timed by the settings.

    Args:
        url: An asyncpg database URL.
        settings: Pool sizes and timeouts.
        name: The engine's label in the pool metrics: ``write`` or ``read``.

    Returns:
        The engine; it opens no connection until first used.
    """
    engine = create_async_engine(
        url,
        poolclass=metered_pool(name),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # A connection lost with the server is invalidated together with the whole pool,
        # so the first request after an outage fails fast and the next ones reconnect.
        pool_pre_ping=False,
        connect_args=connect_args(settings),
    )
    event.listen(engine.sync_engine, "handle_error", translate_transport_error)
    event.listen(engine.sync_engine, "do_connect", connect_or_translate)
    return engine


async def probe(url: str, settings: Settings) -> None:
    """Open a connection of its own, run ``SELECT 1`` and close it, within READY_TIMEOUT.

    Its own connection, so a pool whose every connection is busy does not delay the answer.

    Args:
        url: The SQLAlchemy URL of the database.
        settings: The connect and ready timeouts.

    Raises:
        TimeoutError: When the database did not answer within the ready timeout.
        OSError: When it cannot be reached.
        asyncpg.PostgresError: When it refuses the connection or the statement.
    """
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    async with asyncio.timeout(settings.ready_timeout):
        connection = await asyncpg.connect(dsn, timeout=settings.ready_timeout)
        try:
            await connection.fetchval("SELECT 1")
        except BaseException:
            connection.terminate()
            raise
        await connection.close()


@dataclass(frozen=True, slots=True)
class Database:
    """The write (primary) and read engines with their session factories."""

    write_engine: AsyncEngine
    read_engine: AsyncEngine
    write_sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, write_url: str, read_url: str | None, settings: Settings) -> "Database":
        """Build the engines; reads share the primary's engine when there is no replica.

        Args:
            write_url: URL of the primary.
            read_url: URL of a read replica, or None.
            settings: Pool sizes and timeouts.

        Returns:
            The database handle.
        """
        write_engine = create_engine(write_url, settings)
        read_engine = create_engine(read_url, settings, "read") if read_url else write_engine
        # Reads run in autocommit: each SELECT is its own snapshot, and the BEGIN and
        # ROLLBACK round trips around it disappear (a GET is then one round trip).
        autocommit_reads = read_engine.execution_options(isolation_level="AUTOCOMMIT")
        return cls(
            write_engine=write_engine,
            read_engine=read_engine,
            write_sessions=async_sessionmaker(write_engine, expire_on_commit=False),
            read_sessions=async_sessionmaker(autocommit_reads, expire_on_commit=False),
        )

    async def probe(self, settings: Settings) -> None:
        """Check every database on a connection of its own, outside the pools (see :func:`probe`).

        Args:
            settings: The connect and ready timeouts.
        """
        engines = {self.write_engine, self.read_engine}
        await asyncio.gather(*(probe(engine.url.render_as_string(hide_password=False), settings) for engine in engines))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
