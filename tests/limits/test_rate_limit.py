"""Requests per API key over a sliding window, on PostgreSQL and on Redis."""

import asyncio
import math
import time
import uuid

import pytest

from fastapi1.errors import RateLimitExceeded
from fastapi1.limits import Limiter
from fastapi1.limits.postgres_store import STEPS, PostgresStore
from tests.limits.conftest import LimiterFactory
from tests.limits.racers import race_two_processes


async def admitted(limiter: Limiter, key: uuid.UUID, calls: int) -> list[bool]:
    """Make ``calls`` requests of ``key`` at once; which were admitted, in call order."""

    async def one() -> bool:
        try:
            await limiter.check_request(key, "normal")
        except RateLimitExceeded:
            return False
        return True

    return list(await asyncio.gather(*(one() for _ in range(calls))))


def retry_afters(limiter: Limiter, seconds: float) -> set[str]:
    """The Retry-After a refusal may give when the oldest request leaves the window ``seconds`` after it was made.

    On Redis that, less the moment between the request and the refusal (up to 0.5 s here),
    rounded up. On PostgreSQL a request counts until its step's window ends, up to a step (a
    sixtieth of the window) longer: up to one more.
    """
    step = limiter.config.window_s / STEPS if isinstance(limiter.store, PostgresStore) else 0.0
    return {str(n) for n in range(math.ceil(seconds - 0.5), math.ceil(seconds + step) + 1)}


class TestAtTheLimit:
    async def test_admits_the_limit_and_refuses_the_next_request(self, make_limiter: LimiterFactory) -> None:
        async with make_limiter(rate_limit=5) as limiter:
            key = uuid.uuid4()
            for _ in range(5):
                await limiter.check_request(key, "normal")
            with pytest.raises(RateLimitExceeded):
                await limiter.check_request(key, "normal")

    async def test_the_refusal_is_notifys_429_with_the_key_type_and_the_limit(
        self, make_limiter: LimiterFactory
    ) -> None:
        async with make_limiter(rate_limit=3) as limiter:
            key = uuid.uuid4()
            await admitted(limiter, key, 3)
            with pytest.raises(RateLimitExceeded) as refused:
                await limiter.check_request(key, "test")
        assert refused.value.status_code == 429
        assert refused.value.message == "Exceeded rate limit for key type TEST of 3 requests per 60 seconds"
        # The oldest request leaves the window 60 s after it was made: a moment ago, so 60 rounded up.
        assert set(refused.value.headers) == {"Retry-After"}
        assert refused.value.headers["Retry-After"] in retry_afters(limiter, 60)

    async def test_keys_are_counted_apart(self, make_limiter: LimiterFactory) -> None:
        async with make_limiter(rate_limit=2) as limiter:
            first, second = uuid.uuid4(), uuid.uuid4()
            assert await admitted(limiter, first, 3) == [True, True, False]
            assert await admitted(limiter, second, 2) == [True, True]

    async def test_keys_in_one_batch_are_counted_apart(self, make_limiter: LimiterFactory) -> None:
        async with make_limiter(rate_limit=2) as limiter:
            first, second = uuid.uuid4(), uuid.uuid4()
            together = await asyncio.gather(admitted(limiter, first, 3), admitted(limiter, second, 2))
        assert together == [[True, True, False], [True, True]]

    @pytest.mark.parametrize("batched", [True, False])
    async def test_concurrent_requests_of_one_process_admit_exactly_the_limit(
        self, make_limiter: LimiterFactory, batched: bool
    ) -> None:
        async with make_limiter(rate_limit=40, batched=batched) as limiter:
            outcomes = await admitted(limiter, uuid.uuid4(), 70)
        assert sum(outcomes) == 40
        if batched:  # one batch, handed out in arrival order
            assert outcomes == [True] * 40 + [False] * 30


class TestSlidingWindow:
    async def test_a_request_stops_counting_once_it_left_the_window(self, make_limiter: LimiterFactory) -> None:
        async with make_limiter(rate_limit=3, window_s=1.5) as limiter:
            key = uuid.uuid4()
            started = time.monotonic()
            assert await admitted(limiter, key, 2) == [True, True]
            await asyncio.sleep(0.7)
            assert await admitted(limiter, key, 2) == [True, False]
            # The first two leave the window at 1.5 s, the third only at 2.2 s.
            await asyncio.sleep(max(0.0, started + 1.6 - time.monotonic()))
            assert await admitted(limiter, key, 3) == [True, True, False]

    async def test_keys_of_one_batch_are_admitted_again_window_after_window(self, make_limiter: LimiterFactory) -> None:
        async with make_limiter(rate_limit=3, window_s=0.5) as limiter:
            first, second = uuid.uuid4(), uuid.uuid4()
            for _ in range(3):
                together = await asyncio.gather(admitted(limiter, first, 4), admitted(limiter, second, 4))
                assert together == [[True, True, True, False]] * 2
                await asyncio.sleep(0.6)

    async def test_retry_after_is_when_the_oldest_counted_request_leaves_the_window(
        self, make_limiter: LimiterFactory
    ) -> None:
        async with make_limiter(rate_limit=1, window_s=5) as limiter:
            key = uuid.uuid4()
            await limiter.check_request(key, "team")
            with pytest.raises(RateLimitExceeded) as at_once:
                await limiter.check_request(key, "team")
            await asyncio.sleep(2.2)
            with pytest.raises(RateLimitExceeded) as later:
                await limiter.check_request(key, "team")
        assert at_once.value.headers["Retry-After"] in retry_afters(limiter, 5)
        assert later.value.headers["Retry-After"] in retry_afters(limiter, 5 - 2.2)
        assert later.value.message == "Exceeded rate limit for key type TEAM of 1 requests per 5 seconds"

    async def test_a_refused_request_is_not_counted(self, make_limiter: LimiterFactory) -> None:
        async with make_limiter(rate_limit=2, window_s=1) as limiter:
            key = uuid.uuid4()
            assert await admitted(limiter, key, 2) == [True, True]
            for _ in range(3):
                await asyncio.sleep(0.2)
                assert await admitted(limiter, key, 5) == [False] * 5
            # Had the refusals counted, the ones of 0.6 s ago would still fill the window.
            await asyncio.sleep(0.5)
            assert await admitted(limiter, key, 3) == [True, True, False]


class TestAcrossProcesses:
    @pytest.mark.parametrize("batched", [True, False])
    def test_two_processes_racing_for_one_key_admit_exactly_the_limit(
        self, limits_env: dict[str, str | None], batched: bool
    ) -> None:
        # Both processes make the new key's window (PostgreSQL) at once.
        race_two_processes(limits_env, 300, "requests", 165, batched)
