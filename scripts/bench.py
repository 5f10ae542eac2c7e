"""fastapi1 throughput benchmark (run through scripts/run_bench.sh).

Starts the service on a fresh database, drives each scenario with wrk (or locust's
FastHttpUser when wrk is missing) at several connection counts, checks the stored rows
against the acknowledged notifications, measures two ceilings in the same run (a direct
asyncpg bulk insert over 4 connections, and heartbeat requests/s), and writes the results
as JSON and a PNG chart under bench-results/.

``BENCH_ONLY=predict`` (not part of the default run: it needs a minute per client count) runs
the prediction gateway's closed-loop load instead: scripts/predict_load.py in its own process
at each of ``BENCH_PREDICT_CLIENTS`` (100,1000,10000) for ``BENCH_PREDICT_SECONDS`` (60), with
the service's CPU (its whole process tree, by psutil) and its backend calls (from /metrics
when the service has it, else from its one log line per backend call) measured over the same
window.

``BENCH_ONLY=auth`` compares a service with AUTH_REQUIRED off and one with it on (a real key's
token on every request, counted against its rate limit) on one database, in alternating rounds
(``BENCH_AUTH_ROUNDS``, 4) of single POST, GET by id and /multiple of 100 at 32 connections
(``BENCH_AUTH_SCENARIOS`` picks some: ``multiple_100``, ``single,get_by_id``),
and prints each scenario's median req/s and the on/off ratio.

``BENCH_ONLY=v2`` compares GOV.UK Notify's ``/v2`` sends with ``/notifications/v1`` on one
authenticated service (one key, an e-mail and a text message template made through the admin
API): single POSTs of the same notification through each route, in alternating rounds
(``BENCH_AUTH_ROUNDS``, 4) at 32 connections, and prints each scenario's median req/s and the
v2/v1 ratio of e-mails and of text messages (the issue asks for 0.9 or more).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # bench_delivery, also when this file is loaded by path

from bench_delivery import DeliveryResult, check, drain, light_load, print_results, running_worker  # noqa: E402

from fastapi1.auth.tokens import create_token  # noqa: E402
from fastapi1.broker.connection import delete_prefix  # noqa: E402
from fastapi1.config import Settings, to_async_url  # noqa: E402
from fastapi1.db.embedded import embedded_postgres  # noqa: E402
from fastapi1.db.migrate import upgrade_to_head  # noqa: E402

RESULTS_DIR = ROOT / "bench-results"
BANDS = ("Incubus", "Korn", "Soundgarden", "Deftones", "Tool")

# wrk script: one fixed request, status counts gathered from every thread at the end.
WRK_LUA = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  statuses = {}
  ids = {}
  for line in io.lines(os.getenv("BENCH_IDS") or "/dev/null") do table.insert(ids, line) end
  run = os.getenv("BENCH_RUN") or "run"
  counter = 0
end
function request()
  counter = counter + 1
  if #ids > 0 then
    return wrk.format(nil, wrk.path .. ids[(counter % #ids) + 1])
  end
  if template then
    local unique = run .. "-" .. tid .. "-" .. counter
    return wrk.format(nil, nil, nil, (string.gsub(template, "{unique}", unique)))
  end
  return wrk.format()
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[tostring(status)] = (total[tostring(status)] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(total) do table.insert(parts, string.format('"%s": %d', status, count)) end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\\n")
end
"""


@dataclass
class Scenario:
    """One kind of request to drive."""

    name: str
    method: str
    path: str
    body: Any = None
    items: int = 0  # notifications stored per successful request
    ok_status: int = 200
    ids_file: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    """What one scenario at one connection count measured."""

    scenario: str
    connections: int
    seconds: float
    requests_per_second: float
    notifications_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    acknowledged: int = 0
    stored: int | None = None
    tool: str = "wrk"
    items_per_request: int = 0

    @property
    def rows_check(self) -> str:
        """Stored rows against acknowledged ones: none may be missing, and at most one request
        per connection may have committed after the load generator stopped listening."""
        if self.stored is None:
            return ""
        in_flight = self.connections * self.items_per_request
        lost = max(0, self.acknowledged - self.stored)
        unacknowledged = self.stored - self.acknowledged
        # locust stops its users mid-request and does not count them, so only losses are checked there
        bounded = unacknowledged <= in_flight or self.tool == "locust"
        verdict = "ok" if lost == 0 and bounded else "CHECK FAILED"
        return f"{self.stored}/{self.acknowledged} lost {lost} {verdict}"


@dataclass
class Report:
    """The whole run."""

    started_at: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    ceilings: dict[str, float] = field(default_factory=dict)
    large_add: dict[str, float] = field(default_factory=dict)
    delivery: list[DeliveryResult] = field(default_factory=list)
    predict: list[dict[str, Any]] = field(default_factory=list)
    auth: list[dict[str, Any]] = field(default_factory=list)
    v2: list[dict[str, Any]] = field(default_factory=list)


