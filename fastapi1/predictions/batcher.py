"""The micro-batcher: rows of concurrent requests grouped by key, sent to the backend in batches.

Everything runs on one event loop, so the state is plain data structures and the hot path
takes no lock.

- **Groups.** Each key has a group: the *parts* waiting for it (one request's rows for that
  key) in arrival order, in an ``OrderedDict`` so that a part can leave from anywhere in O(1)
  when its request goes away, and the head (the oldest row) is at hand in O(1).
- **When a group is due.** When it holds ``max_size`` rows, or its oldest row has waited
  ``max_wait_s``. A group that is not due has exactly one timer, at its oldest row's deadline:
  no timer per request, and none at all for a group that fills up first.
- **Sending.** Due groups queue, in the order they fell due, for one of ``max_concurrency``
  call slots. A batch is cut from a group only when a slot is free, so a group that fell due
  while every slot was busy keeps filling up to ``max_size`` instead of leaving as a small
  sealed batch. A group still due after a cut goes to the back of the queue, so keys take
  turns. Each batch is its own task in the batcher's TaskGroup: a slow batch delays no other
  key, and a key's next batch can leave while its previous one is in flight.
- **Answers** are split back by position: each part knows where its rows sit in its request.
  A failed call (error, timeout, wrong count) fails the requests in that batch only; a
  :class:`RowFailed` answer for one row fails only the request that row belongs to.
- **Back-pressure.** A request is admitted whole or not at all: if its rows would take the
  rows waiting past ``max_queue`` it gets :class:`~fastapi1.errors.Overloaded` with a
  ``Retry-After`` estimated from recent call durations.
- **Cancellation.** A request that is cancelled (client gone) or failed (another of its
  batches failed) withdraws its unsent rows at once. Rows of a request that ended are also
  skipped when a batch is cut or sent, so a batch whose rows were all cancelled never
  reaches the backend.
"""

import asyncio
import functools
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

from fastapi1.config import Settings
from fastapi1.errors import BackendFailed, Overloaded, ServiceUnavailable
from fastapi1.metrics import PREDICTION_QUEUE_ROWS, record_backend_call
from fastapi1.predictions.backends import BackendError, RowFailed

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")
T = TypeVar("T")

# Weight of the newest call in the moving average that estimates Retry-After.
CALL_SECONDS_SMOOTHING = 0.2


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When batches leave and how much may wait."""

    max_size: int = 64
    max_wait_s: float = 0.020
    max_concurrency: int = 64
    max_queue: int = 100_000
    call_timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Read the policy from the ``BATCH_*`` and ``BACKEND_TIMEOUT_S`` settings.

        Args:
            settings: The service settings.
        """
        return cls(
            max_size=settings.batch_max_size,
            max_wait_s=settings.batch_max_wait_ms / 1000,
            max_concurrency=settings.batch_max_concurrency,
            max_queue=settings.batch_max_queue,
            call_timeout_s=settings.backend_timeout_s,
        )


@dataclass(eq=False, slots=True)
class Ticket(Generic[K, R, T]):
    """One request: its result slots, filled by position as its batches come back."""

    future: asyncio.Future[list[T]]
    results: list[T | None]
    missing: int
    parts: list["Part[K, R, T]"] = field(default_factory=list)

    def fill(self, positions: Sequence[int], results: Sequence[T | RowFailed]) -> None:
        """Store results at their positions; answer the request when none is missing.

        Args:
            positions: Where the rows sat in the request.
            results: Their results, in the same order; a RowFailed fails the request.
        """
        if self.future.done():
            return
        for position, result in zip(positions, results, strict=True):
            if isinstance(result, RowFailed):
                self.future.set_exception(BackendFailed(f"Backend failed: {result.reason}"))
                return
            self.results[position] = result
        self.missing -= len(positions)
        if not self.missing:
            self.future.set_result(cast(list[T], self.results))


