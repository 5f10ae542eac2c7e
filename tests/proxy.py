"""A TCP proxy in front of the test database or broker, to take it away and bring it back."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from sqlalchemy.engine import make_url

Connector = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def database_connector(database_url: str) -> Connector:
    """Return a function opening a stream to the server of ``database_url`` (TCP or unix socket)."""
    url = make_url(database_url)
    socket_dir = url.query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        path = str(Path(socket_dir) / f".s.PGSQL.{url.port or 5432}")
        return lambda: asyncio.open_unix_connection(path)
    host, port = url.host or "127.0.0.1", url.port or 5432
    return lambda: asyncio.open_connection(host, port)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    """Copy bytes from ``reader`` to ``writer`` until either side closes, holding them while not ``flowing``."""
    try:
        while chunk := await reader.read(65536):
            await flowing.wait()
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


class TcpProxy:
    """Listens on a fixed loopback port and forwards every connection to the server behind it."""

    def __init__(self, connect: Connector, port: int, database_url: str = "") -> None:
        self.database_url = database_url
        self.port = port
        self.connect = connect
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()

    @property
    def url(self) -> str:
        """The database URL that goes through this proxy."""
        url = make_url(self.database_url).set(host="127.0.0.1", port=self.port)
        return url.difference_update_query(["host"]).render_as_string(hide_password=False)

    @classmethod
    @contextlib.asynccontextmanager
    async def to_database(cls, database_url: str) -> AsyncIterator["TcpProxy"]:
        """Run a proxy to ``database_url`` on a free port for the duration of the block."""
        async with cls.running(database_connector(database_url), database_url) as proxy:
            yield proxy

    @classmethod
    @contextlib.asynccontextmanager
    async def to_address(cls, host: str, port: int) -> AsyncIterator["TcpProxy"]:
        """Run a proxy to ``host:port`` (the broker, say) on a free port for the duration of the block."""
        async with cls.running(lambda: asyncio.open_connection(host, port)) as proxy:
            yield proxy

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, connect: Connector, database_url: str = "") -> AsyncIterator["TcpProxy"]:
        """Run a proxy to what ``connect`` reaches, on a free port, for the duration of the block."""
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        proxy = cls(connect, port, database_url)
        await proxy.start()
        try:
            yield proxy
        finally:
            await proxy.stop()

    async def start(self) -> None:
        """Accept connections again."""
        self.server = await asyncio.start_server(self.forward, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening and cut every open connection, as a database crash would."""
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()
            self.server = None

    def stall(self) -> None:
        """Keep every connection open, and accept new ones, but forward nothing (a hung database)."""
        self.flowing.clear()

    def resume(self) -> None:
        """Forward again, held bytes first."""
        self.flowing.set()

    async def forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """Relay one client connection to the database in both directions."""
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            self.writers.add(client_writer)
            await self.flowing.wait()
            server_reader, server_writer = await self.connect()
            self.writers.add(server_writer)
            await asyncio.gather(
                pipe(client_reader, server_writer, self.flowing), pipe(server_reader, client_writer, self.flowing)
            )
        finally:
            self.tasks.discard(task)
            self.writers.discard(client_writer)
            client_writer.close()