def notification_items(count: int) -> list[dict[str, Any]]:
    """The original locust payload: short ``to``, one personalization key, a quarter without."""
    items: list[dict[str, Any]] = []
    for index in range(count):
        item: dict[str, Any] = {"to": f"u{index}@ex.com"}
        if index % 4:
            item["personalization"] = {"band": BANDS[index % len(BANDS)]}
        items.append(item)
    return items


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def asyncpg_dsn(url: str) -> str:
    """SQLAlchemy URL to asyncpg DSN."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A fresh, migrated database on $DATABASE_URL's server or the embedded one; dropped at the end."""
    with contextlib.ExitStack() as stack:
        configured = os.environ.get("DATABASE_URL")
        admin = (
            to_async_url(configured) if configured else stack.enter_context(embedded_postgres(ROOT / ".data/postgres"))
        )
        name = f"fastapi1_bench_{secrets.token_hex(4)}"
        asyncio.run(admin_execute(admin, f'CREATE DATABASE "{name}"'))
        url = re.sub(r"/[^/?]*(\?|$)", rf"/{name}\1", admin.split("://", 1)[1], count=1)
        url = admin.split("://", 1)[0] + "://" + url
        try:
            upgrade_to_head(url)
            yield url
        finally:
            asyncio.run(admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def admin_execute(admin_url: str, statement: str) -> None:
    """Run one statement outside a transaction."""
    connection = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def checkpoint(url: str) -> None:
    """Flush PostgreSQL's dirty pages, so no run pays for the previous run's checkpoint.

    Without it the figures swung by a third between identical runs, depending on whether a
    checkpoint (and the full-page writes after it) fell inside the measured seconds.
    """
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await admin_execute(url, "CHECKPOINT")


async def count_notifications(url: str) -> int:
    """Rows in notifications."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await connection.fetchval("SELECT count(*) FROM notifications"))
    finally:
        await connection.close()


@dataclass
class Service:
    """The service under test."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def running_service(
    url: str, workers: int, extra_env: dict[str, str] | None = None, log_name: str = "service.log"
) -> Iterator[Service]:
    """Start ``python -m fastapi1.serve`` and yield it with its base URL; stop it on exit."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "PORT": str(port), "HOST": "127.0.0.1", "WORKERS": str(workers)}
    env.update(extra_env or {})
    log = (RESULTS_DIR / log_name).open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "fastapi1.serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"service exited; see {log.name}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/status/heartbeat", timeout=1).status_code == 204:
                    break
            time.sleep(0.2)
        yield Service(base, process, Path(log.name))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def parse_wrk(output: str) -> tuple[float, float, float, dict[str, int], float]:
    """Requests/s, p50 ms, p99 ms, status counts and socket errors from wrk's output."""

    def milliseconds(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    statuses = json.loads(re.search(r"STATUSES (\{.*\})", output).group(1))  # type: ignore[union-attr]
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return rps, p50, p99, statuses, socket_errors


def run_wrk(base: str, scenario: Scenario, connections: int, seconds: float) -> Result:
    """Drive one scenario with wrk."""
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "bench.lua"
        lua = WRK_LUA
        if scenario.body is not None:
            body = json.dumps(scenario.body, separators=(",", ":"))
            lua = (
                f'wrk.method = "{scenario.method}"\nwrk.body = [==[{body}]==]\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                + (f"template = [==[{body}]==]\n" if "{unique}" in body else "")
                + lua
            )
        lua = "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in scenario.headers.items()) + lua
        script.write_text(lua)
        threads = min(connections, 2)
        env = {**os.environ, "BENCH_IDS": scenario.ids_file or "/dev/null", "BENCH_RUN": secrets.token_hex(3)}
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
        ]
        output = subprocess.run(
            [*command, base + scenario.path], capture_output=True, text=True, env=env, check=True
        ).stdout
    rps, p50, p99, statuses, socket_errors = parse_wrk(output)
    ok = statuses.get(str(scenario.ok_status), 0)
    errors = sum(statuses.values()) - ok + socket_errors
    return Result(
        scenario=scenario.name,
        connections=connections,
        seconds=seconds,
        requests_per_second=rps,
        notifications_per_second=rps * scenario.items * ok / max(1, sum(statuses.values())),
        p50_ms=p50,
        p99_ms=p99,
        errors=errors,
        acknowledged=ok * scenario.items,
        items_per_request=scenario.items,
    )


def run_locust(base: str, scenario: Scenario, connections: int, seconds: float) -> Result:
    """Drive one scenario with locust's FastHttpUser (when wrk cannot be had)."""
    with tempfile.TemporaryDirectory() as scratch:
        ids = Path(scenario.ids_file).read_text().split() if scenario.ids_file else []
        locustfile = Path(scratch) / "bench_locust.py"
        locustfile.write_text(
            "import json, itertools\n"
            "from locust import FastHttpUser, task, constant\n"
            f"BODY = {json.dumps(scenario.body)!r}\nIDS = itertools.cycle({ids!r} or [''])\n"
            "class U(FastHttpUser):\n"
            "    wait_time = constant(0)\n"
            "    @task\n"
            "    def go(self):\n"
            f"        path = {scenario.path!r} + next(IDS)\n"
            f"        with self.client.request({scenario.method!r}, path, data=BODY, "
            f"headers={{'content-type': 'application/json', **{scenario.headers!r}}}, name='s', catch_response=True)"
            " as r:\n"
            f"            r.success() if r.status_code == {scenario.ok_status} else r.failure(str(r.status_code))\n"
        )
        prefix = Path(scratch) / "stats"
        subprocess.run(
            [
                str(Path(sys.executable).parent / "locust"),
                "-f",
                str(locustfile),
                "--headless",
                "-u",
                str(connections),
                "-r",
                str(connections),
                "-t",
                f"{int(seconds)}s",
                "--host",
                base,
                "--csv",
                str(prefix),
                "--only-summary",
            ],
            capture_output=True,
            check=True,
            cwd=scratch,
        )
        rows = (prefix.parent / "stats_stats.csv").read_text().splitlines()
    header, values = rows[0].split(","), next(line for line in rows[1:] if ",s," in line).split(",")
    stats = dict(zip(header, values, strict=False))
    requests, failures = int(stats["Request Count"]), int(stats["Failure Count"])
    rps = float(stats["Requests/s"])
    return Result(
        scenario=scenario.name,
        connections=connections,
        seconds=seconds,
        requests_per_second=rps,
        notifications_per_second=rps * scenario.items * (requests - failures) / max(1, requests),
        p50_ms=float(stats["50%"]),
        p99_ms=float(stats["99%"]),
        errors=failures,
        acknowledged=(requests - failures) * scenario.items,
        tool="locust",
        items_per_request=scenario.items,
    )


