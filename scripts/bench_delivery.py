"""The ``delivery`` scenario of the benchmark: create through the API while one worker drains.

Heavy load: ``total`` notifications created through ``POST /notifications/v1/multiple``
(``per_request`` items a request, ``clients`` concurrent clients) while one worker process
(``scripts/bench_worker.py``: the real worker, its sends counted) delivers them with the
simulator. Reported: the end-to-end drain rate (first ``created_at`` to last ``completed_at``),
the ingest rate, created->delivered latency p50/p99 from the stored timestamps, and the checks:
every notification final, none lost (the API's ids against the stored rows), none delivered
twice (the sends counted per id).

Light load: one notification at a time, the next created once the last is final; p50/p99
created->delivered.

``BROKER_URL`` passes through to the service and the worker, so the same scenario measures
the RabbitMQ path when it is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
FINAL = ("delivered", "permanent-failure", "temporary-failure", "technical-failure")
DRAIN_DOMAIN = "drain.bench"
LIGHT_DOMAIN = "light.bench"


@dataclass
class DeliveryResult:
    """What one delivery run measured."""

    label: str
    worker_env: dict[str, str]
    total: int = 0
    ingest_seconds: float = 0.0
    ingest_per_second: float = 0.0
    not_final_when_ingest_ended: int = 0
    drain_seconds: float = 0.0  # first created_at to last completed_at, from the stored rows
    delivered_per_second: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    light_count: int = 0
    light_p50_ms: float = 0.0
    light_p99_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    not_final: int = 0
    sends: int = 0
    delivered_twice: int = 0
    delivered_unsent: int = 0
    sent_not_delivered: int = 0
    errors: int = 0
    worker_cpu_ms_per_1000: float = 0.0  # the worker process's CPU time per 1,000 notifications drained
    postgres_cpu_ms_per_1000: float = 0.0  # every backend on the bench database (API's and worker's)
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the start and end of the drain
    profile: str | None = None

    @property
    def check(self) -> str:
        """'ok' when every notification is final and delivered exactly once, else what failed."""
        problems = [
            f"{name} {value}"
            for name, value in (
                ("lost", self.lost),
                ("not final", self.not_final),
                ("delivered twice", self.delivered_twice),
                ("delivered unsent", self.delivered_unsent),
                ("sent not delivered", self.sent_not_delivered),
                ("request errors", self.errors),
            )
            if value
        ]
        return "ok" if not problems else "CHECK FAILED: " + ", ".join(problems)


def items(count: int, domain: str) -> list[dict[str, Any]]:
    """The original locust payload (one personalization key, a quarter without), at ``domain``."""
    bands = ("Incubus", "Korn", "Soundgarden", "Deftones", "Tool")
    made: list[dict[str, Any]] = []
    for index in range(count):
        item: dict[str, Any] = {"to": f"u{index}@{domain}"}
        if index % 4:
            item["personalization"] = {"band": bands[index % len(bands)]}
        made.append(item)
    return made


@contextlib.contextmanager
def running_worker(
    url: str, sends: Path, log: Path, env: dict[str, str], profile: Path | None
) -> Iterator[subprocess.Popen[bytes]]:
    """One worker process (``scripts/bench_worker.py``) on ``url``; SIGTERM and wait on exit."""
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += [str(ROOT / "scripts" / "bench_worker.py"), "--sends", str(sends)]
    full_env = {**os.environ, "DATABASE_URL": url, "SMTP_HOST": "", **env}
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "Worker delivering" not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start; see {log}")
                time.sleep(0.1)
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(worker_pid: int, database: str) -> tuple[float, float]:
    """CPU seconds (user + system) so far of the worker process and of the backends on ``database``.

    Backends live as long as their pooled connections, which outlive one drain, so the
    difference of two samples is what the drain cost them.
    """

    def used(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    worker = used(psutil.Process(worker_pid))
    backends = 0.0
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(f" {database} " in part for part in process.info["cmdline"] or []):
                backends += used(process)
    return worker, backends


async def count_final(connection: asyncpg.Connection, domain: str) -> int:
    """Final notifications to ``domain``."""
    return int(
        await connection.fetchval(
            'SELECT count(*) FROM notifications WHERE status = ANY($1::text[]) AND "to" LIKE $2',
            list(FINAL),
            f"%@{domain}",
        )
    )


async def light_load(base: str, dsn: str, count: int) -> tuple[float, float]:
    """Create ``count`` notifications one at a time, each once the previous is final; p50, p99 ms."""
    connection = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for index in range(count):
                response = await client.post("/notifications/v1/", json={"to": f"one{index}@{LIGHT_DOMAIN}"})
                response.raise_for_status()
                deadline = time.monotonic() + 30
                while await count_final(connection, LIGHT_DOMAIN) <= index:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"light-load notification {index} not final within 30 s")
                    await asyncio.sleep(0.002)
        return await latency_percentiles(connection, LIGHT_DOMAIN)
    finally:
        await connection.close()


async def latency_percentiles(connection: asyncpg.Connection, domain: str) -> tuple[float, float]:
    """created_at -> completed_at p50 and p99 in ms, by PostgreSQL's percentile_cont."""
    row = await connection.fetchrow(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at)),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at))"
        ' FROM notifications WHERE "to" LIKE $1',
        f"%@{domain}",
    )
    return 1000 * float(row[0]), 1000 * float(row[1])


