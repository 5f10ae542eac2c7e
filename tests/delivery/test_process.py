"""The worker as a process: SIGTERM, SIGKILL mid-delivery, and run_app.sh's launcher end to end."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx
import psutil
import pytest
from httpx import AsyncClient

from fastapi1.db.engine import Database
from tests.conftest import PROJECT_ROOT
from tests.delivery.conftest import create, statuses, wait_final, wait_until
from tests.processes import is_delivery_worker, kill_all, survivors
from tests.test_end_to_end import RunningServer, free_port

WORKER = [sys.executable, "-m", "fastapi1.worker"]


class Workers:
    """Worker processes started by a test, each logging to a file; whatever is left is killed after it."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.env = {key: value for key, value in os.environ.items() if key != "DATABASE_READ_URL"}
        self.env.update(DATABASE_URL=database_url, DELIVERY_POLL_INTERVAL_S="30", SMTP_HOST="")
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: list[BinaryIO] = []

    def start(self, **settings: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.started)}.log").open("wb")
        self.logs.append(log)
        process = subprocess.Popen(
            WORKER, cwd=PROJECT_ROOT, env=self.env | settings, stdout=log, stderr=subprocess.STDOUT
        )
        self.started.append(process)
        return process

    def log(self, index: int) -> str:
        return (self.log_dir / f"worker-{index}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        """Kill whatever still runs, reap every process, close the logs."""
        kill_all([psutil.Process(process.pid) for process in self.started if process.poll() is None])
        for process in self.started:
            process.wait()
        for log in self.logs:
            log.close()


@pytest.fixture
def workers(delivery_url: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(delivery_url, tmp_path)
    yield started
    started.stop_all()


async def in_status(database: Database, ids: list[str], status: str) -> bool:
    return all(row["status"] == status for row in (await statuses(database, ids)).values())


class TestWorkerProcess:
    async def test_sigterm_lets_deliveries_finish_and_exits_0(
        self, api: AsyncClient, database: Database, workers: Workers
    ) -> None:
        worker = workers.start(SIMULATOR_DELAY_MS="700")
        await wait_until(lambda: log_says(workers, 0, "Worker delivering"), within=30)
        ids = await create(api, [f"user{index}@example.com" for index in range(20)])
        await wait_until(lambda: in_status(database, ids, "sending"), within=10)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, workers.log(0)
        assert await in_status(database, ids, "delivered"), workers.log(0)
        assert "Worker stopped" in workers.log(0)

    async def test_a_worker_killed_mid_delivery_strands_nothing_another_takes_over_after_the_lease(
        self, api: AsyncClient, database: Database, workers: Workers
    ) -> None:
        doomed = workers.start(SIMULATOR_DELAY_MS="60000", DELIVERY_LEASE_S="4")
        await wait_until(lambda: log_says(workers, 0, "Worker delivering"), within=30)
        ids = await create(api, [f"user{index}@example.com" for index in range(50)])
        await wait_until(lambda: in_status(database, ids, "sending"), within=10)
        doomed.kill()
        assert doomed.wait(timeout=10) == -signal.SIGKILL

        workers.start()
        rows = await wait_final(database, ids, within=30)
        # Each was claimed twice: by the killed worker (whose sends never finished) and its heir.
        assert {(row["status"], row["attempts"]) for row in rows.values()} == {("delivered", 2)}


async def log_says(workers: Workers, index: int, text: str) -> bool:
    return text in workers.log(index)


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "DATABASE_READ_URL"}}
    env.update(HOST="127.0.0.1", PORT=str(free_port()), WORKERS="1", EMBEDDED_DATA_DIR=str(tmp_path / "postgres"))
    return env


class TestRunApp:
    def test_the_launcher_on_the_embedded_database_delivers_what_http_creates(
        self, embedded_env: dict[str, str], tmp_path: Path
    ) -> None:
        server = RunningServer(embedded_env, tmp_path / "server.log")
        try:
            server.wait_until_serving(timeout=120)
            delivery_workers = [
                child for child in psutil.Process(server.process.pid).children() if is_delivery_worker(child)
            ]
            assert len(delivery_workers) == 1, server.log()
            created = httpx.post(f"{server.base_url}/notifications/v1/", json={"to": "ada@example.com"}, timeout=10)
            assert created.status_code == 201, created.text
            url = f"{server.base_url}/notifications/v1/{created.json()['id']}"
            deadline = time.monotonic() + 10
            while (body := httpx.get(url, timeout=10).json())["status"] != "delivered":
                assert time.monotonic() < deadline, body
                time.sleep(0.02)
            assert body["sent_at"] is not None
            assert body["completed_at"] is not None
            assert server.stop() == 0, server.log()
            assert survivors(delivery_workers, timeout=5) == []
        finally:
            server.stop()