async def direct_insert_ceiling(url: str, seconds: float, connections: int = 4, rows_per_statement: int = 100) -> float:
    """Rows/s PostgreSQL takes over asyncpg with the DAO's own unnest statements, no HTTP."""
    items = notification_items(rows_per_statement)
    insert_notifications = (
        'INSERT INTO notifications (id, "to", template_id, status, created_at, updated_at, next_attempt_at) '
        "SELECT id, recipient, NULL, 'created', $3, $3, $3 FROM unnest($1::uuid[], $2::varchar[]) AS n(id, recipient)"
    )
    insert_personalizations = (
        "INSERT INTO notification_personalizations (notification_id, key, value) "
        "SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[])"
    )

    async def worker(deadline: float) -> int:
        connection = await asyncpg.connect(asyncpg_dsn(url))
        inserted = 0
        try:
            while time.monotonic() < deadline:
                ids = [uuid.uuid4() for _ in items]
                keyed = [
                    (i, it["personalization"]) for i, it in zip(ids, items, strict=True) if "personalization" in it
                ]
                async with connection.transaction():
                    await connection.execute(insert_notifications, ids, [it["to"] for it in items], datetime.now(UTC))
                    await connection.execute(
                        insert_personalizations,
                        [i for i, _ in keyed],
                        ["band"] * len(keyed),
                        [p["band"] for _, p in keyed],
                    )
                inserted += len(items)
        finally:
            await connection.close()
        return inserted

    deadline = time.monotonic() + seconds
    started = time.monotonic()
    counts = await asyncio.gather(*(worker(deadline) for _ in range(connections)))
    return sum(counts) / (time.monotonic() - started)


async def large_add(base: str, pairs: int) -> dict[str, float]:
    """One POST /add of ``pairs`` pairs end to end, with heartbeat latency sampled while it runs."""
    payload = json.dumps({"batchid": f"large-{secrets.token_hex(4)}", "payload": [[i, -i] for i in range(pairs)]})
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client, httpx.AsyncClient(base_url=base) as probe:
        await probe.get("/status/heartbeat")
        started = time.perf_counter()
        request = asyncio.create_task(
            client.post("/add", content=payload, headers={"content-type": "application/json"})
        )
        while not request.done():
            sent = time.perf_counter()
            await probe.get("/status/heartbeat")
            latencies.append(time.perf_counter() - sent)
            await asyncio.sleep(0.002)
        response = await request
        total = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"/add of {pairs} pairs answered {response.status_code}")
    latencies.sort()
    return {
        "pairs": pairs,
        "seconds": total,
        "heartbeats": len(latencies),
        "heartbeat_p50_ms": 1000 * statistics.median(latencies),
        "heartbeat_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "heartbeat_max_ms": 1000 * latencies[-1],
    }


def seed_ids(base: str, count: int, path: Path, headers: Callable[[], dict[str, str]] = dict) -> None:
    """Create notifications to read back and write their ids, one a line.

    ``headers`` gives each request's headers (a fresh token for an authenticated service).
    """
    ids: list[str] = []
    with httpx.Client(base_url=base, timeout=60) as client:
        while len(ids) < count:
            response = client.post("/notifications/v1/multiple", json=notification_items(100), headers=headers())
            ids += [n["id"] for n in response.json()]
    path.write_text("\n".join(ids) + "\n")


def scenarios(ids_file: Path) -> list[Scenario]:
    """Every scenario, in order."""
    return [
        Scenario("multiple_100", "POST", "/notifications/v1/multiple", notification_items(100), 100, 201),
        Scenario("single", "POST", "/notifications/v1/", notification_items(2)[1], 1, 201),
        Scenario("get_by_id", "GET", "/notifications/v1/", None, 0, 200, str(ids_file)),
        Scenario("heartbeat", "GET", "/status/heartbeat", None, 0, 204),
        # every request a new batch id: computed on the pool and stored, never a replay
        Scenario("add_2_pairs", "POST", "/add", {"batchid": "{unique}", "payload": [[1, 2], [3, 4]]}, 0, 200),
    ]


# The batcher's line per backend call (fastapi1/predictions/batcher.py): a success, or a failure.
BACKEND_CALL_LINE = re.compile(rb"Backend call for .*?(?:: (\d+) rows in | \((\d+) rows\) (?:failed|raised))")


@dataclass
class Snapshot:
    """The service's counters at one instant."""

    at: float
    cpu_seconds: float
    calls: float
    rows: float


def tree_cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """User + system CPU seconds of the service's whole process tree (launcher, workers) so far."""
    total = 0.0
    root = psutil.Process(process.pid)
    for member in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total += times.user + times.system
    return total


def metric_total(text: str, name: str) -> float | None:
    """The sum of a Prometheus metric's samples over every label set; None when absent."""
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)]
    return sum(values) if values else None


def backend_counts(service: Service) -> tuple[float, float, str] | None:
    """Backend calls and rows so far from /metrics, when the service exposes them there."""
    with contextlib.suppress(httpx.HTTPError):
        response = httpx.get(f"{service.base}/metrics", timeout=30)
        if response.status_code == 200:
            calls = metric_total(response.text, "fastapi1_backend_batches_total")
            rows = metric_total(response.text, "fastapi1_backend_batch_rows_sum")
            if rows is not None:  # the histogram is always there; the labelled counter once a call was made
                return calls or 0.0, rows, "metrics"
    return None


def log_counts(log: Path, start: int) -> tuple[int, int, int]:
    """Backend calls and rows in the service's log from byte ``start``; and the log's end."""
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read()
    end = start + text.rfind(b"\n") + 1
    counts = [int(m.group(1) or m.group(2)) for m in BACKEND_CALL_LINE.finditer(text[: end - start])]
    return len(counts), sum(counts), end


def snapshot(service: Service, source: str) -> Snapshot:
    """CPU and backend counters now (from /metrics, or the log's size to count its lines later)."""
    now = time.monotonic()
    cpu = tree_cpu_seconds(service.process)
    if source == "metrics":
        # A saturated service may answer a scrape late: a few tries before giving up.
        for _ in range(5):
            counted = backend_counts(service)
            if counted is not None:
                return Snapshot(now, cpu, counted[0], counted[1])
            time.sleep(1)
        raise RuntimeError(f"{service.base}/metrics did not answer")
    return Snapshot(now, cpu, 0, service.log.stat().st_size)


