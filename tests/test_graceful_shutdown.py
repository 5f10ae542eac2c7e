"""Operations against the real server (``python -m fastapi1.serve``): graceful shutdown, start-up settings.

The shutdown test plays a load balancer: clients send creates and slow ``/add`` calls on new
connections, SIGTERM goes to the server, a poller watches ``/status/ready`` and, once it
turns 503, the clients start nothing new (the load balancer took the instance out). Every
request in flight at SIGTERM must end with a full response, never a connection closed under
it; one started after SIGTERM ends with a full response, a refused connection, or (racing the
listener as it closes, as any client may) a connection closed before any answer, and then
must have stored nothing; every 2xx must be in the database; the server exits 0.
"""

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from tests import test_end_to_end
from tests.conftest import PROJECT_ROOT, asyncpg_dsn, throwaway_database
from tests.processes import is_delivery_worker, survivors
from tests.test_end_to_end import StartServer, http_workers

# The real-server fixtures of the end-to-end tests.
server_env = test_end_to_end.server_env
start_server = test_end_to_end.start_server

ADD_PAIRS = 100_000
CREATORS = 8
ADDERS = 6
ITEMS_PER_CREATE = 100


@dataclass
class Outcomes:
    """What the clients saw, relative to the moment SIGTERM was sent."""

    sigterm_at: float | None = None
    routing: bool = True
    acknowledged_ids: list[str] = field(default_factory=list)
    acknowledged_batches: list[str] = field(default_factory=list)
    other_statuses: list[int] = field(default_factory=list)
    refused: int = 0
    cut: list[str] = field(default_factory=list)
    # What requests started after SIGTERM that got no response would have stored, by kind.
    unanswered: dict[str, list[str]] = field(default_factory=lambda: {"create": [], "add": []})
    in_flight_at_sigterm: int = 0
    ready_statuses: list[int] = field(default_factory=list)

    def record_timing(self, started: float) -> None:
        """Count a request that was in flight when SIGTERM was sent."""
        if self.sigterm_at is not None and started < self.sigterm_at:
            self.in_flight_at_sigterm += 1


async def send(
    http: httpx.AsyncClient, outcomes: Outcomes, kind: str, keys: list[str], **request: object
) -> httpx.Response | None:
    """Send one request on a new connection and classify how it ended.

    ``keys`` name what the request would store (recipients, a batch id): a request started
    after SIGTERM that got no response (it reached the listener as it closed) must have
    stored none of them, which :func:`stored` checks.
    """
    started = time.monotonic()
    try:
        response = await http.request(**request)  # type: ignore[arg-type]
        response.json()  # the whole body arrived and parses
    except httpx.ConnectError:
        outcomes.refused += 1
        return None
    except (httpx.TransportError, json.JSONDecodeError) as error:
        if outcomes.sigterm_at is not None and started >= outcomes.sigterm_at:
            outcomes.unanswered[kind].extend(keys)
        else:
            outcomes.cut.append(f"{kind}: {type(error).__name__}: {error}")
        return None
    outcomes.record_timing(started)
    return response


async def create_until_taken_out(http: httpx.AsyncClient, outcomes: Outcomes) -> None:
    """POST lists of notifications while the load balancer routes here."""
    while outcomes.routing:
        recipients = [f"drain-{secrets.token_hex(8)}@example.com" for _ in range(ITEMS_PER_CREATE)]
        items = [{"to": recipient} for recipient in recipients]
        response = await send(
            http, outcomes, "create", recipients, method="POST", url="/notifications/v1/multiple", json=items
        )
        if response is None:
            continue
        if response.status_code == 201:
            outcomes.acknowledged_ids.extend(item["id"] for item in response.json())
        else:
            outcomes.other_statuses.append(response.status_code)


async def add_until_taken_out(http: httpx.AsyncClient, outcomes: Outcomes, payload: list[list[int]]) -> None:
    """POST 100,000-pair additions (seconds each) while the load balancer routes here."""
    while outcomes.routing:
        batch_id = f"drain-{secrets.token_hex(8)}"
        body = {"batchid": batch_id, "payload": payload}
        response = await send(http, outcomes, "add", [batch_id], method="POST", url="/add", json=body)
        if response is None:
            continue
        if response.status_code == 200:
            outcomes.acknowledged_batches.append(batch_id)
        else:
            outcomes.other_statuses.append(response.status_code)


