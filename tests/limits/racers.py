"""A process of its own that opens a limiter and, behind a barrier shared with others, races for it.

Started with multiprocessing's spawn context: a fresh interpreter, with its own engine or Redis
client, as a second API worker or instance would have.
"""

import asyncio
import multiprocessing
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.errors import DailyLimitExceeded, RateLimitExceeded
from fastapi1.limits import Limiter, open_limiter


async def attempt(limiter: Limiter, kind: str, target: uuid.UUID) -> bool:
    """One request (``requests``) or one notification (``sends``); whether it was admitted."""
    try:
        if kind == "requests":
            await limiter.check_request(target, "normal")
        else:
            await limiter.reserve_sends(target, 1)
    except (RateLimitExceeded, DailyLimitExceeded):
        return False
    return True


async def race_async(
    env: dict[str, str | None], limit: int, kind: str, target: uuid.UUID, calls: int, batched: bool, barrier: Barrier
) -> int:
    """Open a limiter, warm its connection up on another id, wait for the others, then make ``calls`` at once."""
    settings = Settings(
        database_url=env["database_url"],
        redis_url=env["redis_url"],
        redis_prefix=env["redis_prefix"],
        rate_limit_per_minute=limit,
        service_daily_limit=limit,
    )
    assert settings.database_url is not None
    database = Database.connect(settings.database_url, None, settings)
    try:
        async with open_limiter(settings, database, batched=batched) as limiter:
            await asyncio.gather(*(attempt(limiter, kind, uuid.uuid4()) for _ in range(4)))
            await asyncio.to_thread(barrier.wait, 60)
            admitted = await asyncio.gather(*(attempt(limiter, kind, target) for _ in range(calls)))
    finally:
        await database.dispose()
    return sum(admitted)


def race(
    env: dict[str, str | None],
    limit: int,
    kind: str,
    target: uuid.UUID,
    calls: int,
    batched: bool,
    barrier: Barrier,
    results: "Queue[int | str]",
) -> None:
    """The process's entry point: put the number of admitted calls on ``results`` (or what failed)."""
    try:
        results.put(asyncio.run(race_async(env, limit, kind, target, calls, batched, barrier)))
    except BaseException as error:
        results.put(repr(error))  # the test fails at once, with the reason, instead of waiting
        raise


def race_two_processes(env: dict[str, str | None], limit: int, kind: str, calls: int, batched: bool) -> None:
    """Two racer processes, ``calls`` each at once for one new key or service: together exactly ``limit``.

    Args:
        env: Where the store is (limits_env).
        limit: The rate or daily limit of both.
        kind: ``requests`` or ``sends``.
        calls: Calls of each process (together more than ``limit``).
        batched: Whether the limiters coalesce calls.
    """
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    target = uuid.uuid4()
    racers = [
        context.Process(target=race, args=(env, limit, kind, target, calls, batched, barrier, results))
        for _ in range(2)
    ]
    for racer in racers:
        racer.start()
    try:
        counts = [results.get(timeout=60) for _ in racers]
    finally:
        for racer in racers:
            racer.join(10)
            if racer.is_alive():
                racer.kill()
    assert sum(counts) == limit, counts
    assert [racer.exitcode for racer in racers] == [0, 0]
