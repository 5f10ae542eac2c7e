"""The worker's process: settings, logging, signals, and the tasks it owns until it stops.

Three claim loops run side by side: the delivery relay (the notifications outbox), the
prediction relay (async prediction jobs, through the same batcher and backend settings as the
API) and the receipt relay (delivery receipts to the services' callbacks). SIGTERM or SIGINT
(or the end of the parent's pipe, see ``--parent-fd``) stops all three; work in flight gets
``DELIVERY_SHUTDOWN_TIMEOUT_S`` to finish, what is still held is released for other workers,
and the process exits 0.
"""

import argparse
import asyncio
import contextlib
import logging.config
import signal
from collections.abc import AsyncIterator, Callable

import uvloop

from fastapi1.broker.connection import Broker, open_broker
from fastapi1.callbacks.relay import ReceiptRelay
from fastapi1.config import DeliverySettings, Settings, load_settings
from fastapi1.db.embedded import embedded_postgres_async
from fastapi1.db.engine import Database
from fastapi1.db.listen import asyncpg_dsn, listen
from fastapi1.delivery.brokered import BrokeredRelay
from fastapi1.delivery.controller import Relay
from fastapi1.delivery.dao import RECEIPTS_CHANNEL
from fastapi1.delivery.providers import Providers, configured_providers
from fastapi1.notifications.dao import CREATED_CHANNEL
from fastapi1.predictions import dao as predictions_dao
from fastapi1.predictions.consumer import serve_predictions
from fastapi1.predictions.controller import Gateway, open_gateway
from fastapi1.predictions.jobs import JobRelay
from fastapi1.worker.claims import ClaimLoop

logger = logging.getLogger(__name__)

# Seconds between reconnections of the LISTEN connection after an outage, and between its
# liveness checks; the claim loop's own retries are as quick.
LISTEN_RETRY_S = 1.0


async def claim_until_stopped(loop: ClaimLoop, database_url: str, channel: str) -> None:
    """Run a claim loop and the listener that wakes it, until :meth:`ClaimLoop.stop`.

    Args:
        loop: The claim loop.
        database_url: The database the listener listens on.
        channel: The channel whose NOTIFY wakes the loop.
    """
    async with asyncio.TaskGroup() as tasks:
        listener = tasks.create_task(listen(asyncpg_dsn(database_url), channel, loop.notify, LISTEN_RETRY_S))
        await loop.run()
        listener.cancel()


async def deliver_until_stopped(relay: Relay, database_url: str) -> None:
    """Run the delivery relay and its listener until :meth:`Relay.stop`.

    Args:
        relay: The relay.
        database_url: The database the listener listens on.
    """
    await claim_until_stopped(relay, database_url, CREATED_CHANNEL)


async def send_receipts_until_stopped(relay: ReceiptRelay, database_url: str) -> None:
    """Run the receipt relay and its listener until :meth:`ReceiptRelay.stop`.

    Args:
        relay: The relay.
        database_url: The database the listener listens on.
    """
    await claim_until_stopped(relay, database_url, RECEIPTS_CHANNEL)


async def predict_until_stopped(relay: JobRelay, database_url: str) -> None:
    """Run the prediction relay and its listener until :meth:`JobRelay.stop`.

    Args:
        relay: The relay.
        database_url: The database the listener listens on.
    """
    await claim_until_stopped(relay, database_url, predictions_dao.CREATED_CHANNEL)


@contextlib.asynccontextmanager
async def answering_predictions(
    broker: Broker | None, gateway: Gateway, delivery: DeliverySettings
) -> AsyncIterator[None]:
    """With a broker, answer the API processes' synchronous predictions through ``gateway`` during the block.

    The consumer stops (its requests in flight answered, up to the shutdown timeout) before the
    gateway closes.

    Args:
        broker: The broker; None answers nothing.
        gateway: The worker's batcher.
        delivery: ``PREDICTION_PREFETCH`` and the shutdown timeout.

    Yields:
        Control while the worker runs.
    """
    if broker is None:
        yield
        return
    consumer = await serve_predictions(broker, gateway, delivery.prediction_prefetch)
    logger.info("Worker answering predictions from the broker (prefetch %d)", delivery.prediction_prefetch)
    try:
        yield
    finally:
        await consumer.stop(delivery.delivery_shutdown_timeout_s)


