"""A process of its own that opens a limiter and, behind a barrier shared with others, races for it.

Started with multiprocessing's spawn context: a fresh interpreter, with its own engine or Redis
client, as a second API worker or instance would have.
"""

import asyncio
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
