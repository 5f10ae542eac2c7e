"""Notifications per service per UTC day, on PostgreSQL and on Redis."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi1.errors import DailyLimitExceeded
from fastapi1.limits import Limiter, Reservation
from tests.limits.conftest import LimiterFactory
from tests.limits.racers import race_two_processes


async def reserved(limiter: Limiter, service_id: uuid.UUID, *counts: int) -> list[Reservation | None]:
    """Reserve each count at once; the reservations, None for a refused one, in call order."""

    async def one(count: int) -> Reservation | None:
        try:
            return await limiter.reserve_sends(service_id, count)
        except DailyLimitExceeded:
            return None

    return list(await asyncio.gather(*(one(count) for count in counts)))


async def room(limiter: Limiter, service_id: uuid.UUID, limit: int) -> int:
    """How many notifications the service may still send today (found by reserving, then released)."""
    for free in range(limit, 0, -1):
        (reservation,) = await reserved(limiter, service_id, free)
        if reservation is not None:
            await reservation.release()
            return free
    return 0


def seconds_to_utc_midnight() -> float:
    """Seconds from now until the next UTC midnight, by this host's clock."""
    now = datetime.now(UTC)
    return (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now).total_seconds()


class TestReserve:
    async def test_reservations_are_all_or_nothing_up_to_the_limit(self, make_limiter: LimiterFactory) -> None:
        async with make_limiter(daily_limit=10) as limiter:
            service_id = uuid.uuid4()
            counts = [
                reservation.count if reservation else None
                for reservation in [*await reserved(limiter, service_id, 6), *await reserved(limiter, service_id, 5)]
            ]
            assert counts == [6, None]
            assert [r.count if r else None for r in await reserved(limiter, service_id, 4, 1)] == [4, None]
            assert await room(limiter, service_id, 10) == 0

    async def test_a_batch_decides_each_service_in_arrival_order(self, make_limiter: LimiterFactory) -> None:
        async with make_limiter(daily_limit=10) as limiter:
            service_id, other = uuid.uuid4(), uuid.uuid4()
            together = await asyncio.gather(
                reserved(limiter, service_id, 4, 7, 3, 2, 1), reserved(limiter, other, 10, 1)
            )
            assert [[r.count if r else None for r in calls] for calls in together] == [
                [4, None, 3, 2, 1],
                [10, None],
            ]

    async def test_more_than_the_limit_at_once_is_refused_and_reserves_nothing(
        self, make_limiter: LimiterFactory
    ) -> None:
        async with make_limiter(daily_limit=10) as limiter:
            service_id = uuid.uuid4()
            assert await reserved(limiter, service_id, 11) == [None]
            assert await room(limiter, service_id, 10) == 10

    async def test_the_refusal_is_notifys_429_with_retry_after_until_utc_midnight(
        self, make_limiter: LimiterFactory
    ) -> None:
        async with make_limiter(daily_limit=3) as limiter:
            service_id = uuid.uuid4()
            await limiter.reserve_sends(service_id, 3)
            with pytest.raises(DailyLimitExceeded) as refused:
                await limiter.reserve_sends(service_id, 1)
        assert refused.value.status_code == 429
        assert refused.value.message == "Exceeded send limits (3) for today"
        assert abs(int(refused.value.headers["Retry-After"]) - seconds_to_utc_midnight()) < 3

    async def test_zero_notifications_reserve_nothing_and_a_negative_count_is_a_bug(
        self, make_limiter: LimiterFactory
    ) -> None:
        async with make_limiter(daily_limit=1) as limiter:
            service_id = uuid.uuid4()
            await (await limiter.reserve_sends(service_id, 0)).release()
            with pytest.raises(ValueError, match="cannot reserve -1"):
                await limiter.reserve_sends(service_id, -1)
            assert await room(limiter, service_id, 1) == 1


