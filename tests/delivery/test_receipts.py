"""Delivery receipts end to end: a real receiver on loopback, the delivery and receipt relays as a worker runs them."""

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient

from fastapi1.callbacks.relay import ReceiptRelay
from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.delivery.providers import configured_providers
from tests.delivery.conftest import RunBrokered, RunRelay, fast_settings, wait_final, wait_until
from tests.delivery.receipts import (
    Receiver,
    RunReceipts,
    free_port,
    receipt_states,
    running_receipts,
    send_to,
    service_with_callback,
    serving,
)
from tests.delivery.test_process import Workers

PROVIDERS = configured_providers(fast_settings())


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver that answers 200, serving."""
    async with serving(Receiver(free_port())) as running:
        yield running


@pytest.fixture
def run_receipts(delivery_url: str, settings: Settings) -> RunReceipts:
    """Start a receipt relay on the test's database: ``async with run_receipts(**delivery_settings)``."""

    def run(deliveries: Any = None, **overrides: Any) -> contextlib.AbstractAsyncContextManager[ReceiptRelay]:
        database_settings = settings.model_copy(update={"database_url": delivery_url})
        return running_receipts(delivery_url, database_settings, deliveries, **overrides)

    return run


async def all_in(database: Database, ids: list[str], state: str) -> bool:
    """Whether every notification of ``ids`` has a receipt in ``state``."""
    states = await receipt_states(database, ids)
    return len(states) == len(ids) and all(found == state for found, _ in states.values())


