"""The process pool that does the additions, rebuilt when a worker dies."""

import asyncio
import logging
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from fastapi1.additions import compute
from fastapi1.errors import Overloaded, ProcessingError
from fastapi1.metrics import COMPUTE_TASKS

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Below this many items a chunk is not worth a trip to another process on its own.
MIN_CHUNK = 2_000
CHUNKS_PER_WORKER = 2
# Outcomes of the pool's tasks (chunks) in fastapi1_compute_tasks_total.
OK, FAILED = "ok", "failed"
# Requests mapped on the pool at once, per worker: one computing, one whose chunks wait in the
# executor so a worker never idles between two requests. The rest wait in the bounded queue.
RUNNING_PER_WORKER = 2
BUSY = "Server busy, try again shortly."


class ComputePool:
    """A ProcessPoolExecutor reached with ``run_in_executor``, split work, and self-repair.

    Workers are started with ``forkserver``: forking the serving process itself (threads,
    an event loop, open sockets) is unsafe, and ``spawn`` would re-import the world.

    The workers, and through them the forkserver and the resource tracker, exit when the
    process that created the pool dies, however it dies (see :func:`compute.exit_with_owner`).
    A child that process forks without exec would inherit the write end of the owner pipe
    and keep the workers alive as long as it lives; subprocesses that exec do not.
    """

    def __init__(self, workers: int, queue_max: int = 64, queue_timeout_s: float = 10.0) -> None:
        """Create the executor; its processes start on first use (see :meth:`warm_up`).

        Args:
            workers: Number of worker processes.
            queue_max: Requests that may wait for a slot; one more is refused at once.
            queue_timeout_s: Seconds a request may wait for a slot before it is refused.
        """
        self.workers = workers
        self.queue_max = queue_max
        self.queue_timeout_s = queue_timeout_s
        self.slots = asyncio.Semaphore(workers * RUNNING_PER_WORKER)
        self.waiting = 0
        self.context = multiprocessing.get_context("forkserver")
        # Only this process holds the write end, and never writes: workers read end-of-file
        # on their copy of the read end when the kernel closes it, that is when we are gone.
        self.owner_alive_reader, self.owner_alive = self.context.Pipe(duplex=False)
        self.executor = self.new_executor()

    def new_executor(self) -> ProcessPoolExecutor:
        """Build a fresh executor.

        Returns:
            The executor.
        """
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self.context,
            initializer=compute.exit_with_owner,
            initargs=(self.owner_alive_reader,),
        )

    async def warm_up(self) -> None:
        """Start every worker now, so the first request does not pay for process start-up."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.executor, compute.warm_up) for _ in range(self.workers)))

    def chunk_bounds(self, size: int) -> list[tuple[int, int]]:
        """Cut ``size`` items into a few chunks per worker, none smaller than MIN_CHUNK.

        Args:
            size: Number of items.

        Returns:
            ``(start, stop)`` of each chunk, covering ``range(size)`` in order.
        """
        chunks = max(1, min(self.workers * CHUNKS_PER_WORKER, math.ceil(size / MIN_CHUNK)))
        step = math.ceil(size / chunks)
        return [(start, min(start + step, size)) for start in range(0, size, step)]

    async def acquire_slot(self) -> None:
        """Take one of the running slots, waiting in the bounded, timed queue when all are taken.

        Raises:
            Overloaded: When ``queue_max`` requests already wait, or no slot freed within ``queue_timeout_s``.
        """
        if not self.slots.locked():
            await self.slots.acquire()
            return
        if self.waiting >= self.queue_max:
            raise Overloaded(BUSY, retry_after=1)
        self.waiting += 1
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await self.slots.acquire()
        except TimeoutError:
            raise Overloaded(BUSY, retry_after=1) from None
        finally:
            self.waiting -= 1

    async def map_chunks(self, function: Callable[..., R], *columns: Sequence[T]) -> tuple[list[R], int, float]:
        """Run ``function`` on chunks of the columns in the pool, concurrently, once a slot is free.

        Args:
            function: A picklable function taking one slice of each column.
            columns: Equally long sequences, sliced together.

        Returns:
            The results per chunk in order, the number of chunks, and seconds spent waiting on the pool.

        Raises:
            Overloaded: When the queue in front of the pool is full or the wait was too long.
        """
        await self.acquire_slot()
        try:
            return await self.map_chunks_now(function, *columns)
        finally:
            self.slots.release()

    async def map_chunks_now(self, function: Callable[..., R], *columns: Sequence[T]) -> tuple[list[R], int, float]:
        """Run ``function`` on chunks of the columns in the pool, concurrently.

        Args:
            function: A picklable function taking one slice of each column.
            columns: Equally long sequences, sliced together.

        Returns:
            The results per chunk in order, the number of chunks, and seconds spent waiting on the pool.

        Raises:
            ProcessingError: When a worker died or the pool broke; the pool is rebuilt first.
        """
        loop = asyncio.get_running_loop()
        executor = self.executor
        bounds = self.chunk_bounds(len(columns[0]))
        started = time.perf_counter()
        try:
            results = await asyncio.gather(
                *(
                    loop.run_in_executor(executor, function, *(column[start:stop] for column in columns))
                    for start, stop in bounds
                )
            )
        except BrokenProcessPool as error:
            COMPUTE_TASKS.labels(FAILED).inc(len(bounds))
            self.replace_broken(executor)
            raise ProcessingError("Processing failed: a worker process died; the request can be retried") from error
        COMPUTE_TASKS.labels(OK).inc(len(bounds))
        return list(results), len(bounds), time.perf_counter() - started

    def replace_broken(self, broken: ProcessPoolExecutor) -> None:
        """Swap in a new executor unless a concurrent request already did.

        Args:
            broken: The executor that failed.
        """
        if self.executor is broken:
            logger.error("Process pool broken (a worker died); starting a new one")
            self.executor = self.new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop the workers, cancelling queued work, then close the owner pipe."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.owner_alive.close()
        self.owner_alive_reader.close()
