"""The broker core against the machine's RabbitMQ: confirms, acks, dead letters, a cut connection."""

import asyncio
import uuid
from collections.abc import Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr

from fastapi1.broker.connection import Broker, BrokerUnavailable, Poison, open_broker
from fastapi1.config import Settings
from tests.proxy import TcpProxy
from tests.scrapes import sample


async def dead_letters(broker: Broker) -> list[bytes]:
    """Drain the dead-letter queue and return the bodies found there."""
    bodies: list[bytes] = []
    queue = await broker.channel.get_queue(broker.topology.dead_letter_queue)
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        bodies.append(message.body)
    return bodies


async def first_dead_letters(broker: Broker, timeout_s: float) -> list[bytes]:
    """Wait until the dead-letter queue holds something, and return what it held."""
    async with asyncio.timeout(timeout_s):
        while not (found := await dead_letters(broker)):  # noqa: ASYNC110 (polls the broker, with a deadline)
            await asyncio.sleep(0.05)
    return found


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll a condition until it holds, or fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (polls a condition, with a deadline)
            await asyncio.sleep(0.02)


async def test_a_confirmed_message_reaches_the_consumer_and_is_acked(broker: Broker) -> None:
    queue = await broker.declare("work")
    received: list[bytes] = []

    async def handle(message: AbstractIncomingMessage) -> None:
        received.append(message.body)

    await broker.publish(queue.name, b'{"n": 1}', message_id="m1")
    consumer = await broker.consume("work", handle, prefetch=10)
    await eventually(lambda: received == [b'{"n": 1}'])
    await consumer.stop(timeout_s=5)
    declared = await broker.channel.declare_queue(queue.name, passive=True)
    assert declared.declaration_result.message_count == 0


async def test_work_queues_are_durable_quorum_queues_with_dead_letters(broker: Broker) -> None:
    queue = await broker.declare("work")
    assert queue.durable
    assert queue.arguments == broker.queue_arguments()
    assert broker.queue_arguments()["x-queue-type"] == "quorum"
    channel = await broker.connection.channel()
    with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
        # The broker holds the queue with those arguments: a classic redeclaration is refused.
        await channel.declare_queue(queue.name, durable=True)


async def test_a_poison_message_goes_to_the_dead_letter_queue_at_once(broker: Broker) -> None:
    queue = await broker.declare("work")
    calls = 0

    async def handle(message: AbstractIncomingMessage) -> None:
        nonlocal calls
        calls += 1
        raise Poison("not JSON")

    await broker.publish(queue.name, b"garbage", message_id="bad")
    consumer = await broker.consume("work", handle, prefetch=10)
    found = await first_dead_letters(broker, timeout_s=10)
    await consumer.stop(timeout_s=5)
    assert found == [b"garbage"]
    assert calls == 1


async def test_a_failing_message_is_dead_lettered_after_the_delivery_limit(broker_settings: Settings) -> None:
    settings = broker_settings.model_copy(update={"broker_delivery_limit": 2})
    async with open_broker(settings) as broker:
        try:
            queue = await broker.declare("work")
            calls = 0

            async def handle(message: AbstractIncomingMessage) -> None:
                nonlocal calls
                calls += 1
                raise RuntimeError("a bug in the handler")

            await broker.publish(queue.name, b"crashes", message_id="crash")
            consumer = await broker.consume("work", handle, prefetch=10)
            found = await first_dead_letters(broker, timeout_s=15)
            await consumer.stop(timeout_s=5)
            assert found == [b"crashes"]
            assert calls == 3  # the first delivery and two redeliveries
        finally:
            await broker.delete_declared()


async def test_an_unroutable_publish_is_an_error_not_a_silent_loss(broker: Broker) -> None:
    settings = broker.settings.model_copy(update={"broker_publish_timeout_s": 0.5})
    impatient = Broker(broker.connection, broker.channel, settings)
    with pytest.raises(BrokerUnavailable):
        await impatient.publish(f"{broker.topology.prefix}.missing-{uuid.uuid4().hex}", b"{}", message_id="lost")