class TestRelease:
    async def test_released_notifications_can_be_reserved_again_and_the_count_stays_exact(
        self, make_limiter: LimiterFactory
    ) -> None:
        async with make_limiter(daily_limit=10) as limiter:
            service_id = uuid.uuid4()
            first, second, _ = await reserved(limiter, service_id, 3, 4, 3)
            assert first is not None
            assert second is not None
            await second.release()
            await second.release()  # a second release gives nothing back twice
            assert await room(limiter, service_id, 10) == 4
            await first.release()
            assert await room(limiter, service_id, 10) == 7

    async def test_a_caller_cancelled_while_its_batch_is_decided_gets_nothing_reserved(
        self, make_limiter: LimiterFactory
    ) -> None:
        async with make_limiter(daily_limit=5) as limiter:
            service_id = uuid.uuid4()
            caller = asyncio.create_task(limiter.reserve_sends(service_id, 5))
            # Submitted in the same turn, so decided in the same batch, after the cancelled call.
            marker = asyncio.create_task(limiter.reserve_sends(uuid.uuid4(), 1))
            await asyncio.sleep(0)  # both wait for their batch
            caller.cancel()
            await marker
            assert caller.cancelled()
            assert await room(limiter, service_id, 5) == 5


class TestDayBoundary:
    async def test_a_new_utc_day_is_a_fresh_count_and_a_late_release_goes_to_its_own_day(
        self, make_limiter: LimiterFactory
    ) -> None:
        # The store's clock shifted to 1.5 s before the next UTC midnight (the database's or Redis's clock).
        offset = seconds_to_utc_midnight() - 1.5
        async with make_limiter(daily_limit=4, clock_offset_s=offset) as limiter:
            service_id = uuid.uuid4()
            yesterday = await limiter.reserve_sends(service_id, 4)
            with pytest.raises(DailyLimitExceeded) as refused:
                await limiter.reserve_sends(service_id, 1)
            assert refused.value.headers["Retry-After"] in {"1", "2"}
            await asyncio.sleep(2)
            today = await limiter.reserve_sends(service_id, 4)
            assert today.day == yesterday.day + timedelta(days=1)
            await yesterday.release()
            assert await room(limiter, service_id, 4) == 0


class TestAcrossProcesses:
    @pytest.mark.parametrize("batched", [True, False])
    def test_two_processes_racing_for_one_service_reserve_exactly_the_limit(
        self, limits_env: dict[str, str | None], batched: bool
    ) -> None:
        race_two_processes(limits_env, 50, "sends", 40, batched)


LIMIT = 20
# Each step: counts reserved at once (decided in call order), or the release of a live reservation.
steps = st.lists(
    st.one_of(
        st.lists(st.integers(1, 12), min_size=1, max_size=4).map(lambda counts: ("reserve", counts)),
        st.integers(0, 50).map(lambda pick: ("release", [pick])),
    ),
    max_size=12,
)


class Model:
    """What the count should be after each step, and the reservations one may release."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.service_id = uuid.uuid4()
        self.live: list[Reservation] = []
        self.count = 0

    async def reserve(self, counts: list[int]) -> None:
        """Reserve the counts at once: each fits or not, in call order, as if made one after another."""
        for count, reservation in zip(counts, await reserved(self.limiter, self.service_id, *counts), strict=True):
            assert (reservation is not None) == (self.count + count <= LIMIT), (self.count, count)
            if reservation is not None:
                self.live.append(reservation)
                self.count += count

    async def release(self, pick: int) -> None:
        """Release one live reservation, if any."""
        if self.live:
            reservation = self.live.pop(pick % len(self.live))
            await reservation.release()
            self.count -= reservation.count


class TestProperties:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=steps)
    async def test_reserves_and_releases_never_exceed_the_limit_nor_go_negative(
        self, make_limiter: LimiterFactory, steps: list[tuple[str, list[int]]]
    ) -> None:
        async with make_limiter(daily_limit=LIMIT) as limiter:
            model = Model(limiter)
            for action, values in steps:
                await (model.reserve(values) if action == "reserve" else model.release(values[0]))
            assert 0 <= model.count <= LIMIT
            assert await room(limiter, model.service_id, LIMIT) == LIMIT - model.count