@dataclass(eq=False, slots=True)
class Part(Generic[K, R, T]):
    """A request's rows for one key, cut into batches front to back."""

    ticket: Ticket[K, R, T]
    group: "Group[K, R, T]"
    rows: list[R]
    positions: list[int]
    admitted_at: float
    taken: int = 0


@dataclass(eq=False, slots=True)
class Group(Generic[K, R, T]):
    """The parts waiting for one key, oldest first."""

    key: K
    parts: OrderedDict[Part[K, R, T], None] = field(default_factory=OrderedDict)
    rows: int = 0
    # A Handle, not always a TimerHandle: uvloop's call_at for a time already past schedules
    # the callback with call_soon and returns a plain Handle, which has no when().
    timer: asyncio.Handle | None = None
    timer_at: float = 0.0


Segment = tuple[Part[K, R, T], int, int]


def split_by_key(items: Sequence[tuple[K, R]]) -> dict[K, tuple[list[R], list[int]]]:
    """Group a request's rows by key, remembering each row's position.

    Args:
        items: ``(key, row)`` pairs in request order.

    Returns:
        For each key, its rows and their positions, in request order.
    """
    split: dict[K, tuple[list[R], list[int]]] = {}
    for position, (key, row) in enumerate(items):
        entry = split.get(key)
        if entry is None:
            entry = split[key] = ([], [])
        entry[0].append(row)
        entry[1].append(position)
    return split