def predict_command(service: Service, clients: int, options: argparse.Namespace) -> list[str]:
    """The command line of scripts/predict_load.py for one client count."""
    return [
        sys.executable,
        str(ROOT / "scripts" / "predict_load.py"),
        "--url",
        service.base,
        "--clients",
        str(clients),
        "--seconds",
        str(options.predict_seconds),
        "--warmup",
        str(options.predict_warmup),
        "--client",
        options.predict_client,
    ]


def watch_client(command: list[str], service: Service, source: str) -> tuple[Snapshot, Snapshot, dict[str, Any]]:
    """Run the client in its own process, snapshotting the service as its window opens and closes."""
    marks: dict[str, Snapshot] = {}
    summary: dict[str, Any] = {}
    with subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT, text=True) as client:
        assert client.stdout is not None
        for line in client.stdout:
            if line.startswith("window "):
                marks[line.split()[1]] = snapshot(service, source)
            elif line.startswith("{"):
                summary = json.loads(line)
    if client.returncode != 0 or not summary or set(marks) != {"start", "end"}:
        raise RuntimeError(f"{' '.join(command)} failed (exit {client.returncode})")
    return marks["start"], marks["end"], summary


def backend_between(service: Service, source: str, start: Snapshot, end: Snapshot) -> tuple[float, float]:
    """Backend calls and rows between two snapshots."""
    if source == "metrics":
        return end.calls - start.calls, end.rows - start.rows
    # From the log: the lines written after the window opened, less those written after it closed.
    calls, rows, _ = log_counts(service.log, int(start.rows))
    calls_after, rows_after, _ = log_counts(service.log, int(end.rows))
    return calls - calls_after, rows - rows_after


def setting(name: str) -> float:
    """A batching or backend setting as the service reads it: the environment, else its default."""
    return float(os.environ.get(name.upper()) or Settings.model_fields[name].default)


def run_predict_clients(service: Service, clients: int, options: argparse.Namespace) -> dict[str, Any]:
    """Run scripts/predict_load.py for one client count and measure the service over its window."""
    source = "metrics" if backend_counts(service) else "log"
    start, end, summary = watch_client(predict_command(service, clients, options), service, source)
    calls, rows = backend_between(service, source, start, end)
    max_size = setting("batch_max_size")
    bound = setting("backend_delay_max_s") + setting("batch_max_wait_ms") / 1000 + 0.25
    wall = end.at - start.at
    summary.update(
        backend_calls=calls,
        backend_rows=rows,
        backend_counted_from=source,
        rows_per_call=rows / max(calls, 1),
        batch_fill=rows / max(calls, 1) / max_size,
        calls_unbatched=rows,
        calls_saved_ratio=rows / max(calls, 1),
        service_cpu_cores=(end.cpu_seconds - start.cpu_seconds) / wall,
        client_cpu_cores=summary["client_cpu_seconds"] / summary["client_wall_seconds"],
        window_seconds=wall,
        p99_bound_s=bound,
        p99_within_bound=summary["p99_s"] <= bound,
    )
    return summary


def drive_predict(report: Report, service: Service, options: argparse.Namespace) -> None:
    """The predict scenario at every client count."""
    for clients in (int(n) for n in options.predict_clients.split(",")):
        result = run_predict_clients(service, clients, options)
        report.predict.append(result)
        print(
            f"  predict        N={clients:<6} {result['requests_per_second']:7.1f} req/s "
            f"p50 {result['p50_s']:.2f} s p99 {result['p99_s']:.2f} s errors {result['errors'] or 0} "
            f"calls {result['backend_calls']:.0f} fill {100 * result['batch_fill']:.0f}% "
            f"CPU {result['service_cpu_cores']:.2f} cores"
        )
        time.sleep(8)  # the last requests' backend calls (3-7 s) finish before the next count starts


def print_predict_table(report: Report) -> None:
    """The predict scenario's results as a table."""
    print(
        f"\n{'clients':>8} {'req/s':>7} {'p50 s':>6} {'p99 s':>6} {'bound':>6} {'svc p99':>7} "
        f"{'errors':>14} {'calls':>6} {'rows/call':>9} {'fill':>5} {'saved':>7} {'svc CPU':>8} {'client CPU':>10}"
    )
    for r in report.predict:
        errors = ",".join(f"{k}:{v}" for k, v in sorted(r["errors"].items())) or "0"
        print(
            f"{r['clients']:>8} {r['requests_per_second']:7.1f} {r['p50_s']:6.2f} {r['p99_s']:6.2f} "
            f"{'ok' if r['p99_within_bound'] else 'MISSED':>6} {r['server_p99_s']:7.2f} "
            f"{errors:>14} {r['backend_calls']:6.0f} {r['rows_per_call']:9.1f} {100 * r['batch_fill']:4.0f}% "
            f"{r['calls_saved_ratio']:6.1f}x {r['service_cpu_cores']:8.2f} {r['client_cpu_cores']:10.2f}"
        )
    if report.predict:
        print(
            f"(backend calls counted from the service's {report.predict[0]['backend_counted_from']}; "
            f"p99 bound {report.predict[0]['p99_bound_s']:.2f} s; svc p99: the answers' own response_time; "
            "CPU in cores: CPU seconds per wall second)"
        )


def print_table(report: Report) -> None:
    """The results as a table."""
    columns = ("conns", "req/s", "notif/s", "p50 ms", "p99 ms", "errors")
    print(f"\n{'scenario':14} " + " ".join(f"{c:>9}" for c in columns) + "  stored/acknowledged rows")
    for r in report.results:
        check = r.rows_check
        print(
            f"{r.scenario:14} {r.connections:9d} {r.requests_per_second:9.0f} {r.notifications_per_second:9.0f} "
            f"{r.p50_ms:9.1f} {r.p99_ms:9.1f} {r.errors:9d}  {check}"
        )
    print("\nceilings:", json.dumps(report.ceilings, indent=None))
    print("large /add:", json.dumps({k: round(v, 3) for k, v in report.large_add.items()}))