async def ingest(
    base: str, total: int, per_request: int, clients: int, headers: Callable[[], dict[str, str]] = dict
) -> tuple[list[str], float, int]:
    """POST ``total`` notifications to /multiple from ``clients`` concurrent clients, ``headers()`` on each request.

    Returns:
        The ids the API acknowledged, the seconds from the first request to the last answer, the
        failed requests.
    """
    body = json.dumps(items(per_request, DRAIN_DOMAIN), separators=(",", ":")).encode()
    requests = total // per_request
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(requests):
        queue.put_nowait(number)
    ids: list[str] = []
    errors = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            queue.get_nowait()
            response = await client.post(
                "/notifications/v1/multiple", content=body, headers={"content-type": "application/json", **headers()}
            )
            if response.status_code == 201:
                ids.extend(item["id"] for item in response.json())
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        return ids, time.monotonic() - started, errors


async def drain(
    base: str,
    dsn: str,
    total: int,
    per_request: int,
    clients: int,
    result: DeliveryResult,
    worker_pid: int,
    stall_s: float = 120,
    headers: Callable[[], dict[str, str]] = dict,
) -> list[str]:
    """Create ``total`` notifications while the worker drains them; wait until every one is final.

    ``headers()`` goes on every request (a service's token, for notifications that owe receipts).
    """
    database = dsn.rsplit("/", 1)[1].split("?")[0]
    worker_cpu, postgres_cpu = cpu_seconds(worker_pid, database)
    load_start = os.getloadavg()[0]
    ids, seconds, errors = await ingest(base, total, per_request, clients, headers)
    result.total, result.ingest_seconds, result.errors = len(ids), seconds, errors
    result.ingest_per_second = len(ids) / seconds
    connection = await asyncpg.connect(dsn)
    try:
        final = await count_final(connection, DRAIN_DOMAIN)
        result.not_final_when_ingest_ended = len(ids) - final
        progress_at, last = time.monotonic(), final
        while final < len(ids):
            await asyncio.sleep(0.1)
            final = await count_final(connection, DRAIN_DOMAIN)
            if final != last:
                progress_at, last = time.monotonic(), final
            elif time.monotonic() - progress_at > stall_s:
                break  # the checks report what is not final
        span = await connection.fetchval(
            'SELECT extract(epoch FROM max(completed_at) - min(created_at)) FROM notifications WHERE "to" LIKE $1',
            f"%@{DRAIN_DOMAIN}",
        )
        result.drain_seconds = float(span)
        worker_after, postgres_after = cpu_seconds(worker_pid, database)
        result.worker_cpu_ms_per_1000 = 1e6 * (worker_after - worker_cpu) / max(1, final)
        result.postgres_cpu_ms_per_1000 = 1e6 * (postgres_after - postgres_cpu) / max(1, final)
        result.load_average = (load_start, os.getloadavg()[0])
        result.delivered_per_second = final / result.drain_seconds
        result.p50_ms, result.p99_ms = await latency_percentiles(connection, DRAIN_DOMAIN)
    finally:
        await connection.close()
    return ids


async def check(dsn: str, acknowledged: list[str], data: bytes, result: DeliveryResult) -> None:
    """Stored statuses against the acknowledged ids and the counted sends."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id, status, attempts FROM notifications")
    finally:
        await connection.close()
    stored = {row["id"]: row for row in rows}
    result.lost = len({uuid.UUID(i) for i in acknowledged} - stored.keys())
    result.statuses = dict(Counter(row["status"] for row in rows))
    result.attempts = {str(k): v for k, v in sorted(Counter(row["attempts"] for row in rows).items())}
    result.not_final = sum(1 for row in rows if row["status"] not in FINAL)
    sends = Counter(uuid.UUID(bytes=data[i : i + 16]) for i in range(0, len(data), 16))
    delivered = {key for key, row in stored.items() if row["status"] == "delivered"}
    result.sends = sum(sends.values())
    result.delivered_twice = sum(1 for count in sends.values() if count > 1)
    result.delivered_unsent = len(delivered - sends.keys())
    result.sent_not_delivered = len(sends.keys() - delivered)


def print_results(results: list[DeliveryResult]) -> None:
    """The delivery runs as a table."""
    print(
        f"\n{'delivery run':54} {'ingest/s':>8} {'drain/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'light p50':>9} {'light p99':>9} {'worker CPU':>10} {'PG CPU':>7} {'load':>11}"
    )
    for r in results:
        print(
            f"{r.label:54} {r.ingest_per_second:8.0f} {r.delivered_per_second:8.0f} {r.p50_ms:7.0f} {r.p99_ms:7.0f}"
            f" {r.light_p50_ms:9.1f} {r.light_p99_ms:9.1f}"
            f" {r.worker_cpu_ms_per_1000:7.0f} ms {r.postgres_cpu_ms_per_1000:4.0f} ms"
            f" {r.load_average[0]:5.1f}-{r.load_average[1]:<5.1f}"
        )
        print(
            f"{'':54} checks: {r.total} created, {r.sends} sends, statuses {r.statuses},"
            f" attempts {r.attempts}: {r.check}"
        )
    print("(worker CPU, PG CPU: CPU time per 1,000 notifications drained; load: 1-minute load average, 2 cores)")