class Abandonment:
    """Cancels a batch's task once every request with rows in it has ended (a context manager)."""

    def __init__(self, batch: asyncio.Task[None], requests: set[asyncio.Future[Any]]) -> None:
        """Watch the requests of one batch.

        Args:
            batch: The task making the batch's call.
            requests: The futures of the requests with rows in the batch.
        """
        self.batch = batch
        self.requests = requests
        self.watching = False
        self.abandoned = False

    def __enter__(self) -> Self:
        """Start watching."""
        self.watching = True
        for request in self.requests:
            request.add_done_callback(self.on_request_done)
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop watching; a callback already scheduled then does nothing.

        Args:
            exc_info: The exception leaving the block, if any.
        """
        self.watching = False
        for request in self.requests:
            request.remove_done_callback(self.on_request_done)

    def on_request_done(self, _: asyncio.Future[Any]) -> None:
        """Cancel the call when this was the last request waiting for it."""
        if self.watching and all(request.done() for request in self.requests):
            self.watching = False
            self.abandoned = True
            self.batch.cancel()


class Batcher(Generic[K, R, T]):
    """Batches rows by key across concurrent requests; an async context manager owning its tasks."""

    def __init__(
        self,
        policy: BatchPolicy,
        call: Callable[[K, list[R]], Awaitable[Sequence[T | RowFailed]]],
        labels: Callable[[K], tuple[str, str | None]] | None = None,
    ) -> None:
        """Prepare an idle batcher; ``async with`` starts and stops it.

        Args:
            policy: Batch size, wait, concurrency, queue bound and call timeout.
            call: Sends one batch of rows sharing a key; one result per row.
            labels: The model name and agent type of a key, for the backend metrics; None records none.
        """
        self.policy = policy
        self.call = call
        self.labels = labels
        self.groups: dict[K, Group[K, R, T]] = {}
        # Due groups, in the order they fell due: the queue for call slots.
        self.due: OrderedDict[Group[K, R, T], None] = OrderedDict()
        self.tickets: set[Ticket[K, R, T]] = set()
        self.tasks = asyncio.TaskGroup()
        self.running: set[asyncio.Task[None]] = set()
        self.queued_rows = 0
        self.in_flight = 0
        self.accepting = False
        self.call_seconds = 1.0

    async def __aenter__(self) -> Self:
        """Start accepting requests."""
        await self.tasks.__aenter__()
        self.accepting = True
        return self

    async def __aexit__(
        self, error_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Stop: waiting requests get 503, batches in flight are cancelled and awaited.

        Args:
            error_type: Type of the exception that ends the block, if any.
            error: That exception.
            traceback: Its traceback.
        """
        self.accepting = False
        for group in self.groups.values():
            self._cancel_timer(group)
        self.groups.clear()
        self.due.clear()
        for ticket in list(self.tickets):
            if not ticket.future.done():
                ticket.future.set_exception(ServiceUnavailable("The prediction service is shutting down"))
        for task in self.running:
            task.cancel()
        PREDICTION_QUEUE_ROWS.dec(self.queued_rows)
        self.queued_rows = 0
        # The block's own exception is the caller's to see, not wrapped in the group's.
        await self.tasks.__aexit__(None, None, None)

    async def run(self, items: Sequence[tuple[K, R]]) -> list[T]:
        """Send every row in a batch of its key and answer in the order of ``items``.

        Args:
            items: ``(key, row)`` pairs of one request.
        """
        if not items:
            return []
        return await self.admit(items).future

    def admit(self, items: Sequence[tuple[K, R]]) -> Ticket[K, R, T]:
        """Queue all of a request's rows, or none.

        Args:
            items: ``(key, row)`` pairs of one request.

        Returns:
            The request's ticket, answered when all its rows are.

        Raises:
            ServiceUnavailable: When the batcher is stopping.
            Overloaded: When the rows would not fit in the queue.
        """
        if not self.accepting:
            raise ServiceUnavailable("The prediction service is shutting down")
        if self.queued_rows + len(items) > self.policy.max_queue:
            raise Overloaded(
                f"Prediction queue full (rows waiting: {self.queued_rows}); retry later", self._retry_after()
            )
        loop = asyncio.get_running_loop()
        ticket: Ticket[K, R, T] = Ticket(loop.create_future(), [None] * len(items), len(items))
        now = loop.time()
        for key, (rows, positions) in split_by_key(items).items():
            self._enqueue(ticket, key, rows, positions, now)
        self.queued_rows += len(items)
        PREDICTION_QUEUE_ROWS.inc(len(items))
        self.tickets.add(ticket)
        ticket.future.add_done_callback(functools.partial(self._on_ticket_done, ticket))
        self._dispatch()
        return ticket

    def _enqueue(self, ticket: Ticket[K, R, T], key: K, rows: list[R], positions: list[int], now: float) -> None:
        """Append a request's rows to the group of their key.

        Args:
            ticket: The request.
            key: What the rows share.
            rows: The rows.
            positions: Their positions in the request.
            now: The admission time.
        """
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key)
        part = Part(ticket, group, rows, positions, now)
        group.parts[part] = None
        group.rows += len(rows)
        ticket.parts.append(part)
        self._settle(group, now)

    def _deadline(self, group: Group[K, R, T]) -> float:
        """When the group's oldest row has waited long enough.

        Args:
            group: A group with parts.

        Returns:
            The loop time of the deadline.
        """
        return next(iter(group.parts)).admitted_at + self.policy.max_wait_s

    def _settle(self, group: Group[K, R, T], now: float) -> None:
        """Put a group where its state says: gone when empty, queued when due, else timed.

        Args:
            group: A group whose rows changed or whose timer fired.
            now: The current loop time.
        """
        if not group.parts:
            self._forget(group)
        elif group.rows >= self.policy.max_size or self._deadline(group) <= now:
            self._cancel_timer(group)
            self.due[group] = None
        else:
            self.due.pop(group, None)
            self._arm_timer(group)

    def _arm_timer(self, group: Group[K, R, T]) -> None:
        """Keep one timer per waiting group, at its oldest row's deadline.

        Args:
            group: A group that is not due.
        """
        deadline = self._deadline(group)
        if group.timer is not None:
            if group.timer_at == deadline:
                return
            group.timer.cancel()
        group.timer = asyncio.get_running_loop().call_at(deadline, self._on_deadline, group, deadline)
        group.timer_at = deadline

    def _cancel_timer(self, group: Group[K, R, T]) -> None:
        """Drop the group's timer, if any.

        Args:
            group: The group.
        """
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None

    def _on_deadline(self, group: Group[K, R, T], deadline: float) -> None:
        """The oldest row of a group has waited ``max_wait_s``: the group is due.

        Args:
            group: The group whose timer fired.
            deadline: The time the timer was set for.
        """
        group.timer = None
        # Not loop.time() alone: the loop may run a timer up to its clock resolution early.
        self._settle(group, max(asyncio.get_running_loop().time(), deadline))
        self._dispatch()

    def _forget(self, group: Group[K, R, T]) -> None:
        """Drop an empty group.

        Args:
            group: The group.
        """
        self._cancel_timer(group)
        self.due.pop(group, None)
        if self.groups.get(group.key) is group:
            del self.groups[group.key]

    def _dispatch(self) -> None:
        """Cut and send batches from due groups while call slots are free."""
        while self.due and self.in_flight < self.policy.max_concurrency and self.accepting:
            group, _ = self.due.popitem(last=False)
            segments = self._cut(group)
            self._settle(group, asyncio.get_running_loop().time())
            if segments:
                self.in_flight += 1
                task = self.tasks.create_task(self._send(group.key, segments))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    def _cut(self, group: Group[K, R, T]) -> list[Segment[K, R, T]]:
        """Take up to ``max_size`` rows from the front of a group.

        Args:
            group: A due group.

        Returns:
            ``(part, start, stop)`` slices of the rows taken, oldest first.
        """
        segments: list[Segment[K, R, T]] = []
        room = self.policy.max_size
        while room and group.parts:
            part = next(iter(group.parts))
            if part.ticket.future.done():
                # Ended a moment ago; its done-callback, which withdraws it, has not run yet.
                self._withdraw(part)
                continue
            segments.append(self._take(part, room))
            room -= segments[-1][2] - segments[-1][1]
        return segments

    def _take(self, part: Part[K, R, T], room: int) -> Segment[K, R, T]:
        """Take the next rows of a part, at most ``room``.

        Args:
            part: The group's head part.
            room: Rows the batch can still hold.
        """
        start = part.taken
        part.taken = min(len(part.rows), start + room)
        count = part.taken - start
        part.group.rows -= count
        self.queued_rows -= count
        PREDICTION_QUEUE_ROWS.dec(count)
        if part.taken == len(part.rows):
            del part.group.parts[part]
        return part, start, part.taken

    def _withdraw(self, part: Part[K, R, T]) -> None:
        """Remove a part's unsent rows from its group.

        Args:
            part: A part whose request ended.
        """
        left = len(part.rows) - part.taken
        if left:
            part.taken = len(part.rows)
            del part.group.parts[part]
            part.group.rows -= left
            self.queued_rows -= left
            PREDICTION_QUEUE_ROWS.dec(left)

    def _on_ticket_done(self, ticket: Ticket[K, R, T], future: asyncio.Future[list[T]]) -> None:
        """A request was answered, failed or cancelled: whatever it still had queued leaves.

        Args:
            ticket: The request.
            future: Its future, now done.
        """
        self.tickets.discard(ticket)
        if not self.accepting:
            return
        now = asyncio.get_running_loop().time()
        for part in ticket.parts:
            if part.taken < len(part.rows):
                self._withdraw(part)
                self._settle(part.group, now)
        # Settling may find a group due at once (its new oldest row is past its deadline, and
        # its timer, if it was about to fire, is cancelled): send it now, not at the next event.
        self._dispatch()

    async def _send(self, key: K, segments: list[Segment[K, R, T]]) -> None:
        """Send one batch, skipping rows whose request ended since the cut; free the slot after.

        Args:
            key: What the rows share.
            segments: The rows, as slices of parts.
        """
        try:
            live = [segment for segment in segments if not segment[0].ticket.future.done()]
            if live:
                await self._call_unless_abandoned(key, live)
        finally:
            self.in_flight -= 1
            self._dispatch()

    async def _call_unless_abandoned(self, key: K, segments: list[Segment[K, R, T]]) -> None:
        """Make the call, but give up (and free the slot) as soon as no request waits for it.

        Without this a wave of disconnects would hold every call slot until the backend answers
        or ``call_timeout_s`` runs out, while the requests still waiting queue behind them.

        Args:
            key: What the rows share.
            segments: The rows, as slices of parts.
        """
        batch = asyncio.current_task()
        assert batch is not None
        with Abandonment(batch, {part.ticket.future for part, _, _ in segments}) as watch:
            try:
                await self._call_and_deliver(key, segments)
            except asyncio.CancelledError:
                # Ours alone: swallow it. Anyone else's (shutdown) goes on.
                if not watch.abandoned or batch.uncancel() > 0:
                    raise

    async def _call_and_deliver(self, key: K, segments: list[Segment[K, R, T]]) -> None:
        """Call the backend and hand each request its results, or fail the batch's requests.

        Args:
            key: What the rows share.
            segments: The rows, as slices of parts.
        """
        rows = [row for part, start, stop in segments for row in part.rows[start:stop]]
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.policy.call_timeout_s):
                results = await self.call(key, rows)
            if len(results) != len(rows):
                raise BackendError(f"{len(results)} answers for {len(rows)} rows")
        except Exception as error:  # any failure of a call fails its batch, never the batcher's TaskGroup
            self._record(key, len(rows), failed=True)
            self._fail(segments, self._reason(key, len(rows), error))
            return
        finally:
            self.call_seconds += CALL_SECONDS_SMOOTHING * (loop.time() - started - self.call_seconds)
        self._record(key, len(rows), failed=False)
        # One line per call, so batching shows from outside (the predict benchmark counts these).
        logger.info(
            "Backend call for %r: %d rows in %.3f s; its oldest row waited %.3f s",
            key,
            len(rows),
            loop.time() - started,
            started - min(part.admitted_at for part, _, _ in segments),
        )
        offset = 0
        for part, start, stop in segments:
            part.ticket.fill(part.positions[start:stop], results[offset : offset + stop - start])
            offset += stop - start

    def _record(self, key: K, rows: int, *, failed: bool) -> None:
        """Count a backend call that ended (one given up because its clients left is not counted).

        Args:
            key: The batch's key.
            rows: Rows in the batch.
            failed: Whether the call failed.
        """
        if self.labels is not None:
            nn_model_name, agent_type = self.labels(key)
            record_backend_call(nn_model_name, agent_type, rows, failed=failed)

    def _reason(self, key: K, rows: int, error: Exception) -> str:
        """Log a failed call once and say why it failed, in words fit for its clients.

        Args:
            key: The batch's key.
            rows: Rows in the batch.
            error: What the call raised.
        """
        if isinstance(error, BackendError):
            reason = str(error)
        elif isinstance(error, TimeoutError):
            reason = f"no answer within {self.policy.call_timeout_s:g} s"
        else:
            logger.error("Backend call for %r (%d rows) raised", key, rows, exc_info=error)
            return f"unexpected {type(error).__name__}"
        logger.warning("Backend call for %r (%d rows) failed: %s", key, rows, reason)
        return reason

    def _fail(self, segments: list[Segment[K, R, T]], reason: str) -> None:
        """Fail every request with rows in a failed batch.

        Args:
            segments: The batch's rows.
            reason: Why it failed.
        """
        for part, _, _ in segments:
            if not part.ticket.future.done():
                # One exception per request: an exception raised in many tasks shares one traceback.
                part.ticket.future.set_exception(BackendFailed(f"Backend failed: {reason}"))

    def _retry_after(self) -> int:
        """Estimate, in whole seconds, how long the waiting rows take to drain.

        Returns:
            At least 1.
        """
        rounds = math.ceil((self.queued_rows + 1) / (self.policy.max_size * self.policy.max_concurrency))
        return max(1, math.ceil(rounds * self.call_seconds))