def write_chart(report: Report, path: Path) -> None:
    """Bar chart of requests/s (and notifications/s for the multiple route) per scenario and connections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.scenario for r in report.results))
    counts = sorted({r.connections for r in report.results})
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / len(counts)
    for offset, connections in enumerate(counts):
        values = [
            next((r.requests_per_second for r in report.results if r.scenario == n and r.connections == connections), 0)
            for n in names
        ]
        left.bar([i + offset * width for i in range(len(names))], values, width, label=f"{connections} connections")
    left.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=20)
    left.set_ylabel("requests/s")
    left.set_title("fastapi1 requests/s per scenario")
    left.legend()
    multiple = [r for r in report.results if r.scenario == "multiple_100"]
    right.bar([str(r.connections) for r in multiple], [r.notifications_per_second for r in multiple], color="tab:green")
    if "direct_insert_rows_per_second" in report.ceilings:
        right.axhline(
            report.ceilings["direct_insert_rows_per_second"],
            color="tab:red",
            linestyle="--",
            label="direct asyncpg insert (4 connections)",
        )
        right.legend()
    right.set_xlabel("connections")
    right.set_ylabel("notifications/s into PostgreSQL")
    right.set_title("POST /notifications/v1/multiple (100 items)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# The defaults (claims of 100) and claims of 1,000, in one run: the batch size is what the
# worker's and PostgreSQL's CPU per notification depend on.
DEFAULT_DELIVERY_VARIANTS = "DELIVERY_BATCH_SIZE=100;DELIVERY_BATCH_SIZE=1000,DELIVERY_CONCURRENCY=1000"


def parse_options() -> argparse.Namespace:
    """Command-line options, defaulting to the BENCH_* environment variables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 10)))
    parser.add_argument("--connections", default=os.environ.get("BENCH_CONNECTIONS", "8,32,64"))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 2)))
    parser.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""), help="comma-separated scenario names")
    parser.add_argument("--large-pairs", type=int, default=100_000)
    delivery = parser.add_argument_group("delivery scenario")
    delivery.add_argument("--delivery-total", type=int, default=int(os.environ.get("BENCH_DELIVERY_TOTAL", 100_000)))
    delivery.add_argument("--delivery-per-request", type=int, default=1_000)
    delivery.add_argument("--delivery-clients", type=int, default=int(os.environ.get("BENCH_DELIVERY_CLIENTS", 4)))
    delivery.add_argument("--delivery-light", type=int, default=200, help="notifications created one at a time")
    delivery.add_argument(
        "--delivery-variants",
        default=os.environ.get("BENCH_DELIVERY_VARIANTS", DEFAULT_DELIVERY_VARIANTS),
        help="worker settings per run, runs separated by ';' ('' is one run with the defaults)",
    )
    delivery.add_argument("--profile-worker", action="store_true", help="run the worker under cProfile")
    parser.add_argument("--predict-clients", default=os.environ.get("BENCH_PREDICT_CLIENTS", "100,1000,10000"))
    parser.add_argument("--predict-seconds", type=float, default=float(os.environ.get("BENCH_PREDICT_SECONDS", 60)))
    parser.add_argument("--predict-warmup", type=float, default=float(os.environ.get("BENCH_PREDICT_WARMUP", 5)))
    parser.add_argument("--predict-client", default=os.environ.get("BENCH_PREDICT_CLIENT", "raw"))
    parser.add_argument("--auth-rounds", type=int, default=int(os.environ.get("BENCH_AUTH_ROUNDS", 4)))
    return parser.parse_args()


def delivery_variants(text: str) -> list[dict[str, str]]:
    """The worker settings of each delivery run: ``A=1,B=2;A=3`` is two runs; empty is one run with defaults."""
    runs = [run.strip() for run in text.split(";")] if text.strip() else [""]
    return [dict(pair.split("=", 1) for pair in run.split(",") if pair) for run in runs]


def run_delivery(report: Report, options: argparse.Namespace) -> None:
    """The delivery scenario, once per variant, each on a fresh database, service and worker."""
    broker = "RabbitMQ" if os.environ.get("BROKER_URL") else "no broker"
    for index, env in enumerate(delivery_variants(options.delivery_variants)):
        label = (",".join(f"{k}={v}" for k, v in env.items()) or "defaults") + f" ({broker})"
        result = DeliveryResult(label=label, worker_env=env)
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{index}"
        sends = RESULTS_DIR / f"delivery-sends-{stamp}.bin"
        profile = RESULTS_DIR / f"delivery-worker-{stamp}.prof" if options.profile_worker else None
        print(f"  delivery: {label}")
        with bench_database() as url:
            dsn = asyncpg_dsn(url)
            with (
                running_service(url, options.workers, {"WORKER_PROCESSES": "0"}) as service,
                running_worker(url, sends, RESULTS_DIR / f"delivery-worker-{stamp}.log", env, profile) as worker,
            ):
                result.light_count = options.delivery_light
                if options.delivery_light:
                    result.light_p50_ms, result.light_p99_ms = asyncio.run(
                        light_load(service.base, dsn, options.delivery_light)
                    )
                asyncio.run(checkpoint(url))
                acknowledged = asyncio.run(
                    drain(
                        service.base,
                        dsn,
                        options.delivery_total,
                        options.delivery_per_request,
                        options.delivery_clients,
                        result,
                        worker.pid,
                    )
                )
            asyncio.run(check(dsn, acknowledged, sends.read_bytes(), result))
        sends.unlink()
        result.profile = str(profile.relative_to(ROOT)) if profile else None
        report.delivery.append(result)
        print(
            f"    ingest {result.ingest_per_second:.0f}/s, delivered {result.delivered_per_second:.0f}/s end to end, "
            f"p50 {result.p50_ms:.0f} ms p99 {result.p99_ms:.0f} ms, light p50 {result.light_p50_ms:.1f} ms: "
            f"{result.check}"
        )