class TestReceipts:
    async def test_every_final_status_sends_notifys_receipt_with_the_bearer_token(
        self, api: AsyncClient, database: Database, receiver: Receiver, run_relay: RunRelay, run_receipts: RunReceipts
    ) -> None:
        service = await service_with_callback(api, receiver.url, token="receiver-secret-1")
        recipients = ["ada@example.com", "perm-fail@simulator.notify", "temp-fail@simulator.notify", "07700900123"]
        ids = await send_to(api, service, recipients)
        async with run_relay(PROVIDERS), run_receipts():
            rows = await wait_final(database, ids)
            await wait_until(lambda: all_in(database, ids, "sent"), within=20)
        received = receiver.by_id()
        assert set(received) == set(ids)
        expected = {
            ids[0]: ("delivered", "email"),
            ids[1]: ("permanent-failure", "email"),
            ids[2]: ("temporary-failure", "email"),
            ids[3]: ("delivered", "sms"),
        }
        for notification_id, (status, kind) in expected.items():
            receipt = received[notification_id]
            assert receipt.path == "/receipts"
            assert receipt.headers["authorization"] == "Bearer receiver-secret-1"
            assert receipt.headers["content-type"] == "application/json"
            assert receipt.body["status"] == status == rows[notification_id]["status"]
            assert receipt.body["notification_type"] == kind
            assert set(receipt.body) == {
                "id",
                "reference",
                "to",
                "status",
                "created_at",
                "completed_at",
                "sent_at",
                "notification_type",
                "template_id",
                "template_version",
            }
            assert receipt.body["to"] == recipients[ids.index(notification_id)]
            assert receipt.body["completed_at"] is not None

    async def test_a_service_without_a_callback_owes_no_receipt(
        self, api: AsyncClient, database: Database, run_relay: RunRelay
    ) -> None:
        service = await api.post("/services/v1/", json={"name": "silent"})
        ids = await send_to_unkeyed(api, ["ada@example.com"])
        async with run_relay(PROVIDERS):
            await wait_final(database, ids)
        assert service.status_code == 201
        assert await receipt_states(database, ids) == {}

    async def test_a_receiver_that_fails_then_recovers_gets_every_receipt(
        self, api: AsyncClient, database: Database, run_relay: RunRelay, run_receipts: RunReceipts
    ) -> None:
        async with serving(Receiver(free_port(), fail_first=2)) as flaky:
            service = await service_with_callback(api, flaky.url)
            ids = await send_to(api, service, ["ada@example.com"])
            async with run_relay(PROVIDERS), run_receipts(callback_max_attempts=5):
                await wait_until(lambda: all_in(database, ids, "sent"), within=20)
        assert (await receipt_states(database, ids))[ids[0]] == ("sent", 3)
        assert flaky.attempts == 3

    async def test_a_receiver_that_always_fails_is_given_up_after_the_last_attempt(
        self, api: AsyncClient, database: Database, run_relay: RunRelay, run_receipts: RunReceipts
    ) -> None:
        async with serving(Receiver(free_port(), mode="fail")) as failing:
            service = await service_with_callback(api, failing.url)
            ids = await send_to(api, service, ["ada@example.com"])
            async with run_relay(PROVIDERS), run_receipts(callback_max_attempts=3):
                await wait_until(lambda: all_in(database, ids, "failed"), within=20)
        assert (await receipt_states(database, ids))[ids[0]] == ("failed", 3)
        assert failing.attempts == 3

    async def test_a_receiver_that_is_down_then_comes_back_gets_the_receipt(
        self, api: AsyncClient, database: Database, run_relay: RunRelay, run_receipts: RunReceipts
    ) -> None:
        port = free_port()
        down = Receiver(port)
        service = await service_with_callback(api, down.url)
        ids = await send_to(api, service, ["ada@example.com"])
        async with run_relay(PROVIDERS), run_receipts(callback_max_attempts=50, callback_retry_base_s=0.05):
            await wait_until(lambda: attempted(database, ids, 2), within=20)
            async with serving(down):
                await wait_until(lambda: all_in(database, ids, "sent"), within=20)
        assert down.by_id().keys() == set(ids)

    async def test_a_hanging_receiver_is_cut_off_and_never_slows_delivery(
        self, api: AsyncClient, database: Database, run_relay: RunRelay, run_receipts: RunReceipts
    ) -> None:
        async with serving(Receiver(free_port(), mode="hang")) as hanging:
            service = await service_with_callback(api, hanging.url)
            first = await send_to(api, service, [f"early{n}@example.com" for n in range(20)])
            async with run_relay(PROVIDERS), run_receipts(callback_timeout_s=0.5, callback_max_attempts=50):
                await wait_final(database, first)
                await wait_until(lambda: attempted(database, first, 1), within=10)
                # Receipts hang on the receiver; new notifications are delivered as fast as ever.
                started = time.monotonic()
                later = await send_to(api, service, [f"late{n}@example.com" for n in range(200)])
                await wait_final(database, later, within=10)
                assert time.monotonic() - started < 10
                hanging.mode = "ok"
                await wait_until(lambda: all_in(database, first + later, "sent"), within=30)

    async def test_an_endless_answer_is_read_only_up_to_the_bound(
        self, api: AsyncClient, database: Database, run_relay: RunRelay, run_receipts: RunReceipts
    ) -> None:
        async with serving(Receiver(free_port(), mode="endless")) as endless:
            service = await service_with_callback(api, endless.url)
            ids = await send_to(api, service, ["ada@example.com"])
            async with run_relay(PROVIDERS), run_receipts(callback_timeout_s=5.0, callback_max_response_bytes=1_000):
                elapsed = await wait_until(lambda: all_in(database, ids, "sent"), within=20)
        # A 200 whose answer never ends is done once the bound is read, long before the timeout.
        assert (await receipt_states(database, ids))[ids[0]] == ("sent", 1)
        assert elapsed < 5

    async def test_a_redirect_is_not_followed(
        self, api: AsyncClient, database: Database, run_relay: RunRelay, run_receipts: RunReceipts
    ) -> None:
        async with serving(Receiver(free_port(), mode="redirect")) as redirecting:
            service = await service_with_callback(api, redirecting.url)
            ids = await send_to(api, service, ["ada@example.com"])
            async with run_relay(PROVIDERS), run_receipts(callback_max_attempts=2):
                await wait_until(lambda: all_in(database, ids, "failed"), within=20)
        assert [item.path for item in redirecting.received] == ["/receipts", "/receipts"]

    async def test_a_removed_callback_sends_nothing_more(
        self, api: AsyncClient, database: Database, receiver: Receiver, run_relay: RunRelay, run_receipts: RunReceipts
    ) -> None:
        service = await service_with_callback(api, receiver.url)
        ids = await send_to(api, service, ["ada@example.com"])
        async with run_relay(PROVIDERS):
            await wait_final(database, ids)
        assert (await api.delete(f"/services/v1/{service.id}/callbacks")).status_code == 204
        async with run_receipts():
            await wait_until(lambda: all_in(database, ids, "failed"), within=20)
        assert receiver.received == []


async def attempted(database: Database, ids: list[str], attempts: int) -> bool:
    """Whether every receipt of ``ids`` exists and has been tried at least ``attempts`` times."""
    states = await receipt_states(database, ids)
    return len(states) == len(ids) and all(tried >= attempts for _, tried in states.values())


async def send_to_unkeyed(api: AsyncClient, recipients: list[str]) -> list[str]:
    """Notifications of no service (development, no token); their ids."""
    response = await api.post("/notifications/v1/multiple", json=[{"to": to} for to in recipients])
    assert response.status_code == 201, response.text
    await asyncio.sleep(0)
    return [item["id"] for item in response.json()]