def stop_on_parent_exit(loop: asyncio.AbstractEventLoop, parent_fd: int, stop: Callable[[], None]) -> None:
    """Call ``stop`` when the parent's end of a pipe closes, that is when the parent is gone.

    Args:
        loop: The running loop.
        parent_fd: The read end of a pipe whose write end only the parent holds.
        stop: What to call.
    """

    def parent_gone() -> None:
        loop.remove_reader(parent_fd)
        logger.warning("Parent process gone; stopping")
        stop()

    loop.add_reader(parent_fd, parent_gone)


def delivery_relay(
    broker: Broker | None,
    database: Database,
    settings: Settings,
    delivery: DeliverySettings,
    providers: Providers,
) -> Relay:
    """The delivery relay: through the broker when ``BROKER_URL`` is set.

    Args:
        broker: The worker's broker connection; None without a broker.
        database: Where the outbox is.
        settings: The broker's settings.
        delivery: The relay's settings.
        providers: Where messages go.

    Returns:
        The relay, not yet running.
    """
    if broker is None:
        return Relay(database, delivery, providers)
    return BrokeredRelay(database, delivery, providers, broker, settings.broker_prefetch)


async def run(
    settings: Settings, delivery: DeliverySettings, parent_fd: int | None = None, providers: Providers | None = None
) -> None:
    """Run the worker until a stop signal.

    Args:
        settings: Database settings (the embedded PostgreSQL when ``DATABASE_URL`` is unset), the broker
            (delivery goes through it when ``BROKER_URL`` is set), and the backend and batching settings
            of prediction jobs.
        delivery: The worker's settings.
        parent_fd: See :func:`stop_on_parent_exit`; None when the worker runs on its own.
        providers: Where messages go; the configured ones when None.
    """
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        url = settings.database_url
        if url is None:
            url = await stack.enter_async_context(embedded_postgres_async(settings.embedded_data_dir))
        database = Database.connect(url, None, settings)
        stack.push_async_callback(database.dispose)
        broker = await stack.enter_async_context(open_broker(settings)) if settings.broker_url is not None else None
        gateway = await stack.enter_async_context(open_gateway(settings))
        await stack.enter_async_context(answering_predictions(broker, gateway, delivery))
        relay = delivery_relay(broker, database, settings, delivery, providers or configured_providers(delivery))
        jobs = JobRelay(database, delivery, gateway)
        receipts = ReceiptRelay(database, settings, delivery, deliveries=relay)

        def stop() -> None:
            relay.stop()
            jobs.stop()
            receipts.stop()

        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop_signal, stop)
        if parent_fd is not None:
            stop_on_parent_exit(loop, parent_fd, stop)
        via = "through the broker" if settings.broker_url is not None else "directly"
        logger.info("Worker delivering %s (concurrency %d)", via, delivery.delivery_concurrency)
        logger.info("Worker predicting (concurrency %d)", delivery.prediction_concurrency)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(deliver_until_stopped(relay, url))
            tasks.create_task(predict_until_stopped(jobs, url))
            tasks.create_task(send_receipts_until_stopped(receipts, url))
    logger.info("Worker stopped")


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, configure logging and run the worker.

    Args:
        argv: Command-line arguments; ``sys.argv`` when None.
    """
    parser = argparse.ArgumentParser(prog="python -m fastapi1.worker", description=__doc__)
    parser.add_argument("--parent-fd", type=int, help="stop when this pipe's write end closes (set by fastapi1.serve)")
    arguments = parser.parse_args(argv)
    settings = load_settings()
    logging.config.fileConfig(settings.log_config, disable_existing_loggers=False)
    uvloop.run(run(settings, DeliverySettings(), arguments.parent_fd))
