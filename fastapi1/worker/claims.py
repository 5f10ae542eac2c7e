"""What every claim loop of the worker shares: wake-ups, free slots, database outages, shutdown.

A loop claims due rows (``FOR UPDATE SKIP LOCKED`` under a lease, in its DAO) whenever it is
woken: by ``NOTIFY`` through :meth:`ClaimLoop.notify`, by a slot freeing up, or by its timer,
which runs until the next row falls due and at most the poll interval. Its work runs as
tasks of one TaskGroup; on :meth:`ClaimLoop.stop` the work in flight gets the shutdown timeout
to finish, the rest is cancelled, and :meth:`ClaimLoop.release` hands back what is still held.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.db.engine import Database
from fastapi1.errors import DATABASE_UNAVAILABLE, database_unavailable

logger = logging.getLogger(__name__)

# Due rows that an empty claim skipped are locked by another worker's claim, which commits
# within milliseconds; waiting this long instead of not at all keeps the loop from spinning.
MIN_WAIT_S = 0.01
# What database calls may raise when the database is away; database_unavailable() tells which.
DATABASE_ERRORS: tuple[type[Exception], ...] = (*DATABASE_UNAVAILABLE, sa_exc.DBAPIError, sa_exc.TimeoutError)


class ClaimLoop:
    """Claims until stopped; subclasses say how to claim, when the next row is due and what to release."""

    def __init__(self, database: Database, concurrency: int, poll_interval_s: float, shutdown_timeout_s: float) -> None:
        """Set up an idle loop.

        Args:
            database: Where the rows are.
            concurrency: Rows in flight at most (the free slots).
            poll_interval_s: Longest wait between claims when nothing wakes the loop.
            shutdown_timeout_s: Seconds the work in flight may finish after :meth:`stop`.
        """
        self.database = database
        self.free = concurrency
        self.poll_interval_s = poll_interval_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.batches: set[asyncio.Task[None]] = set()

    def notify(self) -> None:
        """Claim now: new rows were committed (or a listener reconnected)."""
        self.wake.set()

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then lets the work in flight finish and returns."""
        self.stopping.set()
        self.wake.set()

    def freed(self, slots: int = 1) -> None:
        """Give back slots and wake the loop to fill them.

        Args:
            slots: How many.
        """
        self.free += slots
        self.wake.set()

    async def run(self) -> None:
        """Claim until :meth:`stop`, then finish (up to the shutdown timeout) and release the rest."""
        async with asyncio.TaskGroup() as tasks:
            await self.claim_until_stopped(tasks)
            await self.finish_in_flight()
        await self.release()

    async def claim_until_stopped(self, tasks: asyncio.TaskGroup) -> None:
        """Claim whenever woken (NOTIFY, a free slot, the timer) until stopped.

        Args:
            tasks: Owner of the work's tasks.
        """
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                if await self.claim(tasks):
                    continue  # a full batch: more may be due
                delay = await self.idle_delay()
            except DATABASE_ERRORS as error:
                if not database_unavailable(error):
                    raise
                logger.warning("Database unavailable, claiming again shortly: %s", error)
                delay = min(1.0, self.poll_interval_s)
            await self.sleep(delay)

    async def claim(self, tasks: asyncio.TaskGroup) -> bool:
        """Claim due rows for the free slots and start their work with :meth:`start`.

        Args:
            tasks: Owner of the work's tasks.

        Returns:
            Whether the claim was full, so that more may be waiting.
        """
        raise NotImplementedError

    async def seconds_until_due(self, session: AsyncSession) -> float | None:
        """Seconds until the earliest pending row is due (at most 0 if one is), None if none is pending.

        Args:
            session: A read session.
        """
        raise NotImplementedError

    async def release(self) -> None:
        """Make what this worker still holds due again at once, for the next worker to take."""

    def start(self, tasks: asyncio.TaskGroup, work: Coroutine[Any, Any, None]) -> None:
        """Run claimed work as a task of the loop, awaited on shutdown.

        Args:
            tasks: Owner of the task.
            work: The work.
        """
        task = tasks.create_task(work)
        self.batches.add(task)
        task.add_done_callback(self.batches.discard)

    async def idle_delay(self) -> float:
        """Seconds to wait for a wake-up: until the next row is due, at most the poll interval."""
        if self.free == 0:
            return self.poll_interval_s  # finishing work wakes the loop
        async with self.database.read_sessions() as session:
            due_s = await self.seconds_until_due(session)
        return self.poll_interval_s if due_s is None else min(self.poll_interval_s, max(MIN_WAIT_S, due_s))

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds or until woken, whichever is first.

        Args:
            delay: Seconds.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.wake.wait()

    async def finish_in_flight(self) -> None:
        """Let the work in flight finish, up to the shutdown timeout, and cancel the rest."""
        if not self.batches:
            return
        _, unfinished = await asyncio.wait(set(self.batches), timeout=self.shutdown_timeout_s)
        for task in unfinished:
            task.cancel()

    async def try_write(self, write: Callable[[AsyncSession], Awaitable[object]], what: str) -> bool:
        """Run ``write`` in its own committed transaction, once.

        Args:
            write: The statements.
            what: What is written, for the log.

        Returns:
            Whether it was committed; False when the database was unavailable.
        """
        try:
            async with self.database.write_sessions() as session, session.begin():
                await write(session)
        except DATABASE_ERRORS as error:
            if not database_unavailable(error):
                raise
            logger.warning("Database unavailable, writing %s again shortly: %s", what, error)
            return False
        return True

    async def write(self, write: Callable[[AsyncSession], Awaitable[object]], what: str) -> None:
        """Run ``write`` in a committed transaction, retrying while the database is unavailable (until cancelled).

        Args:
            write: The statements.
            what: What is written, for the log.
        """
        while True:
            if await self.try_write(write, what):
                return
            await asyncio.sleep(min(1.0, self.poll_interval_s))