def drive_scenarios(report: Report, url: str, base: str, options: argparse.Namespace) -> None:
    """Run every chosen scenario at every connection count, checking stored rows for the writes."""
    drive = run_wrk if report.machine["load_generator"] == "wrk" else run_locust
    ids_file = RESULTS_DIR / "ids.txt"
    seed_ids(base, 2_000, ids_file)
    only = set(filter(None, options.only.split(","))) - {"predict"}
    chosen = [s for s in scenarios(ids_file) if not only or s.name in only]
    drive(base, chosen[0], 32, 3)  # warm-up: connection pools, prepared statements, page cache
    time.sleep(1)  # let the warm-up's last requests commit before counting rows
    for scenario in chosen:
        for connections in report.settings["connections"]:
            asyncio.run(checkpoint(url))
            before = asyncio.run(count_notifications(url)) if scenario.items else 0
            result = drive(base, scenario, connections, options.seconds)
            if scenario.items:
                time.sleep(1)  # requests in flight when the generator stopped still commit
                result.stored = asyncio.run(count_notifications(url)) - before
            report.results.append(result)
            print(
                f"  {result.scenario:14} c={connections:<3} {result.requests_per_second:9.0f} req/s "
                f"{result.notifications_per_second:9.0f} notif/s p99 {result.p99_ms:.1f} ms errors {result.errors}"
            )


def measure_ceilings(report: Report, url: str, seconds: float) -> None:
    """The direct-insert and heartbeat ceilings, and fastapi1's best multiple figure as a fraction of them."""
    asyncio.run(checkpoint(url))
    report.ceilings["direct_insert_rows_per_second"] = asyncio.run(direct_insert_ceiling(url, seconds))
    heartbeat = max((r.requests_per_second for r in report.results if r.scenario == "heartbeat"), default=0.0)
    best = max((r.notifications_per_second for r in report.results if r.scenario == "multiple_100"), default=0.0)
    report.ceilings["multiple_fraction_of_direct_insert"] = best / report.ceilings["direct_insert_rows_per_second"]
    if heartbeat:
        report.ceilings["heartbeat_requests_per_second"] = heartbeat
        report.ceilings["multiple_requests_fraction_of_heartbeat"] = (best / 100) / heartbeat


# BENCH_ONLY=auth: what authentication and the rate limit cost on the hot paths. Two services
# on one database, one with AUTH_REQUIRED off (requests without a token), one with it on (every
# request a token of a real key, checked, counted against the key's rate limit), driven in
# alternating rounds so that the machine's drift falls on both alike.
AUTH_SCENARIOS = tuple(os.environ.get("BENCH_AUTH_SCENARIOS", "single,get_by_id,multiple_100").split(","))
AUTH_CONNECTIONS = 32
BENCH_ADMIN_SECRET = secrets.token_urlsafe(32)
AUTH_ON_ENV = {
    "AUTH_REQUIRED": "true",
    "ADMIN_CLIENT_SECRET": BENCH_ADMIN_SECRET,
    "SECRET_KEY": secrets.token_urlsafe(32),
    # High enough that no request is refused: each one still takes its place in the window.
    "RATE_LIMIT_PER_MINUTE": os.environ.get("BENCH_RATE_LIMIT_PER_MINUTE", "10000000"),
    "SERVICE_DAILY_LIMIT": "2000000000",
}


def admin_headers() -> dict[str, str]:
    """Headers with a fresh token of the admin client of an authenticated service (AUTH_ON_ENV)."""
    return {"Authorization": f"Bearer {create_token(BENCH_ADMIN_SECRET, 'fastapi1-admin')}"}


def bench_service_key(base: str) -> tuple[str, Callable[[], dict[str, str]]]:
    """A service and a normal key on an authenticated service: the service's id, and headers with a fresh token."""
    admin = admin_headers()
    with httpx.Client(base_url=base, timeout=60) as client:
        service = client.post("/services/v1/", json={"name": f"bench-{secrets.token_hex(4)}"}, headers=admin)
        service_id = service.json()["id"]
        created = client.post(
            f"/services/v1/{service_id}/api-keys", json={"name": "bench", "key_type": "normal"}, headers=admin
        )
    secret = created.json()["key"][-36:]
    return service_id, lambda: {"Authorization": f"Bearer {create_token(secret, service_id)}"}


def bench_key(base: str) -> Callable[[], dict[str, str]]:
    """A service and a normal key on an authenticated service; headers with a fresh token of it."""
    return bench_service_key(base)[1]


def auth_scenario(name: str, ids_file: Path, headers: dict[str, str]) -> Scenario:
    """One compared scenario, with these headers on every request."""
    (scenario,) = (scenario for scenario in scenarios(ids_file) if scenario.name == name)
    return dataclasses.replace(scenario, headers=headers)


def run_auth_comparison(report: Report, options: argparse.Namespace, drive: Callable[..., Result]) -> None:
    """Alternate rounds of each scenario against the two services; keep every round's req/s."""
    seconds = min(options.seconds, 20)  # a token is good for 30 s: a fresh one for every run
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(bench_database())
        off = stack.enter_context(running_service(url, options.workers, {"WORKER_PROCESSES": "0"}, "auth-off.log"))
        on_env = {"WORKER_PROCESSES": "0", **AUTH_ON_ENV}
        on = stack.enter_context(running_service(url, options.workers, on_env, "auth-on.log"))
        token = bench_key(on.base)
        files = {"off": RESULTS_DIR / "ids-off.txt", "on": RESULTS_DIR / "ids-on.txt"}
        seed_ids(off.base, 2_000, files["off"])
        seed_ids(on.base, 2_000, files["on"], token)
        bases = {"off": off.base, "on": on.base}
        for mode in ("off", "on"):  # warm-up: pools, prepared statements, the key cache
            drive(
                bases[mode], auth_scenario("single", files[mode], token() if mode == "on" else {}), AUTH_CONNECTIONS, 3
            )
        for round_number in range(options.auth_rounds):
            modes = ("off", "on") if round_number % 2 == 0 else ("on", "off")
            for name in AUTH_SCENARIOS:
                for mode in modes:
                    asyncio.run(checkpoint(url))
                    scenario = auth_scenario(name, files[mode], token() if mode == "on" else {})
                    result = drive(bases[mode], scenario, AUTH_CONNECTIONS, seconds)
                    row = {"round": round_number, "scenario": name, "auth": mode, **asdict(result)}
                    report.auth.append(row)
                    print(
                        f"  round {round_number} {name:14} auth {mode:3} {result.requests_per_second:9.0f} req/s "
                        f"p99 {result.p99_ms:.1f} ms errors {result.errors}"
                    )


