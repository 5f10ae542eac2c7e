"""The batcher on its own: when batches leave, what they hold, bounds, failures, cancellation, shutdown."""

import asyncio
import functools
import logging
import time
from collections.abc import Sequence

import pytest
import uvloop

from fastapi1.errors import BackendFailed, Overloaded, ServiceUnavailable
from fastapi1.predictions.backends import BatchKey, MockBackend, Result, Row, call_backend
from fastapi1.predictions.batcher import Batcher, BatchPolicy
from tests.predictions.support import Call, RecordingBackend, batcher_over, until


def key(model: str = "m", agent_type: str | None = "lr", width: int = 1) -> BatchKey:
    return BatchKey("agents", model, agent_type, width)


def rows_of(call: Call) -> list[list[float]]:
    assert call.key.kind == "agents"
    return [list(row) for row in call.rows if not isinstance(row, str)]


class TestWhenBatchesLeave:
    async def test_a_full_group_leaves_at_once_without_waiting_for_its_timer(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=4, max_wait_s=60) as batcher, asyncio.timeout(5):
            answers = await asyncio.gather(*(batcher.run([(key(), [float(index)])]) for index in range(4)))
        assert answers == [[0.0], [1.0], [2.0], [3.0]]
        assert [len(call.rows) for call in backend.calls] == [4]

    async def test_a_request_larger_than_a_batch_is_cut_into_full_batches(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=4, max_wait_s=60) as batcher, asyncio.timeout(5):
            answers = await batcher.run([(key(), [float(index)]) for index in range(12)])
        assert answers == [float(index) for index in range(12)]
        assert sorted(len(call.rows) for call in backend.calls) == [4, 4, 4]

    async def test_a_group_short_of_full_leaves_when_its_oldest_row_has_waited(self) -> None:
        backend = RecordingBackend()
        loop = asyncio.get_running_loop()
        async with batcher_over(backend, max_size=100, max_wait_s=0.2) as batcher:
            first_at = loop.time()
            first = asyncio.create_task(batcher.run([(key(), [1.0])]))
            # An age gap between the two rows, not synchronisation: the batch must follow the older one.
            await until(lambda: loop.time() >= first_at + 0.1)
            second_at = loop.time()
            second = await batcher.run([(key(), [2.0])])
            assert (await first, second) == ([1.0], [2.0])
        (call,) = backend.calls
        assert rows_of(call) == [[1.0], [2.0]]
        assert first_at + 0.2 <= call.started_at < second_at + 0.2

    async def test_a_waiting_group_has_one_timer_however_many_requests_join_it(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=1_000, max_wait_s=60) as batcher:
            tickets = [batcher.admit([(key(), [0.0])])]
            (group,) = batcher.groups.values()
            timer = group.timer
            tickets += [batcher.admit([(key(), [float(index)])]) for index in range(1, 200)]
            assert group.timer is timer is not None
            assert batcher.queued_rows == 200
            for ticket in tickets:
                ticket.future.cancel()

    def test_a_deadline_already_past_is_rearmed_under_uvloop(self) -> None:
        # uvloop's call_at for a time already past returns a plain Handle (no when()): a loop that
        # lagged past a group's deadline made the next request to that group a 500.
        async def scenario() -> None:
            backend = RecordingBackend()
            async with batcher_over(backend, max_size=1_000, max_wait_s=60) as batcher:
                ticket = batcher.admit([(key(), [0.0])])
                (group,) = batcher.groups.values()
                for part in group.parts:
                    part.admitted_at -= 120  # the loop lagged: the deadline is behind us
                batcher._arm_timer(group)
                assert not isinstance(group.timer, asyncio.TimerHandle)  # uvloop's plain Handle
                batcher._arm_timer(group)  # the same deadline: kept, not read back from the handle
                assert await asyncio.wait_for(ticket.future, 5) == [0.0]

        uvloop.run(scenario())

    async def test_a_zero_wait_sends_each_request_as_it_comes(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=100, max_wait_s=0) as batcher:
            assert await batcher.run([(key(), [1.0]), (key(), [2.0])]) == [1.0, 2.0]
        assert [len(call.rows) for call in backend.calls] == [2]

    async def test_each_call_is_logged_with_its_rows_and_its_oldest_rows_wait(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        backend = RecordingBackend()
        with caplog.at_level(logging.INFO, logger="fastapi1.predictions.batcher"):
            async with batcher_over(backend, max_size=100, max_wait_s=0.05) as batcher:
                await asyncio.gather(batcher.run([(key(), [1.0]), (key(), [2.0])]), batcher.run([(key("b"), [3.0])]))
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Backend call for")]
        assert len(lines) == 2
        (m,) = (line for line in lines if "nn_model_name='m'" in line)
        (b,) = (line for line in lines if "nn_model_name='b'" in line)
        assert ": 2 rows in " in m
        assert ": 1 rows in " in b
        # each batch left when its oldest row had waited max_wait_s, not before
        waits = [float(line.rsplit("waited ", 1)[1].removesuffix(" s")) for line in lines]
        assert all(wait >= 0.049 for wait in waits)


class TestWhatABatchHolds:
    async def test_rows_of_different_keys_never_share_a_call(self) -> None:
        backend = RecordingBackend()
        keys = [key("a", "lr"), key("a", "ppo"), key("a", None), key("b", "lr"), key("b", None)]
        async with batcher_over(backend, max_size=3, max_wait_s=0.005) as batcher:
            requests = [
                [(keys[(client + agent) % len(keys)], [float((client + agent) % len(keys))]) for agent in range(7)]
                for client in range(20)
            ]
            answers = await asyncio.gather(*(batcher.run(items) for items in requests))
        assert answers == [[row[0] for _, row in items] for items in requests]
        for call in backend.calls:
            # Each row carries its key's index: one call, one key.
            assert len({row[0] for row in rows_of(call)}) == 1
            assert keys[int(rows_of(call)[0][0])] == call.key

    async def test_rows_of_different_lengths_never_share_a_matrix(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=64, max_wait_s=0.005) as batcher:
            items = [(key(width=width), [1.0] * width) for width in (1, 2, 3, 2, 1, 3)]
            assert await batcher.run(items) == [1.0, 2.0, 3.0, 2.0, 1.0, 3.0]
        assert sorted((call.key.width, len(call.rows)) for call in backend.calls) == [(1, 2), (2, 2), (3, 2)]
        for call in backend.calls:
            assert {len(row) for row in rows_of(call)} == {call.key.width}

    async def test_the_text_model_is_batched_under_its_own_key(self) -> None:
        backend = RecordingBackend()
        text = BatchKey("text", "text-mock", None, 0)
        async with batcher_over(backend, max_size=8, max_wait_s=0.005) as batcher:
            answers = await asyncio.gather(
                *(batcher.run([(text, f"input {index}")]) for index in range(5)),
                batcher.run([(key(), [1.0])]),
            )
        assert all(isinstance(answer[0], str) for answer in answers[:5])
        assert sorted((call.key.kind, len(call.rows)) for call in backend.calls) == [("agents", 1), ("text", 5)]


class TestConcurrencyBound:
    async def test_no_more_calls_are_in_flight_than_the_bound(self) -> None:
        backend = RecordingBackend()
        gate = backend.hold()
        async with batcher_over(backend, max_size=1, max_wait_s=0, max_concurrency=3) as batcher:
            requests = [asyncio.create_task(batcher.run([(key(), [float(index)])])) for index in range(10)]
            await until(lambda: backend.in_flight == 3)
            assert (batcher.in_flight, batcher.queued_rows, len(backend.calls)) == (3, 7, 3)
            gate.set()
            assert await asyncio.gather(*requests) == [[float(index)] for index in range(10)]
        assert (backend.most_in_flight, len(backend.calls)) == (3, 10)

    async def test_a_due_group_keeps_filling_while_every_slot_is_busy(self) -> None:
        backend = RecordingBackend()
        gate = backend.hold(lambda call: rows_of(call) == [[0.0]])
        async with batcher_over(backend, max_size=10, max_wait_s=0, max_concurrency=1) as batcher:
            first = asyncio.create_task(batcher.run([(key(), [0.0])]))
            await until(lambda: backend.in_flight == 1)
            later = [asyncio.create_task(batcher.run([(key(), [float(index)])])) for index in range(1, 6)]
            await until(lambda: batcher.queued_rows == 5)
            gate.set()
            await asyncio.gather(first, *later)
        assert [len(call.rows) for call in backend.calls] == [1, 5]

    async def test_a_slow_batch_delays_neither_another_key_nor_the_next_batch_of_its_own(self) -> None:
        backend = RecordingBackend()
        gate = backend.hold(lambda call: rows_of(call) == [[-1.0]])
        async with batcher_over(backend, max_size=1, max_wait_s=0) as batcher, asyncio.timeout(5):
            slow = asyncio.create_task(batcher.run([(key("m"), [-1.0])]))
            await until(lambda: backend.in_flight == 1)
            assert await batcher.run([(key("other"), [2.0])]) == [2.0]
            assert await batcher.run([(key("m"), [3.0])]) == [3.0]
            assert not slow.done()
            gate.set()
            assert await slow == [-1.0]


class TestBackPressure:
    async def test_a_request_that_does_not_fit_is_refused_whole_and_nothing_is_queued(self) -> None:
        backend = RecordingBackend()
        gate = backend.hold()
        async with batcher_over(backend, max_size=1, max_wait_s=0, max_concurrency=1, max_queue=5) as batcher:
            in_flight = asyncio.create_task(batcher.run([(key(), [0.0])]))
            await until(lambda: backend.in_flight == 1)
            waiting = asyncio.create_task(batcher.run([(key(), [1.0]), (key("n"), [2.0]), (key(), [3.0])]))
            await until(lambda: batcher.queued_rows == 3)
            groups = {group_key: group.rows for group_key, group in batcher.groups.items()}
            with pytest.raises(Overloaded) as refused:
                await batcher.run([(key("n"), [4.0]), (key("z"), [5.0]), (key(), [6.0])])
            assert int(refused.value.headers["Retry-After"]) >= 1
            assert batcher.queued_rows == 3
            assert {group_key: group.rows for group_key, group in batcher.groups.items()} == groups
            fits = asyncio.create_task(batcher.run([(key("n"), [7.0]), (key(), [8.0])]))
            await until(lambda: batcher.queued_rows == 5)
            gate.set()
            assert await asyncio.gather(in_flight, waiting, fits) == [[0.0], [1.0, 2.0, 3.0], [7.0, 8.0]]
        assert backend.rows_sent() == 6


class TestCancellation:
    async def test_a_call_whose_requests_all_left_is_abandoned_and_frees_its_slot(self) -> None:
        backend = RecordingBackend()
        gate = backend.hold()
        async with batcher_over(backend, max_size=1, max_wait_s=0, max_concurrency=1) as batcher:
            gone = asyncio.create_task(batcher.run([(key(), [1.0])]))
            await until(lambda: backend.in_flight == 1)
            gone.cancel()
            # The held call is cancelled and its only slot freed, before the backend answers.
            await until(lambda: batcher.in_flight == 0 and backend.in_flight == 0)
            gate.set()
            async with asyncio.timeout(5):
                assert await batcher.run([(key(), [2.0])]) == [2.0]
        assert len(backend.calls) == 2

    async def test_a_call_goes_on_while_one_of_its_requests_still_waits(self) -> None:
        backend = RecordingBackend()
        gate = backend.hold()
        async with batcher_over(backend, max_size=2, max_wait_s=60) as batcher:
            gone = asyncio.create_task(batcher.run([(key(), [1.0])]))
            staying = asyncio.create_task(batcher.run([(key(), [2.0])]))
            await until(lambda: backend.in_flight == 1)
            gone.cancel()
            await asyncio.sleep(0)
            gate.set()
            async with asyncio.timeout(5):
                assert await staying == [2.0]
        assert len(backend.calls) == 1

    async def test_a_cancellation_that_leaves_a_group_overdue_sends_it_at_once(self) -> None:
        # Found in review: the loop runs late, both rows are past their deadline before the
        # group's timer fires, and the oldest request is cancelled in that same loop turn.
        # Settling the group cancels its timer; without a dispatch the survivor would wait
        # for an unrelated event, forever on an idle server.
        async with batcher_over(RecordingBackend(), max_size=64, max_wait_s=0.02) as batcher:
            first = asyncio.create_task(batcher.run([(key(), [1.0])]))
            await asyncio.sleep(0)
            second = asyncio.create_task(batcher.run([(key(), [2.0])]))
            await asyncio.sleep(0)
            time.sleep(0.05)  # noqa: ASYNC251 -- the point: the event loop is busy past both deadlines
            first.cancel()
            async with asyncio.timeout(2):
                assert await second == [2.0]

    async def test_a_cancelled_request_leaves_the_queue_and_its_rows_are_never_sent(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=4, max_wait_s=60) as batcher:
            gone = asyncio.create_task(batcher.run([(key(), [-1.0]), (key("n"), [-2.0])]))
            await until(lambda: batcher.queued_rows == 2)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            await until(lambda: batcher.queued_rows == 0)
            assert (batcher.groups, batcher.due) == ({}, {})
            async with asyncio.timeout(5):
                assert await batcher.run([(key(), [float(index)]) for index in range(4)]) == [0.0, 1.0, 2.0, 3.0]
        assert [rows_of(call) for call in backend.calls] == [[[0.0], [1.0], [2.0], [3.0]]]

    async def test_a_cut_batch_whose_requests_were_all_cancelled_is_not_sent(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=2, max_wait_s=60) as batcher:
            request = asyncio.create_task(batcher.run([(key(), [1.0]), (key(), [2.0])]))
            # One loop turn: the request is admitted and its batch cut (a send task is created
            # and scheduled), but that task has not run yet.
            await asyncio.sleep(0)
            assert batcher.in_flight == 1
            request.cancel()
            await until(lambda: batcher.in_flight == 0)
        assert backend.calls == []

    async def test_a_cancelled_request_is_dropped_from_a_cut_batch_before_it_is_sent(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=2, max_wait_s=60) as batcher:
            cancelled = asyncio.create_task(batcher.run([(key(), [-1.0])]))
            kept = asyncio.create_task(batcher.run([(key(), [1.0])]))
            await asyncio.sleep(0)  # both admitted, their batch cut, not sent
            assert batcher.in_flight == 1
            cancelled.cancel()
            assert await kept == [1.0]
        assert [rows_of(call) for call in backend.calls] == [[[1.0]]]

    async def test_a_request_failed_by_one_batch_withdraws_its_other_rows(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=2, max_wait_s=60) as batcher:
            with pytest.raises(BackendFailed):
                await batcher.run([(key("mock-failure"), [1.0]), (key("mock-failure"), [2.0]), (key("n"), [3.0])])
            await until(lambda: batcher.queued_rows == 0)
            assert batcher.groups == {}
        assert [call.key.nn_model_name for call in backend.calls] == ["mock-failure"]


async def answer_none(key: BatchKey, rows: list[Row]) -> Sequence[Result]:
    return []


async def raise_key_error(key: BatchKey, rows: list[Row]) -> Sequence[Result]:
    raise KeyError("bug")


class TestFailures:
    async def test_a_failing_model_fails_only_its_batch(self) -> None:
        backend = RecordingBackend()
        async with batcher_over(backend, max_size=64, max_wait_s=0.005) as batcher:
            failed, answered = await asyncio.gather(
                batcher.run([(key("mock-failure"), [1.0])]), batcher.run([(key("good"), [2.0])]), return_exceptions=True
            )
        assert isinstance(failed, BackendFailed)
        assert failed.message == "Backend failed: model mock-failure fails every call"
        assert answered == [2.0]

    async def test_a_wrong_number_of_answers_fails_the_batch(self) -> None:
        async with Batcher(BatchPolicy(max_wait_s=0), answer_none) as batcher:
            with pytest.raises(BackendFailed, match="0 answers for 2 rows"):
                await batcher.run([(key(), [1.0]), (key(), [2.0])])

    async def test_a_call_past_the_timeout_fails_the_batch(self) -> None:
        backend = RecordingBackend()
        backend.hold()
        async with batcher_over(backend, max_wait_s=0, call_timeout_s=0.05) as batcher:
            with pytest.raises(BackendFailed, match=r"no answer within 0\.05 s"):
                await batcher.run([(key(), [1.0])])

    async def test_an_action_that_is_not_finite_fails_only_the_request_of_its_row(self) -> None:
        # Both requests' rows share one batch; only the overflowing row's request fails.
        async with batcher_over(MockBackend(0, 0), max_wait_s=0.05) as batcher:
            overflowing, fine = await asyncio.gather(
                batcher.run([(key(width=2), [1e308, 1e308])]),
                batcher.run([(key(width=2), [1.0, 2.0])]),
                return_exceptions=True,
            )
        assert isinstance(overflowing, BackendFailed)
        assert "not a finite number" in overflowing.message
        assert fine == [3.0]

    async def test_an_unexpected_error_fails_the_batch_is_logged_and_the_batcher_goes_on(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls = [raise_key_error, functools.partial(call_backend, MockBackend(0, 0))]

        async def call(batch_key: BatchKey, rows: list[Row]) -> Sequence[Result]:
            return await calls.pop(0)(batch_key, rows)

        async with Batcher(BatchPolicy(max_wait_s=0), call) as batcher:
            with caplog.at_level(logging.ERROR), pytest.raises(BackendFailed, match="unexpected KeyError"):
                await batcher.run([(key(), [1.0])])
            assert await batcher.run([(key(), [2.0])]) == [2.0]
        assert "KeyError: 'bug'" in caplog.text


class TestShutdown:
    async def test_stopping_answers_waiting_and_in_flight_requests_503_and_leaves_no_task(self) -> None:
        backend = RecordingBackend()
        backend.hold()
        batcher = batcher_over(backend, max_size=1, max_wait_s=0, max_concurrency=1)
        async with batcher:
            requests = [asyncio.create_task(batcher.run([(key(), [float(index)])])) for index in range(3)]
            await until(lambda: backend.in_flight == 1 and batcher.queued_rows == 2)
        outcomes = await asyncio.gather(*requests, return_exceptions=True)
        assert all(isinstance(outcome, ServiceUnavailable) for outcome in outcomes)
        assert (batcher.running, batcher.in_flight, backend.in_flight) == (set(), 0, 0)
        with pytest.raises(ServiceUnavailable):
            await batcher.run([(key(), [1.0])])
