"""Mails/s to a local aiosmtpd server: one connection per mail against fastapi1's connection pool.

Both sides build the same message (:meth:`fastapi1.delivery.providers.Smtp.build`); "per mail"
sends it with ``aiosmtplib.send`` (connect, EHLO, MAIL, RCPT, DATA, QUIT each time, what the
provider did before the pool), "pooled" with :meth:`Smtp.send`. The rounds alternate in one
run, so both see the same machine.

    .venv/bin/python scripts/measure_smtp.py [--mails 2000] [--concurrency 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosmtplib
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi1.config import DeliverySettings  # noqa: E402
from fastapi1.delivery.providers import Message, Smtp  # noqa: E402


class Sink:
    """Accepts every mail and counts them and the connections they came over."""

    def __init__(self) -> None:
        """Start counting from zero."""
        self.mails = 0
        self.peers: set[object] = set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        """Count the mail.

        Args:
            server: The server.
            session: The connection.
            envelope: The mail.

        Returns:
            The reply.
        """
        self.mails += 1
        self.peers.add(session.peer)
        return "250 OK"


async def rate(send: Callable[[Message], Awaitable[None]], mails: int, concurrency: int) -> float:
    """Mails/s of ``mails`` sends, ``concurrency`` at a time.

    Args:
        send: Sends one message.
        mails: How many.
        concurrency: In flight at most.

    Returns:
        Mails per second.
    """
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with slots:
            await send(Message(uuid.uuid4(), f"user{index}@example.com", "Subject", "Body\n"))

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(mails)))
    return mails / (time.perf_counter() - started)


async def measure(port: int, sink: Sink, mails: int, concurrency: int, rounds: int) -> None:
    """Alternate the two ways for ``rounds`` rounds and print each round and the medians.

    Args:
        port: The server's port.
        sink: The server's handler.
        mails: Mails per round.
        concurrency: Sends in flight.
        rounds: Rounds of each.
    """
    settings = DeliverySettings(
        smtp_host="127.0.0.1", smtp_port=port, smtp_timeout_s=30, delivery_concurrency=concurrency
    )
    pooled = Smtp(settings)

    async def per_mail(message: Message) -> None:
        await aiosmtplib.send(pooled.build(message), hostname="127.0.0.1", port=port, start_tls=False, timeout=30)

    results: dict[str, list[float]] = {"per mail": [], "pooled": []}
    for number in range(rounds):
        for name, send in (("per mail", per_mail), ("pooled", pooled.send)):
            sink.peers.clear()
            results[name].append(await rate(send, mails, concurrency))
            print(f"round {number + 1} {name:9} {results[name][-1]:7.0f} mails/s over {len(sink.peers)} connections")
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(
        f"median: per mail {medians['per mail']:.0f} mails/s, pooled {medians['pooled']:.0f} mails/s "
        f"({medians['pooled'] / medians['per mail']:.1f}x); {sink.mails} mails received"
    )


def main() -> None:
    """Run aiosmtpd on a free loopback port and measure."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        asyncio.run(measure(port, sink, options.mails, options.concurrency, options.rounds))
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