def print_auth_table(rows: list[dict[str, Any]]) -> None:
    """Median req/s per scenario with auth off and on, and their ratio (on / off)."""
    print(f"\nauth off vs on, {AUTH_CONNECTIONS} connections, median of rounds (each round: both, alternating order)")
    print(f"  {'scenario':14} {'off req/s':>10} {'on req/s':>10} {'on/off':>7}   per round (on/off)")
    for name in AUTH_SCENARIOS:
        rates = {
            mode: [r["requests_per_second"] for r in rows if r["scenario"] == name and r["auth"] == mode]
            for mode in ("off", "on")
        }
        if not rates["off"] or not rates["on"]:
            continue
        pairs = " ".join(f"{on / off:.3f}" for off, on in zip(rates["off"], rates["on"], strict=False))
        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        errors = sum(r["errors"] for r in rows if r["scenario"] == name)
        print(f"  {name:14} {off:10.0f} {on:10.0f} {on / off:7.3f}   {pairs}   errors {errors}")


# BENCH_ONLY=v2: what Notify's /v2 sends cost against /notifications/v1 sending the same
# notification from the same template: one authenticated service and key, the four scenarios
# driven in alternating rounds (as auth) so that the machine's drift falls on both routes alike.
V2_PAIRS = (("email", "v1_email", "v2_email"), ("sms", "v1_sms", "v2_sms"))  # (channel, v1, v2)
V2_TOLERANCE = 0.9  # the issue: /v2 within 10% of /v1
V2_PERSONALISATION = {"name": "Ada", "band": "Korn"}
V2_TEMPLATES = {
    "email": {"subject": "Hello ((name))", "content": "Dear ((name)), ((band)) plays tonight."},
    "sms": {"content": "((name)): ((band)) tonight"},
}


def v2_templates(base: str, service_id: str) -> dict[str, str]:
    """An e-mail and a text message template of the service, made through the admin API; their ids by type."""
    ids: dict[str, str] = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for template_type, fields in V2_TEMPLATES.items():
            response = client.post(
                f"/services/v1/{service_id}/templates",
                json={"name": f"bench {template_type}", "template_type": template_type, **fields},
                headers=admin_headers(),
            )
            response.raise_for_status()
            ids[template_type] = response.json()["id"]
    return ids


def v2_scenarios(templates: dict[str, str]) -> list[Scenario]:
    """The compared sends: the same e-mail and text message through /notifications/v1 and through /v2, each a 201."""
    email, sms, values = templates["email"], templates["sms"], V2_PERSONALISATION
    bodies = {
        "v1_email": ("/notifications/v1/", {"to": "ada@example.com", "template_id": email, "personalization": values}),
        "v2_email": (
            "/v2/notifications/email",
            {"email_address": "ada@example.com", "template_id": email, "personalisation": values},
        ),
        "v1_sms": ("/notifications/v1/", {"to": "+447700900123", "template_id": sms, "personalization": values}),
        "v2_sms": (
            "/v2/notifications/sms",
            {"phone_number": "07700900123", "template_id": sms, "personalisation": values},
        ),
    }
    return [Scenario(name, "POST", path, body, 1, 201) for name, (path, body) in bodies.items()]


def v2_scenario(name: str, templates: dict[str, str], headers: dict[str, str]) -> Scenario:
    """One compared send, with these headers on every request."""
    (scenario,) = (scenario for scenario in v2_scenarios(templates) if scenario.name == name)
    return dataclasses.replace(scenario, headers=headers)


def v2_order(round_number: int) -> list[tuple[str, str]]:
    """One round's runs as (channel, scenario): in even rounds each /v1 send before its /v2 one, in odd ones after."""
    step = 1 if round_number % 2 == 0 else -1
    return [(channel, name) for channel, *names in V2_PAIRS for name in names[::step]]


def run_v2_comparison(report: Report, options: argparse.Namespace, drive: Callable[..., Result]) -> None:
    """Alternate rounds of each /v1 and /v2 send against one authenticated service; keep every round's req/s."""
    seconds = min(options.seconds, 20)  # a token is good for 30 s: a fresh one for every run
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(bench_database())
        env = {"WORKER_PROCESSES": "0", **AUTH_ON_ENV}
        service = stack.enter_context(running_service(url, options.workers, env, "v2.log"))
        service_id, token = bench_service_key(service.base)
        templates = v2_templates(service.base, service_id)
        for _, name in v2_order(0):  # warm-up: pools, prepared statements, the key and template caches
            drive(service.base, v2_scenario(name, templates, token()), AUTH_CONNECTIONS, 3)
        for round_number in range(options.auth_rounds):
            for channel, name in v2_order(round_number):
                asyncio.run(checkpoint(url))
                result = drive(service.base, v2_scenario(name, templates, token()), AUTH_CONNECTIONS, seconds)
                report.v2.append({"round": round_number, "channel": channel, **asdict(result)})
                print(
                    f"  round {round_number} {name:9} {result.requests_per_second:9.0f} req/s "
                    f"p99 {result.p99_ms:.1f} ms errors {result.errors}"
                )


def v2_ratio(rows: list[dict[str, Any]], v1: str, v2: str) -> tuple[float, list[float]] | None:
    """The ratio of the two sends' median req/s (v2 / v1), and the ratio in each round that ran both; None without."""
    rates = {(r["round"], r["scenario"]): r["requests_per_second"] for r in rows}
    rounds = sorted({number for number, name in rates if name == v1} & {number for number, name in rates if name == v2})
    if not rounds:
        return None
    medians = {name: statistics.median(rates[number, name] for number in rounds) for name in (v1, v2)}
    return medians[v2] / medians[v1], [rates[number, v2] / rates[number, v1] for number in rounds]