async def probe_readiness(http: httpx.AsyncClient, outcomes: Outcomes) -> int | None:
    """GET ``/status/ready`` on a new connection: its status, or None once the server stopped accepting."""
    try:
        return (await http.get("/status/ready")).status_code
    except httpx.ConnectError:
        return None
    except httpx.TransportError as error:
        if outcomes.routing:
            outcomes.cut.append(f"ready: {type(error).__name__}: {error}")
        # Else a probe that reached the backlog as the server closed its socket: reset
        # before any byte of a response, as for any client racing a closing listener; a
        # load balancer counts it as a failed probe, and nothing was in flight on it.
        return None


async def watch_readiness(http: httpx.AsyncClient, outcomes: Outcomes) -> None:
    """Poll readiness after SIGTERM: take the instance out at the first 503, stop when refused."""
    while (status := await probe_readiness(http, outcomes)) is not None:
        outcomes.ready_statuses.append(status)
        if status == 503:
            outcomes.routing = False
        await asyncio.sleep(0.05)


@dataclass
class Stored:
    """What the database holds after the shutdown."""

    notifications: int
    add_batches: int
    add_sums: int
    unanswered_notifications: int
    unanswered_batches: int
    held: int


async def stored(url: str, outcomes: Outcomes) -> Stored:
    """Count what was acknowledged, what was not answered, and what a claim still holds."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        count = connection.fetchval
        batches, lost_batches = outcomes.acknowledged_batches, outcomes.unanswered["add"]
        return Stored(
            notifications=await count(
                "SELECT count(*) FROM notifications WHERE id::text = ANY($1::text[])", outcomes.acknowledged_ids
            ),
            add_batches=await count("SELECT count(*) FROM add_batches WHERE batch_id = ANY($1)", batches),
            add_sums=await count("SELECT count(*) FROM add_sums WHERE batch_id = ANY($1)", batches),
            unanswered_notifications=await count(
                'SELECT count(*) FROM notifications WHERE "to" = ANY($1)', outcomes.unanswered["create"]
            ),
            unanswered_batches=await count("SELECT count(*) FROM add_batches WHERE batch_id = ANY($1)", lost_batches),
            # A claim's lease holds a row for DELIVERY_LEASE_S; a released one is due at once.
            held=await count(
                "SELECT count(*) FROM notifications WHERE status = 'sending'"
                " AND next_attempt_at > now() + interval '5 seconds'"
            ),
        )
    finally:
        await connection.close()


class TestGracefulShutdown:
    def test_sigterm_with_requests_in_flight_answers_them_all_and_loses_nothing(
        self, admin_url: str, server_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        with throwaway_database(admin_url) as url:
            asyncio.run(self.shut_down_under_load(url, server_env, start_server, tmp_path))

    async def shut_down_under_load(
        self, url: str, server_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        """Load the server, SIGTERM it, and check what every client saw and what was stored."""
        env = {
            **server_env,
            "DATABASE_URL": url,
            "WORKERS": "2",
            "COMPUTE_WORKERS": "1",
            "SHUTDOWN_DRAIN_S": "3",
            "SHUTDOWN_TIMEOUT_S": "90",
            "DB_POOL_TIMEOUT": "30",
        }
        server = start_server(env, tmp_path / "server.log")
        await asyncio.to_thread(server.wait_until_serving, 120)
        arbiter = psutil.Process(server.process.pid)
        await asyncio.to_thread(http_workers, arbiter, 2)
        delivery = [child for child in arbiter.children() if is_delivery_worker(child)]
        assert len(delivery) == 1, server.log()

        outcomes = Outcomes()
        payload = [[index, -index] for index in range(ADD_PAIRS)]
        # A new connection per request: the client never reuses one the server is closing.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=180) as http:
            clients = [asyncio.create_task(create_until_taken_out(http, outcomes)) for _ in range(CREATORS)]
            clients += [asyncio.create_task(add_until_taken_out(http, outcomes, payload)) for _ in range(ADDERS)]
            # Under way: additions have completed and more are in flight.
            async with asyncio.timeout(120):
                while len(outcomes.acknowledged_batches) < ADDERS or len(outcomes.acknowledged_ids) < 1000:
                    assert not outcomes.cut, outcomes.cut
                    await asyncio.sleep(0.1)
            acknowledged_before = len(outcomes.acknowledged_ids), len(outcomes.acknowledged_batches)
            outcomes.sigterm_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            await watch_readiness(http, outcomes)
            async with asyncio.timeout(180):
                await asyncio.gather(*clients)
            exit_code = await asyncio.to_thread(server.process.wait, 180)

        found = await stored(url, outcomes)
        acknowledged_after = (
            len(outcomes.acknowledged_ids) - acknowledged_before[0],
            len(outcomes.acknowledged_batches) - acknowledged_before[1],
        )
        unanswered = {kind: len(keys) for kind, keys in outcomes.unanswered.items()}
        print(
            f"\nin flight at SIGTERM: {outcomes.in_flight_at_sigterm} requests;"
            f" acknowledged: {len(outcomes.acknowledged_ids)} notifications"
            f" ({acknowledged_after[0]} after SIGTERM), {len(outcomes.acknowledged_batches)} additions"
            f" ({acknowledged_after[1]} after SIGTERM); stored: {found.notifications} notifications,"
            f" {found.add_batches} additions ({found.add_sums} sums); other statuses: {outcomes.other_statuses};"
            f" refused: {outcomes.refused}; started after SIGTERM, closed unanswered: {unanswered} (stored of them:"
            f" {found.unanswered_notifications} notifications, {found.unanswered_batches} additions);"
            f" ready while draining: {outcomes.ready_statuses}"
        )
        log = server.log()
        assert exit_code == 0, log
        # Nothing in flight at SIGTERM was cut: every request started before it got a full response.
        assert outcomes.cut == [], log
        # Readiness turned 503 before the server stopped accepting, and the load balancer saw it.
        assert 503 in outcomes.ready_statuses, outcomes.ready_statuses
        assert outcomes.routing is False
        # Requests were in flight at SIGTERM, additions among them, and finished after it.
        assert outcomes.in_flight_at_sigterm >= ADDERS
        assert acknowledged_after[1] >= 1, log
        # Everything acknowledged is stored, and nothing of a request closed without an answer.
        assert found.notifications == len(outcomes.acknowledged_ids)
        assert found.add_batches == len(outcomes.acknowledged_batches)
        assert found.add_sums == ADD_PAIRS * found.add_batches
        assert (found.unanswered_notifications, found.unanswered_batches) == (0, 0)
        # The delivery worker stopped after the HTTP workers, releasing whatever it held.
        assert survivors(delivery, timeout=0) == []
        assert found.held == 0


class TestStartUp:
    @pytest.mark.parametrize("module", ["fastapi1.serve", "fastapi1.worker", "fastapi1.db.migrate"])
    def test_production_without_database_url_exits_non_zero_naming_it(
        self, server_env: dict[str, str], module: str
    ) -> None:
        started = subprocess.run(
            [sys.executable, "-m", module],
            cwd=PROJECT_ROOT,
            env={**server_env, "ENVIRONMENT": "production"},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert started.returncode == 1
        assert "DATABASE_URL must be set when ENVIRONMENT=production" in started.stderr.decode()
        assert not Path(server_env["EMBEDDED_DATA_DIR"]).exists()

    def test_migrate_on_start_false_serves_without_migrating_and_the_job_migrates(
        self, admin_url: str, server_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        with throwaway_database(admin_url, migrate=False) as url:
            env = {**server_env, "DATABASE_URL": url, "MIGRATE_ON_START": "false", "WORKER_PROCESSES": "0"}
            server = start_server(env, tmp_path / "server.log")
            server.wait_until_serving()
            assert asyncio.run(has_version_table(url)) is False
            assert server.stop() == 0, server.log()

            job = subprocess.run(
                [sys.executable, "-m", "fastapi1.db.migrate"],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert job.returncode == 0, job.stderr.decode()
            assert asyncio.run(has_version_table(url)) is True


async def has_version_table(url: str) -> bool:
    """Whether alembic has migrated the database (its version table exists)."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return bool(await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"))
    finally:
        await connection.close()