async def test_publishes_wait_out_a_cut_connection_and_consumers_resume(broker_settings: Settings) -> None:
    url = broker_settings.broker_url
    assert url is not None
    async with TcpProxy.to_address("127.0.0.1", 5672) as proxy:
        proxied = url.get_secret_value().replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        settings = broker_settings.model_copy(update={"broker_url": SecretStr(proxied)})
        async with open_broker(settings) as broker:
            try:
                queue = await broker.declare("work")
                received: list[bytes] = []

                async def handle(message: AbstractIncomingMessage) -> None:
                    received.append(message.body)

                consumer = await broker.consume("work", handle, prefetch=10)
                await broker.publish(queue.name, b"before", message_id="1")
                await eventually(lambda: received == [b"before"])

                await proxy.stop()  # the connection is cut and no new one is accepted
                publish = asyncio.create_task(broker.publish(queue.name, b"during", message_id="2"))
                await asyncio.sleep(1.5)
                assert not publish.done()  # waiting for the broker, not failed, not lost
                await proxy.start()
                await asyncio.wait_for(publish, 15)
                await eventually(lambda: b"during" in received, timeout_s=15)
                await consumer.stop(timeout_s=5)
            finally:
                await broker.delete_declared()


async def test_a_publish_without_a_broker_for_too_long_is_503(broker_settings: Settings) -> None:
    url = broker_settings.broker_url
    assert url is not None
    async with TcpProxy.to_address("127.0.0.1", 5672) as proxy:
        proxied = url.get_secret_value().replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        settings = broker_settings.model_copy(
            update={"broker_url": SecretStr(proxied), "broker_publish_timeout_s": 1.0}
        )
        async with open_broker(settings) as broker:
            try:
                queue = await broker.declare("work")
                await proxy.stop()
                with pytest.raises(BrokerUnavailable) as raised:
                    await broker.publish(queue.name, b"x", message_id="x")
                assert raised.value.status_code == 503
                await proxy.start()
                await broker.connection.ready()
                await broker.publish(queue.name, b"y", message_id="y")  # and it recovers
            finally:
                await broker.delete_declared()


async def test_stop_lets_a_running_handler_finish_before_the_channel_closes(broker: Broker) -> None:
    queue = await broker.declare("work")
    started, finished = asyncio.Event(), asyncio.Event()

    async def handle(message: AbstractIncomingMessage) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.set()

    await broker.publish(queue.name, b"slow", message_id="slow")
    consumer = await broker.consume("work", handle, prefetch=10)
    await asyncio.wait_for(started.wait(), 10)
    await consumer.stop(timeout_s=5)
    assert finished.is_set()
    declared = await broker.channel.declare_queue(queue.name, passive=True)
    assert declared.declaration_result.message_count == 0  # acked, not redelivered


async def test_the_broker_url_is_required_and_reported_when_unreachable(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={"broker_url": SecretStr("amqp://guest:guest@127.0.0.1:1/"), "broker_connect_timeout_s": 1.0}
    )
    with pytest.raises(RuntimeError, match="BROKER_URL"):
        async with open_broker(unreachable):
            pass


async def test_publishes_and_settled_messages_are_counted_by_short_queue_name(broker: Broker) -> None:
    queue = await broker.declare("counted")
    published = sample("fastapi1_broker_published_total", queue="counted")
    acked = sample("fastapi1_broker_consumed_total", queue="counted", outcome="ack")
    rejected = sample("fastapi1_broker_consumed_total", queue="counted", outcome="reject")
    handled: list[bytes] = []

    async def handle(message: AbstractIncomingMessage) -> None:
        handled.append(message.body)
        if message.body == b"bad":
            raise Poison("bad")

    for body in (b"1", b"2", b"bad"):
        await broker.publish(queue.name, body, message_id=body.decode())
    consumer = await broker.consume("counted", handle, prefetch=10)
    await eventually(lambda: len(handled) == 3)
    await consumer.stop(timeout_s=5)
    assert sample("fastapi1_broker_published_total", queue="counted") == published + 3
    assert sample("fastapi1_broker_consumed_total", queue="counted", outcome="ack") == acked + 2
    assert sample("fastapi1_broker_consumed_total", queue="counted", outcome="reject") == rejected + 1
    assert broker.topology.label("amq.gen-Xyz") == "reply"  # server-named queues share one label
    await dead_letters(broker)
