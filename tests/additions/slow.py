"""A gate between a test and the pool: a task reports from its worker, then waits for the test.

The test learns which worker runs the task and that it is running now, without sleeping,
and decides when the task may finish.
"""

import asyncio
import contextlib
import os
import socket
from collections.abc import Sequence
from types import TracebackType

# Long enough for any test to open the gate; bounded so a task run on the event loop by
# mistake (which blocks the gate's own server) fails the test instead of hanging it.
GATE_TIMEOUT = 20


def gated_add_pairs(gate: tuple[str, int], lefts: Sequence[int], rights: Sequence[int]) -> list[int]:
    """Send this worker's pid to the gate, wait until it opens (or goes away), then add."""
    with socket.create_connection(gate, timeout=GATE_TIMEOUT) as connection:
        connection.sendall(f"{os.getpid()}\n".encode())
        connection.recv(1)
    return [left + right for left, right in zip(lefts, rights, strict=True)]


class Gate:
    """A local TCP server that gated tasks report to; they all wait until the test opens it."""

    def __init__(self) -> None:
        self.arrivals: asyncio.Queue[int] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.waiting: set[asyncio.Task[None]] = set()
        self.address = ("127.0.0.1", 0)

    async def __aenter__(self) -> "Gate":
        self.server = await asyncio.start_server(self.arrive, *self.address)
        self.address = self.server.sockets[0].getsockname()[:2]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.open()
        await asyncio.gather(*self.waiting)
        self.server.close()
        await self.server.wait_closed()

    async def arrive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Record the task's worker pid, then hold the task until the gate opens."""
        task = asyncio.current_task()
        assert task is not None
        self.waiting.add(task)
        # A killed worker's connection is reset; its task has nothing left to release.
        with contextlib.suppress(ConnectionError):
            self.arrivals.put_nowait(int(await reader.readline()))
            await self.opened.wait()
            writer.write(b"go")
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def arrival(self) -> int:
        """The pid of the next worker whose task reached the gate."""
        async with asyncio.timeout(GATE_TIMEOUT):
            return await self.arrivals.get()

    def open(self) -> None:
        """Let every task that arrived, and every later one, finish."""
        self.opened.set()