def print_v2_table(rows: list[dict[str, Any]]) -> None:
    """Median req/s of each /v1 and /v2 send, each round's req/s, and their ratios (v2 / v1)."""
    print(
        f"\n/v2 vs /notifications/v1 single sends, {AUTH_CONNECTIONS} connections, median of rounds (alternating order)"
    )
    print(f"  {'scenario':9} {'req/s':>7}   per round")
    for name in (name for _, *names in V2_PAIRS for name in names):
        rates = [r["requests_per_second"] for r in rows if r["scenario"] == name]
        if rates:
            errors = sum(r["errors"] for r in rows if r["scenario"] == name)
            per_round = " ".join(f"{rate:6.0f}" for rate in rates)
            print(f"  {name:9} {statistics.median(rates):7.0f}   {per_round}   errors {errors}")
    print(f"  {'ratio':17} {'medians':>7}   per round   (the issue: {V2_TOLERANCE} or more)")
    for _, v1, v2 in V2_PAIRS:
        ratios = v2_ratio(rows, v1, v2)
        if ratios is not None:
            verdict = "ok" if ratios[0] >= V2_TOLERANCE else "SLOWER"
            per_round = " ".join(f"{ratio:.3f}" for ratio in ratios[1])
            print(f"  {v2 + '/' + v1:17} {ratios[0]:7.3f}   {per_round}   {verdict}")


def run_http_and_predict(report: Report, options: argparse.Namespace, http: bool, predict: bool) -> None:
    """The HTTP scenarios (with the ceilings and the large /add) and the predict scenario, on one service.

    Args:
        report: Receives the results.
        options: The command line.
        http: Whether to run the HTTP scenarios.
        predict: Whether to run the predict scenario.
    """
    # API-only figures: worker processes matter for the broker's path; without one they would
    # idle on (or deliver on) the two cores. An explicit WORKER_PROCESSES wins.
    keep_workers = os.environ.get("BROKER_URL") or "WORKER_PROCESSES" in os.environ
    extra_env = {} if keep_workers else {"WORKER_PROCESSES": "0"}
    with bench_database() as url, running_service(url, options.workers, extra_env) as service:
        if predict:
            report.settings.update(predict_settings(options))
            drive_predict(report, service, options)
        if http:
            drive_scenarios(report, url, service.base, options)
            report.large_add = asyncio.run(large_add(service.base, options.large_pairs))
            measure_ceilings(report, url, options.seconds)


def run_chosen(report: Report, options: argparse.Namespace) -> None:
    """The HTTP scenarios (with the ceilings and the large /add), the predict and the delivery scenarios, as chosen.

    ``predict``, ``auth`` and ``v2`` run only when named (``predict`` needs minutes at the backend's
    real delay; the comparisons start services of their own); the HTTP scenarios and ``delivery``
    run when nothing is named.
    """
    only = {name for name in options.only.split(",") if name}
    http = not only or bool(only - {"delivery", "predict", "auth", "v2"})
    if http or "predict" in only:
        run_http_and_predict(report, options, http, "predict" in only)
    if not only or "delivery" in only:
        run_delivery(report, options)
    drive = run_wrk if report.machine["load_generator"] == "wrk" else run_locust
    if "auth" in only:
        run_auth_comparison(report, options, drive)
    if "v2" in only:
        run_v2_comparison(report, options, drive)


def main() -> None:
    """Run the benchmark."""
    options = parse_options()
    RESULTS_DIR.mkdir(exist_ok=True)
    tool = os.environ.get("BENCH_LOAD_GENERATOR") or ("wrk" if shutil.which("wrk") else "locust")
    report = Report(
        started_at=datetime.now(UTC).isoformat(),
        machine={"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_generator": tool},
        settings={
            "workers": options.workers,
            "seconds": options.seconds,
            "connections": [int(c) for c in options.connections.split(",")],
            "database": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
        },
    )
    print(f"load generator: {tool}; WORKERS={options.workers}; {options.seconds:.0f} s per run")
    with throwaway_broker_prefix():
        run_chosen(report, options)
    write_results(report)


@contextlib.contextmanager
def throwaway_broker_prefix() -> Iterator[None]:
    """With ``BROKER_URL`` and no ``BROKER_PREFIX``: queues under a prefix of this run, deleted afterwards.

    An explicit ``BROKER_PREFIX`` is left as it is (and its queues too): they may be someone's.
    """
    url = os.environ.get("BROKER_URL")
    if not url or os.environ.get("BROKER_PREFIX"):
        yield
        return
    os.environ["BROKER_PREFIX"] = prefix = f"bench-{secrets.token_hex(4)}"
    try:
        yield
    finally:
        del os.environ["BROKER_PREFIX"]
        asyncio.run(delete_prefix(url, prefix))


def predict_settings(options: argparse.Namespace) -> dict[str, Any]:
    """The predict scenario's settings, for the report."""
    return {
        "predict_clients": options.predict_clients,
        "predict_seconds": options.predict_seconds,
        "predict_client": options.predict_client,
        "broker": "BROKER_URL" if os.environ.get("BROKER_URL") else "none",
        **{name: setting(name) for name in ("batch_max_size", "batch_max_wait_ms", "batch_max_concurrency")},
    }


def write_results(report: Report) -> None:
    """Write the JSON (and the chart of the HTTP scenarios) and print the tables."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = RESULTS_DIR / f"bench-{stamp}.json"
    document = asdict(report)
    for result, row in zip(report.results, document["results"], strict=True):
        row["rows_check"] = result.rows_check
    for delivery, row in zip(report.delivery, document["delivery"], strict=True):
        row["check"] = delivery.check
    json_path.write_text(json.dumps(document, indent=2))
    if report.results:
        print_table(report)
        chart = RESULTS_DIR / f"bench-{stamp}.png"
        write_chart(report, chart)
        print(f"chart: {chart.relative_to(ROOT)}")
    print_scenarios(report)
    print(f"\nresults: {json_path.relative_to(ROOT)}")


def print_scenarios(report: Report) -> None:
    """Print the predict and delivery tables of the scenarios that ran."""
    if report.predict:
        print_predict_table(report)
    if report.delivery:
        print_results(report.delivery)
    if report.auth:
        print_auth_table(report.auth)
    if report.v2:
        print_v2_table(report.v2)


if __name__ == "__main__":
    main()
