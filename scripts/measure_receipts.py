"""What delivery receipts cost the delivery drain: the benchmark's ``delivery`` scenario with and without them.

Each round runs the drain twice, alternating which goes first, on a fresh database, service and
worker each time, both sending with a service's key: once for a service without a callback,
once for one whose callback is a local receiver (uvicorn on loopback, answering 200), so that
every notification owes a receipt. Reported per run: the drain rate, and for the receipts run the
receipts received, when the last one arrived after the last delivery, and that none is missing.

    DATABASE_URL=... .venv/bin/python scripts/measure_receipts.py [--total 50000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import RESULTS_DIR, asyncpg_dsn, bench_database, checkpoint, running_service  # noqa: E402
from bench_delivery import DeliveryResult, check, drain, running_worker  # noqa: E402

from fastapi1.auth.tokens import create_token  # noqa: E402


class Receiver:
    """An ASGI app that answers every receipt 200 and counts them, served by uvicorn in a thread."""

    def __init__(self) -> None:
        """Count from zero, on a free port."""
        self.received = 0
        self.last_at = 0.0
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Read the receipt, count it, answer 200.

        Args:
            scope: The ASGI scope.
            receive: The ASGI receive.
            send: The ASGI send.
        """
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.received += 1
        self.last_at = time.time()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@contextlib.contextmanager
def serving(receiver: Receiver) -> Iterator[str]:
    """Serve the receiver in a thread; its URL.

    Args:
        receiver: The receiver.
    """
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=receiver.port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{receiver.port}/receipts"
    finally:
        server.should_exit = True
        thread.join(10)


def service_key(base: str, callback_url: str | None) -> Callable[[], dict[str, str]]:
    """A service (development: no admin token), a key and, if given, a callback; headers with a fresh token.

    Both runs send as a service, so that they differ by the callback only.

    Args:
        base: The service's base URL.
        callback_url: The callback, or None for a service without one.
    """
    with httpx.Client(base_url=base, timeout=60) as client:
        service_id = client.post("/services/v1/", json={"name": f"receipts-{uuid.uuid4().hex[:8]}"}).json()["id"]
        key = client.post(f"/services/v1/{service_id}/api-keys", json={"name": "bench", "key_type": "normal"}).json()
        if callback_url is not None:
            body = {"url": callback_url, "bearer_token": "0" * 32}
            client.post(f"/services/v1/{service_id}/callbacks", json=body).raise_for_status()
    secret = key["key"][-36:]
    return lambda: {"Authorization": f"Bearer {create_token(secret, service_id)}"}


async def receipts_done(dsn: str, expected: int, within: float) -> tuple[int, float | None]:
    """Wait until ``expected`` receipts are sent (or the deadline); how many, and the last one's lag.

    Args:
        dsn: The database.
        expected: Receipts owed.
        within: Seconds to wait at most.

    Returns:
        Receipts sent, and seconds from the last delivery to the last receipt sent.
    """
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + within
        sent = 0
        while time.monotonic() < deadline:
            sent = await connection.fetchval("SELECT count(*) FROM delivery_receipts WHERE state = 'sent'")
            if sent >= expected:
                break
            await asyncio.sleep(0.2)
        lag = await connection.fetchval(
            "SELECT extract(epoch FROM (SELECT max(completed_at) FROM delivery_receipts)"
            " - (SELECT max(completed_at) FROM notifications))"
        )
        return int(sent), None if lag is None else float(lag)
    finally:
        await connection.close()


def one_run(options: argparse.Namespace, with_receipts: bool) -> dict[str, Any]:
    """The drain on a fresh database, service and worker, with or without a callback.

    Args:
        options: The command line.
        with_receipts: Whether every notification owes a receipt.
    """
    result = DeliveryResult(label="receipts" if with_receipts else "no receipts", worker_env={})
    receiver = Receiver()
    sends = RESULTS_DIR / f"receipts-sends-{uuid.uuid4().hex[:8]}.bin"
    with bench_database() as url, serving(receiver) as callback_url:
        dsn = asyncpg_dsn(url)
        with (
            running_service(url, options.workers, {"WORKER_PROCESSES": "0"}) as service,
            running_worker(url, sends, RESULTS_DIR / "receipts-worker.log", {}, None) as worker,
        ):
            headers = service_key(service.base, callback_url if with_receipts else None)
            asyncio.run(checkpoint(url))
            acknowledged = asyncio.run(
                drain(service.base, dsn, options.total, 1_000, 4, result, worker.pid, headers=headers)
            )
            sent, lag = asyncio.run(receipts_done(dsn, len(acknowledged), 300)) if with_receipts else (0, None)
        asyncio.run(check(dsn, acknowledged, sends.read_bytes(), result))
    sends.unlink(missing_ok=True)
    return {
        "receipts": with_receipts,
        "drain_per_second": result.delivered_per_second,
        "ingest_per_second": result.ingest_per_second,
        "check": result.check,
        "receipts_sent": sent,
        "receipts_received": receiver.received,
        "last_receipt_after_last_delivery_s": lag,
        "load_average": result.load_average,
    }


def main() -> None:
    """Alternate the two runs and print each, then the median ratio of the drain rates."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    runs: list[dict[str, Any]] = []
    for round_number in range(options.rounds):
        order = (False, True) if round_number % 2 == 0 else (True, False)
        for with_receipts in order:
            run = one_run(options, with_receipts)
            runs.append(run)
            print(
                f"round {round_number} {'receipts' if with_receipts else 'no receipts':12}"
                f" drain {run['drain_per_second']:7.0f}/s ingest {run['ingest_per_second']:7.0f}/s"
                f" receipts sent {run['receipts_sent']} received {run['receipts_received']}"
                f" last receipt +{run['last_receipt_after_last_delivery_s'] or 0:.2f} s"
                f" load {run['load_average'][0]:.1f}-{run['load_average'][1]:.1f}: {run['check']}"
            )
    off = statistics.median(run["drain_per_second"] for run in runs if not run["receipts"])
    on = statistics.median(run["drain_per_second"] for run in runs if run["receipts"])
    print(f"\ndrain median: no receipts {off:.0f}/s, receipts {on:.0f}/s, ratio {on / off:.3f}")


if __name__ == "__main__":
    main()
