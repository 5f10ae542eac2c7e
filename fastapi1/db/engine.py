"""Engines and session factories for the primary database and its optional read replica."""

import functools
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from fastapi1.config import Settings
from fastapi1.metrics import DB_POOL_CHECKED_OUT, DB_POOL_WAITING


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
    return create_async_engine(
        url,
        poolclass=metered_pool(name),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # A connection lost with the server is invalidated together with the whole pool,
        # so the first request after an outage fails fast and the next ones reconnect.
        pool_pre_ping=False,
        connect_args={"timeout": settings.db_connect_timeout},
    )


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

    async def ping(self) -> None:
        """Run ``SELECT 1`` on every engine."""
        for engine in {self.write_engine, self.read_engine}:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