@pytest.fixture
def workers(delivery_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes on the test's database, killed after the test."""
    started = Workers(delivery_url, tmp_path)
    yield started
    started.stop_all()


class Backlog:
    """Stands for a delivery relay that has notifications waiting, or not."""

    backlogged = True


class TestDeliveriesFirst:
    async def test_while_deliveries_are_backlogged_receipts_are_claimed_once_a_second(
        self, api: AsyncClient, database: Database, receiver: Receiver, run_relay: RunRelay, run_receipts: RunReceipts
    ) -> None:
        service = await service_with_callback(api, receiver.url)
        ids = await send_to(api, service, [f"user{n}@example.com" for n in range(30)])
        async with run_relay(PROVIDERS):
            await wait_final(database, ids)
        backlog = Backlog()
        async with run_receipts(deliveries=backlog, callback_concurrency=5, callback_batch_size=5):
            await wait_until(lambda: sent_at_least(database, ids, 5), within=10)
            await asyncio.sleep(1.5)
            # One claim of 5 a second: after the first, one more at most in the 1.5 s that followed.
            assert len([state for state, _ in (await receipt_states(database, ids)).values() if state == "sent"]) <= 10
            backlog.backlogged = False
            await wait_until(lambda: all_in(database, ids, "sent"), within=10)


async def sent_at_least(database: Database, ids: list[str], count: int) -> bool:
    """Whether at least ``count`` receipts of ``ids`` are sent."""
    return sum(1 for state, _ in (await receipt_states(database, ids)).values() if state == "sent") >= count


class TestWorkerKilled:
    async def test_a_worker_killed_before_the_receipts_went_out_loses_none(
        self, api: AsyncClient, database: Database, workers: Workers
    ) -> None:
        down = Receiver(free_port())  # nobody listens yet: every receipt stays owed
        service = await service_with_callback(api, down.url)
        retries = {"CALLBACK_RETRY_BASE_S": "0.05", "CALLBACK_RETRY_MAX_S": "0.2", "CALLBACK_LEASE_S": "2"}
        doomed = workers.start(CALLBACK_MAX_ATTEMPTS="1000", **retries)
        ids = await send_to(api, service, [f"user{n}@example.com" for n in range(30)])
        await wait_final(database, ids, within=30)
        await wait_until(lambda: attempted(database, ids, 1), within=30)
        doomed.kill()
        assert doomed.wait(timeout=10) == -signal.SIGKILL
        assert set(await receipt_states(database, ids)) == set(ids)
        async with serving(down):
            workers.start(CALLBACK_MAX_ATTEMPTS="1000", **retries)
            await wait_until(lambda: all_in(database, ids, "sent"), within=60)
        assert down.by_id().keys() == set(ids)


class TestThroughTheBroker:
    async def test_receipts_follow_deliveries_made_through_rabbitmq(
        self,
        api: AsyncClient,
        database: Database,
        receiver: Receiver,
        run_brokered: RunBrokered,
        run_receipts: RunReceipts,
    ) -> None:
        service = await service_with_callback(api, receiver.url)
        ids = await send_to(api, service, [f"user{n}@example.com" for n in range(50)] + ["perm-fail@simulator.notify"])
        async with run_brokered(PROVIDERS), run_receipts():
            rows = await wait_final(database, ids)
            await wait_until(lambda: all_in(database, ids, "sent"), within=30)
        received = receiver.by_id()
        assert {key: item.body["status"] for key, item in received.items()} == {
            key: row["status"] for key, row in rows.items()
        }


class TestAddresses:
    async def test_an_unreachable_first_address_falls_back_to_the_next(
        self,
        api: AsyncClient,
        database: Database,
        receiver: Receiver,
        run_relay: RunRelay,
        run_receipts: RunReceipts,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from fastapi1.callbacks import relay as relay_module
        from fastapi1.callbacks.urls import Target, UrlRules

        url = f"http://receiver.test:{receiver.port}/receipts"

        async def resolved_ipv6_first(callback_url: str, rules: UrlRules) -> Target:
            # The receiver listens on 127.0.0.1 only: ::1 (listed first, as a resolver may) refuses.
            assert callback_url == url
            return Target("receiver.test", receiver.port, ("::1", "127.0.0.1"))

        monkeypatch.setattr(relay_module, "resolve", resolved_ipv6_first)
        service = await service_with_callback(api, url)
        ids = await send_to(api, service, ["ada@example.com"])
        async with run_relay(PROVIDERS), run_receipts():
            await wait_until(lambda: all_in(database, ids, "sent"), within=20)
        (received,) = receiver.received
        assert received.headers["host"] == f"receiver.test:{receiver.port}"
        assert (await receipt_states(database, ids))[ids[0]] == ("sent", 1)
