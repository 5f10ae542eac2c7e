"""Calls made while a flush is due go to the store together: one round trip per batch, not per call."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from fastapi1.errors import LimitsUnavailable

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

SHUTTING_DOWN = "Limits unavailable: the service is shutting down"


class Coalescer(Generic[Item, Outcome]):
    """Hands the items submitted within one event-loop turn, or while every flusher is busy, to one flush.

    Each of the flushers (tasks running :meth:`run`) takes everything waiting when it wakes:
    under load the next batch gathers while the previous one is in the store, so a busy
    process pays one round trip per batch; an idle one pays one per call, as without it.
    """

    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[list[Outcome]]],
        orphaned: Callable[[Outcome], Awaitable[None]] | None = None,
    ) -> None:
        """Coalesce calls of ``flush``.

        Args:
            flush: Settles a batch of items: one outcome per item, in order.
            orphaned: Undoes the outcome of an item whose caller was cancelled meanwhile.
        """
        self.flush = flush
        self.orphaned = orphaned
        self.waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self.wake = asyncio.Event()
        self.flushers = 0

    async def submit(self, item: Item) -> Outcome:
        """Wait for the outcome of ``item``, settled in the next batch.

        Args:
            item: What to settle.

        Raises:
            LimitsUnavailable: When no flusher runs (before start-up, after shutdown).
        """
        if not self.flushers:
            raise LimitsUnavailable(SHUTTING_DOWN)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        self.wake.set()
        return await future

    async def run(self) -> None:
        """Flush batches until cancelled; what still waits then is refused with a 503."""
        self.flushers += 1
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                batch, self.waiting = self.waiting, []
                if batch:
                    await self.settle(batch)
        finally:
            self.flushers -= 1
            if not self.flushers:
                self.refuse_waiting()

    def refuse_waiting(self) -> None:
        """Fail every call still waiting (the last flusher stopped)."""
        batch, self.waiting = self.waiting, []
        for _, future in batch:
            if not future.done():
                future.set_exception(LimitsUnavailable(SHUTTING_DOWN))

    async def settle(self, batch: list[tuple[Item, asyncio.Future[Outcome]]]) -> None:
        """Flush one batch and hand each caller its outcome, or the error of the flush.

        Args:
            batch: The items and their callers' futures, in arrival order.
        """
        futures = [future for _, future in batch]
        try:
            outcomes = await self.flush([item for item, _ in batch])
        except Exception as error:
            fail(futures, error)
            return
        except BaseException:
            # Cancelled at shutdown mid-flush: the callers get the 503 of a limiter that stopped,
            # not a cancellation of their own (what the store did meanwhile stays counted).
            fail(futures, LimitsUnavailable(SHUTTING_DOWN))
            raise
        for future, outcome in zip(futures, outcomes, strict=True):
            await self.hand(future, outcome)

    async def hand(self, future: asyncio.Future[Outcome], outcome: Outcome) -> None:
        """Hand a caller its outcome; undo it if the caller has gone.

        Args:
            future: The caller's future.
            outcome: What the flush decided for it.
        """
        if not future.done():
            future.set_result(outcome)
        elif self.orphaned is not None:
            await self.orphaned(outcome)


def fail(futures: list[asyncio.Future[Outcome]], error: Exception) -> None:
    """Hand every waiting caller the flush's error.

    Args:
        futures: The callers' futures.
        error: What the flush raised.
    """
    for future in futures:
        if not future.done():
            future.set_exception(error)
