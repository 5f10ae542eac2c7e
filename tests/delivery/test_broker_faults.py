"""Worker processes delivering through RabbitMQ: the broker connection cut mid-run, a worker SIGKILLed mid-batch.

The workers reach the broker through a TCP proxy the test stops and starts again, and send
e-mail to a real SMTP server on loopback (aiosmtpd), which counts what arrives by Message-ID.
"""

import asyncio
import contextlib
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from httpx import AsyncClient

from fastapi1.broker.connection import Broker
from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.delivery.brokered import QUEUE
from tests.delivery.conftest import create, statuses, wait_final, wait_until
from tests.delivery.test_process import Workers, in_status, log_says
from tests.delivery.test_smtp import Mailbox, free_port
from tests.proxy import TcpProxy

# The order statuses may only move in: pending ones, then a final one.
RANK = {"created": 0, "sending": 1}
MESSAGE_ID = re.compile(r"<([0-9a-f-]{36})@")


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    handler = Mailbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def broker_workers(delivery_url: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(delivery_url, tmp_path)
    yield started
    started.stop_all()


@contextlib.asynccontextmanager
async def broker_proxy(broker: Broker) -> AsyncIterator[tuple[TcpProxy, dict[str, str]]]:
    """A proxy in front of the broker, and the environment of workers that go through it.

    The deliveries queue is declared on the test's own broker, so that its fixture deletes it.
    """
    await broker.declare(QUEUE)
    settings: Settings = broker.settings
    assert settings.broker_url is not None
    async with TcpProxy.to_address("127.0.0.1", 5672) as proxy:
        url = settings.broker_url.get_secret_value().replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        yield proxy, {"BROKER_URL": url, "BROKER_PREFIX": settings.broker_prefix}


class Watch:
    """Samples the stored statuses while the pipeline runs and notes any that moved backwards."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.seen: dict[str, tuple[int, int]] = {}
        self.backwards: list[str] = []
        self.samples = 0

    async def run(self) -> None:
        while True:
            for notification_id, row in (await statuses(self.database)).items():
                now = (RANK.get(row["status"], 2), row["attempts"])
                before = self.seen.get(notification_id)
                if before is not None and now < before:
                    self.backwards.append(f"{notification_id}: {before} -> {now}")
                if before is not None and before[0] == 2 and now != before:
                    self.backwards.append(f"{notification_id}: final changed {before} -> {now}")
                self.seen[notification_id] = now
            self.samples += 1
            await asyncio.sleep(0.05)


async def waves_across_a_cut(api: AsyncClient, proxy: TcpProxy) -> list[str]:
    """Create 8 waves of 100 notifications, 0.4 s apart; the broker is cut from the 4th to the 7th."""
    ids: list[str] = []
    for wave in range(8):
        if wave == 3:
            await proxy.stop()  # every broker connection cut, no new one accepted
        if wave == 6:
            await proxy.start()
        ids += await create(api, [f"user{wave}-{index}@example.com" for index in range(100)])
        await asyncio.sleep(0.4)
    return ids


async def test_a_cut_broker_connection_loses_nothing_and_sends_nothing_twice(
    api: AsyncClient,
    database: Database,
    broker: Broker,
    broker_workers: Workers,
    mailbox: tuple[Mailbox, int],
) -> None:
    received, smtp_port = mailbox
    async with broker_proxy(broker) as (proxy, environment):
        # The SMTP server is one Python thread: at a concurrency of 100 per worker, the backlog a cut
        # leaves behind made sends outlive their deadline (half the lease) and be sent again, a
        # provider timeout, not the broker. 20 each keeps it answering in time.
        environment |= {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "DELIVERY_CONCURRENCY": "20",
            "DELIVERY_LEASE_S": "30",
        }
        broker_workers.start(**environment)
        broker_workers.start(**environment)
        for index in range(2):
            await wait_until(lambda index=index: log_says(broker_workers, index, "Worker delivering"), within=30)
        watch = Watch(database)
        watching = asyncio.create_task(watch.run())
        try:
            ids = await waves_across_a_cut(api, proxy)
            rows = await wait_final(database, ids, within=90)
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    logs = broker_workers.log(0) + broker_workers.log(1)
    assert "Publish to" in logs, logs  # the cut was felt: publishes waited for the broker
    assert {row["status"] for row in rows.values()} == {"delivered"}
    sends = Counter(
        match.group(1) for _, message in received.received if (match := MESSAGE_ID.search(message["Message-ID"]))
    )
    assert set(sends) == set(ids)  # none lost
    assert [key for key, count in sends.items() if count > 1] == []  # none sent twice (no crash window here)
    assert watch.samples > 10
    assert watch.backwards == []


async def test_a_worker_killed_mid_batch_strands_nothing(
    api: AsyncClient, database: Database, broker: Broker, broker_workers: Workers
) -> None:
    async with broker_proxy(broker) as (_, environment):
        doomed = broker_workers.start(**environment, SIMULATOR_DELAY_MS="60000", DELIVERY_LEASE_S="4")
        await wait_until(lambda: log_says(broker_workers, 0, "Worker delivering"), within=30)
        ids = await create(api, [f"user{index}@example.com" for index in range(50)])

        async def taken() -> bool:
            return all(row["attempts"] == 1 for row in (await statuses(database, ids)).values())

        await wait_until(taken, within=10)
        assert await in_status(database, ids, "sending")
        doomed.kill()
        assert doomed.wait(timeout=10) == -signal.SIGKILL

        # Its unacked message goes to the heir, whose take finds the rows moved on and takes
        # nothing; the lease runs out, the rows are published again and delivered.
        broker_workers.start(**environment)
        rows = await wait_final(database, ids, within=40)
    assert {(row["status"], row["attempts"]) for row in rows.values()} == {("delivered", 2)}
