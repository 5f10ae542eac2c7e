"""Delivery through RabbitMQ (the machine's, under a queue prefix of each test's own, deleted afterwards).

The relay publishes one message per claimed batch and marks the rows sending only once the broker
confirmed; consumers take rows with a compare-and-swap on the attempt, so duplicates change nothing.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from aio_pika.abc import AbstractIncomingMessage
from httpx import AsyncClient
from pydantic import SecretStr
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.broker.connection import Broker, open_broker
from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.delivery.brokered import QUEUE, Batch, BrokeredRelay, Poison
from tests.delivery.conftest import (
    RecordingProvider,
    RunBrokered,
    create,
    fast_settings,
    statuses,
    wait_final,
    wait_until,
)
from tests.proxy import TcpProxy


class CountingRelay(BrokeredRelay):
    """A brokered relay that counts the messages its consumer handled to the end."""

    handled = 0

    async def handle(self, message: AbstractIncomingMessage) -> None:
        await super().handle(message)
        type(self).handled += 1


@pytest.fixture
def counting() -> type[CountingRelay]:
    """A fresh CountingRelay class (the count is per class, so per test)."""
    return type("Counting", (CountingRelay,), {"handled": 0})


@contextlib.asynccontextmanager
async def publisher(database: Database, broker: Broker, **overrides: float) -> AsyncIterator[BrokeredRelay]:
    """A brokered relay that is not running: the test calls its claim (publish) itself."""
    relay = BrokeredRelay(database, fast_settings(**overrides), RecordingProvider().providers(), broker, 10)
    await broker.declare(QUEUE)
    yield relay


async def publish_all(relay: BrokeredRelay) -> None:
    """Claim and publish until nothing due is left."""
    async with asyncio.TaskGroup() as tasks:
        while await relay.claim(tasks):
            pass


async def waiting(broker: Broker) -> list[Batch]:
    """Take every message waiting in the deliveries queue (acked, so gone)."""
    queue = await broker.channel.get_queue(broker.topology.queue(QUEUE))
    batches = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        batches.append(Batch.decode(message.body))
    return batches


async def dead_letters(broker: Broker) -> list[bytes]:
    """Drain the dead-letter queue."""
    queue = await broker.channel.get_queue(broker.topology.dead_letter_queue)
    bodies = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        bodies.append(message.body)
    return bodies


class TestThroughTheBroker:
    async def test_each_simulated_recipient_ends_in_its_notify_status(
        self, api: AsyncClient, database: Database, run_brokered: RunBrokered
    ) -> None:
        expected = {
            "someone@example.com": ("delivered", 1),
            "+447700900123": ("delivered", 1),
            "perm-fail@simulator.notify": ("permanent-failure", 1),
            "temp-fail@simulator.notify": ("temporary-failure", 3),
            "+447700900003": ("temporary-failure", 3),
        }
        provider = RecordingProvider()
        async with run_brokered(provider.providers()):
            ids = await create(api, list(expected))
            rows = await wait_final(database, ids)
        for notification_id, (status, attempts) in zip(ids, expected.values(), strict=True):
            row = rows[notification_id]
            assert (row["status"], row["attempts"]) == (status, attempts)
            assert provider.sends[uuid.UUID(notification_id)] == attempts  # retries went back through the outbox
            assert row["completed_at"] >= row["sent_at"]

    async def test_notify_wakes_the_relay_and_a_notification_is_delivered_at_once(
        self, api: AsyncClient, database: Database, run_brokered: RunBrokered
    ) -> None:
        async with run_brokered(RecordingProvider().providers(), delivery_poll_interval_s=30.0):
            await asyncio.sleep(0.2)
            ids = await create(api, ["someone@example.com"])
            await wait_final(database, ids, within=5)  # far below the 30 s poll


class TestPublishing:
    async def test_one_message_per_claimed_batch_and_rows_sending_after_it(
        self, api: AsyncClient, database: Database, broker: Broker
    ) -> None:
        ids = await create(api, [f"user{index}@example.com" for index in range(250)])
        async with publisher(database, broker, delivery_batch_size=100, delivery_concurrency=100) as relay:
            await publish_all(relay)
        batches = await waiting(broker)
        assert sorted(len(batch.ids) for batch in batches) == [50, 100, 100]
        assert sorted(str(i) for batch in batches for i in batch.ids) == sorted(ids)
        assert {attempt for batch in batches for attempt in batch.attempts} == {0}
        rows = await statuses(database, ids)
        # Published, not yet taken: sending under the lease, no attempt started, not handed to a provider.
        assert {(row["status"], row["attempts"], row["sent_at"]) for row in rows.values()} == {("sending", 0, None)}

    async def test_a_message_never_names_more_rows_than_a_consumer_delivers_at_once(
        self, api: AsyncClient, database: Database, broker: Broker
    ) -> None:
        await create(api, [f"user{index}@example.com" for index in range(30)])
        async with publisher(database, broker, delivery_batch_size=100, delivery_concurrency=8) as relay:
            await publish_all(relay)
        assert sorted(len(batch.ids) for batch in await waiting(broker)) == [6, 8, 8, 8]

    async def test_the_rows_are_still_created_while_the_broker_confirms(
        self, api: AsyncClient, database: Database, broker: Broker
    ) -> None:
        ids = await create(api, ["a@example.com", "b@example.com"])
        seen_during_publish: list[set[str]] = []

        class Watching(Broker):
            async def publish(self, queue: str, body: bytes, **kwargs: object) -> None:
                seen_during_publish.append({row["status"] for row in (await statuses(database, ids)).values()})
                await super().publish(queue, body, **kwargs)  # type: ignore[arg-type]

        watching = Watching(broker.connection, broker.channel, broker.settings)
        async with publisher(database, watching) as relay:
            await publish_all(relay)
        broker.declared |= watching.declared  # deleted by the fixture
        assert seen_during_publish == [{"created"}]
        assert {row["status"] for row in (await statuses(database, ids)).values()} == {"sending"}

    async def test_a_publish_the_broker_never_confirms_leaves_the_rows_created_then_they_go(
        self, api: AsyncClient, database: Database, broker_settings: Settings
    ) -> None:
        ids = await create(api, ["a@example.com", "b@example.com"])
        url = broker_settings.broker_url
        assert url is not None
        async with TcpProxy.to_address("127.0.0.1", 5672) as proxy:
            proxied = url.get_secret_value().replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
            settings = broker_settings.model_copy(
                update={"broker_url": SecretStr(proxied), "broker_publish_timeout_s": 0.5}
            )
            async with open_broker(settings) as broker:
                try:
                    async with publisher(database, broker) as relay:
                        await proxy.stop()
                        async with asyncio.TaskGroup() as tasks:
                            assert await relay.claim(tasks) is False  # BrokerUnavailable, rolled back
                        rows = await statuses(database, ids)
                        assert {(row["status"], row["attempts"]) for row in rows.values()} == {("created", 0)}

                        await proxy.start()
                        await broker.connection.ready()
                        await publish_all(relay)
                    batches = await waiting(broker)
                    assert sorted(str(i) for batch in batches for i in batch.ids) == sorted(ids)
                    assert {row["status"] for row in (await statuses(database, ids)).values()} == {"sending"}
                finally:
                    await broker.delete_declared()

    async def test_a_lease_that_runs_out_before_the_message_is_consumed_publishes_again(
        self,
        api: AsyncClient,
        database: Database,
        broker: Broker,
        run_brokered: RunBrokered,
        counting: type[CountingRelay],
    ) -> None:
        ids = await create(api, [f"user{index}@example.com" for index in range(5)])
        async with publisher(database, broker, delivery_lease_s=0.3) as relay:
            await publish_all(relay)
            await asyncio.sleep(0.4)  # the lease runs out: no consumer took the message
            await publish_all(relay)
        first, second = await waiting(broker)
        assert first == second == Batch([uuid.UUID(i) for i in ids], [0] * 5)
        for index, batch in enumerate((first, second)):  # back into the queue, for the consumer
            await broker.publish(broker.topology.queue(QUEUE), batch.encode(), message_id=str(index))
        provider = RecordingProvider()
        async with run_brokered(provider.providers(), relay_class=counting):
            rows = await wait_final(database, ids)
            await wait_until(lambda: handled(counting, 2), within=10)
        # Both messages were consumed; the second took nothing: one send and one attempt each.
        assert {(row["status"], row["attempts"]) for row in rows.values()} == {("delivered", 1)}
        assert set(provider.sends.values()) == {1}
        assert len(provider.sends) == 5


async def handled(relay_class: type[CountingRelay], count: int) -> bool:
    return relay_class.handled >= count


class TestConsuming:
    async def test_duplicate_and_stale_messages_change_nothing(
        self,
        api: AsyncClient,
        database: Database,
        broker: Broker,
        run_brokered: RunBrokered,
        counting: type[CountingRelay],
    ) -> None:
        ids = await create(api, [f"user{index}@example.com" for index in range(5)])
        async with publisher(database, broker) as relay:
            await publish_all(relay)
        (batch,) = await waiting(broker)
        queue_name = broker.topology.queue(QUEUE)
        for copy in range(3):  # the message, as a lost confirm or a redelivery would repeat it
            await broker.publish(queue_name, batch.encode(), message_id=f"copy-{copy}")
        provider = RecordingProvider(delay_s=0.05)
        async with run_brokered(provider.providers(), relay_class=counting):
            rows = await wait_final(database, ids)
            await wait_until(lambda: handled(counting, 3), within=10)
            # And one arriving after the rows are final.
            await broker.publish(queue_name, batch.encode(), message_id="late")
            await wait_until(lambda: handled(counting, 4), within=10)
            assert await dead_letters(broker) == []
        assert {(row["status"], row["attempts"]) for row in rows.values()} == {("delivered", 1)}
        assert await statuses(database, ids) == rows  # the late one changed nothing, not even a timestamp
        assert len(provider.sends) == 5
        assert set(provider.sends.values()) == {1}

    async def test_a_message_consumed_before_its_relay_commits_is_taken_once_the_commit_lands(
        self, api: AsyncClient, database: Database, run_brokered: RunBrokered
    ) -> None:
        class SlowCommit(BrokeredRelay):
            async def publish(self, session: AsyncSession, rows: Sequence[Row[tuple[uuid.UUID, int]]]) -> None:
                await super().publish(session, rows)
                await asyncio.sleep(0.5)  # confirmed and marked, not committed: the consumer has the message

        provider = RecordingProvider()
        async with run_brokered(provider.providers(), relay_class=SlowCommit, delivery_lease_s=60.0):
            ids = await create(api, [f"user{index}@example.com" for index in range(20)])
            rows = await wait_final(database, ids, within=10)  # not after the 60 s lease
        assert {(row["status"], row["attempts"]) for row in rows.values()} == {("delivered", 1)}
        assert set(provider.sends.values()) == {1}

    async def test_a_message_that_is_not_a_batch_goes_to_the_dead_letter_queue(
        self, broker: Broker, run_brokered: RunBrokered, counting: type[CountingRelay]
    ) -> None:
        bad = [b"garbage", b'{"ids": [], "attempts": []}', b'{"ids": ["not-a-uuid"], "attempts": [0]}']
        async with run_brokered(RecordingProvider().providers(), relay_class=counting):
            await broker.declare(QUEUE)
            for index, body in enumerate(bad):
                await broker.publish(broker.topology.queue(QUEUE), body, message_id=f"bad-{index}")
            found: list[bytes] = []

            async def all_dead() -> bool:
                found.extend(await dead_letters(broker))
                return len(found) >= len(bad)

            await wait_until(all_dead, within=10, interval=0.05)
        assert sorted(found) == sorted(bad)
        assert counting.handled == 0

    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"[]",
            b'{"ids": ["00000000-0000-0000-0000-000000000001"]}',
            b'{"ids": ["00000000-0000-0000-0000-000000000001"], "attempts": [0, 1]}',
            b'{"ids": ["00000000-0000-0000-0000-000000000001"], "attempts": [-1]}',
            b'{"ids": ["00000000-0000-0000-0000-000000000001"], "attempts": [true]}',
            b'{"ids": [1], "attempts": [0]}',
        ],
    )
    def test_decoding_refuses_what_is_not_a_batch(self, body: bytes) -> None:
        with pytest.raises(Poison):
            Batch.decode(body)

    def test_a_batch_round_trips(self) -> None:
        batch = Batch([uuid.uuid4(), uuid.uuid4()], [0, 3])
        assert Batch.decode(batch.encode()) == batch

    async def test_the_consumer_delivers_no_more_at_once_than_the_delivery_concurrency(
        self, api: AsyncClient, database: Database, run_brokered: RunBrokered
    ) -> None:
        in_flight = peak = 0

        class Gauge(RecordingProvider):
            async def send(self, message: object) -> None:
                nonlocal in_flight, peak
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    await asyncio.sleep(0.02)
                finally:
                    in_flight -= 1

        async with run_brokered(Gauge().providers(), delivery_concurrency=7, delivery_batch_size=5):
            ids = await create(api, [f"user{index}@example.com" for index in range(100)])
            rows = await wait_final(database, ids)
        assert {row["status"] for row in rows.values()} == {"delivered"}
        assert peak == 7  # every slot used, none more


async def taken(database: Database, ids: list[str]) -> bool:
    return all(row["attempts"] == 1 for row in (await statuses(database, ids)).values())


class TestShutdown:
    async def test_deliveries_in_flight_finish_before_the_relay_stops(
        self, api: AsyncClient, database: Database, run_brokered: RunBrokered
    ) -> None:
        provider = RecordingProvider(delay_s=0.5)
        async with run_brokered(provider.providers()) as relay:
            ids = await create(api, [f"user{index}@example.com" for index in range(10)])
            await wait_until(lambda: taken(database, ids), within=10)
            relay.stop()
        assert {row["status"] for row in (await statuses(database, ids)).values()} == {"delivered"}

    async def test_deliveries_past_the_shutdown_timeout_are_released_for_other_workers(
        self, api: AsyncClient, database: Database, run_brokered: RunBrokered
    ) -> None:
        async with run_brokered(
            RecordingProvider(delay_s=30).providers(), delivery_shutdown_timeout_s=0.2, delivery_lease_s=300
        ) as relay:
            ids = await create(api, ["someone@example.com", "+447700900123"])
            await wait_until(lambda: taken(database, ids), within=10)
            relay.stop()
        rows = await statuses(database, ids)
        assert all(row["status"] == "sending" and row["attempts"] == 1 for row in rows.values())
        async with run_brokered(RecordingProvider().providers()):
            rows = await wait_final(database, ids, within=10)  # released: not after the 300 s lease
        assert all((row["status"], row["attempts"]) == ("delivered", 2) for row in rows.values())


class TestCutConnection:
    async def test_a_send_in_flight_when_the_connection_drops_finishes_and_is_not_sent_again(
        self, api: AsyncClient, database: Database, broker_settings: Settings, run_brokered: RunBrokered
    ) -> None:
        url = broker_settings.broker_url
        assert url is not None
        provider = RecordingProvider(delay_s=1.0)
        async with TcpProxy.to_address("127.0.0.1", 5672) as proxy:
            proxied = url.get_secret_value().replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
            settings = broker_settings.model_copy(update={"broker_url": SecretStr(proxied)})
            async with run_brokered(provider.providers(), settings=settings, delivery_lease_s=3.0):
                ids = await create(api, [f"user{index}@example.com" for index in range(10)])
                await wait_until(lambda: sent(provider, 10), within=10)
                # Every send is in flight; the channel that delivered the message goes away and
                # cancels its handler. The work goes on, commits, and the ack is what is lost.
                await proxy.stop()
                await asyncio.sleep(1.5)
                await proxy.start()
                rows = await wait_final(database, ids)
                await asyncio.sleep(4)  # past the lease: nothing stranded comes back
        assert {(row["status"], row["attempts"]) for row in (await statuses(database, ids)).values()} == {
            ("delivered", 1)
        }
        assert rows == await statuses(database, ids)
        assert set(provider.sends.values()) == {1}


async def sent(provider: RecordingProvider, count: int) -> bool:
    return len(provider.sends) >= count
