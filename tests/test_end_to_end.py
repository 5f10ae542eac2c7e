"""The real server, started as scripts/run_app.sh starts it (python -m fastapi1.serve)."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import PROJECT_ROOT, throwaway_database
from tests.processes import is_delivery_worker, is_forkserver, kill_all, pool_processes, running, survivors


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SERVE = [sys.executable, "-m", "fastapi1.serve"]


class RunningServer:
    """A server process (by default ``python -m fastapi1.serve``) and what it printed."""

    def __init__(self, env: dict[str, str], log_path: Path, command: list[str] = SERVE) -> None:
        self.port = int(env["PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log_file = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        """Poll the heartbeat until it answers, failing early if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            # Connecting fails fast until the server listens; once connected, the answer is waited
            # for however late: a heartbeat given up on would still be served, logged and counted, at
            # a time no test could tell (tests/test_metrics_instance.py counts them all).
            timeout = httpx.Timeout(max(deadline - time.monotonic(), 1.0), connect=1.0)
            try:
                if httpx.get(f"{self.base_url}/status/heartbeat", timeout=timeout).status_code == 204:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail(f"server did not answer within {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        """Send SIGTERM and wait for a clean exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.log_file.close()

    def log(self) -> str:
        """Everything the server printed so far."""
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a server on a free port, without the test run's DATABASE_URL."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "DATABASE_READ_URL"}}
    env.update(HOST="127.0.0.1", PORT=str(free_port()), WORKERS="1", EMBEDDED_DATA_DIR=str(tmp_path / "postgres"))
    return env


StartServer = Callable[..., RunningServer]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start servers that are always stopped after the test."""
    servers: list[RunningServer] = []

    def start(env: dict[str, str], log_path: Path, command: list[str] = SERVE) -> RunningServer:
        server = RunningServer(env, log_path, command)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def postmasters_of(data_dir: Path) -> list[psutil.Process]:
    """Running PostgreSQL server processes whose data directory is ``data_dir``."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(data_dir.resolve()) in cmdline:
            found.append(process)
    return found


class TestServing:
    def test_the_server_migrates_serves_logs_and_stops_on_sigterm(
        self, admin_url: str, server_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        with throwaway_database(admin_url, migrate=False) as url:
            server = start_server({**server_env, "DATABASE_URL": url}, tmp_path / "server.log")
            server.wait_until_serving()
            assert httpx.get(f"{server.base_url}/status/ready").json() == {"database": "ok"}
            assert server.stop() == 0
        line = rf"GET http://127\.0\.0\.1:{server.port}/status/heartbeat 204 \d+\.\d{{6}}s"
        assert re.search(line, server.log())

    def test_two_workers_share_one_embedded_postgres_that_stops_with_the_service(
        self, server_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        data_dir = Path(server_env["EMBEDDED_DATA_DIR"])
        server = start_server({**server_env, "WORKERS": "2"}, tmp_path / "server.log")
        server.wait_until_serving(timeout=120)
        assert httpx.get(f"{server.base_url}/status/ready").json() == {"database": "ok"}
        children = psutil.Process(server.process.pid).children()
        delivery_workers = [child for child in children if is_delivery_worker(child)]
        workers = [child for child in children if child.name() != "postgres" and child not in delivery_workers]
        assert len(workers) == 2, server.log()
        assert len(delivery_workers) == 1, server.log()
        assert len(postmasters_of(data_dir)) == 1

        assert server.stop() == 0, server.log()
        assert survivors(delivery_workers, timeout=0) == []
        assert postmasters_of(data_dir) == []
        assert (data_dir / "PG_VERSION").exists()


def http_workers(arbiter: psutil.Process, count: int, timeout: float = 60) -> list[psutil.Process]:
    """The arbiter's running HTTP workers, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while (
        len(workers := [child for child in arbiter.children() if running(child) and not is_delivery_worker(child)])
        != count
    ):
        assert time.monotonic() < deadline, workers
        time.sleep(0.05)
    return workers


class TestPoolLifetime:
    def test_a_sigkilled_http_worker_takes_its_pool_along_and_the_server_still_answers(
        self, database_url: str, server_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        env = {**server_env, "DATABASE_URL": database_url, "WORKERS": "2", "COMPUTE_WORKERS": "2"}
        server = start_server(env, tmp_path / "server.log")
        server.wait_until_serving()
        arbiter = psutil.Process(server.process.pid)
        originals = http_workers(arbiter, 2)
        victim = originals[0]
        pool = pool_processes(victim, workers=2)
        try:
            assert any(is_forkserver(process) for process in pool)
            victim.kill()
            assert survivors(pool, timeout=10) == [], server.log()
        finally:
            kill_all(pool)

        response = httpx.post(f"{server.base_url}/add_numbers", json={"numbers": [1, 2]}, timeout=10)
        assert (response.status_code, response.json()) == (200, {"sum": 3})
        (replacement,) = (worker for worker in http_workers(arbiter, 2) if worker not in originals)
        assert len(pool_processes(replacement, workers=2)) == 4  # forkserver, resource tracker, workers
        assert server.stop() == 0, server.log()


class TestControlSocket:
    def test_gunicorn_opens_no_control_socket_in_the_home_directory(
        self, database_url: str, server_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        home = tmp_path / "home"
        home.mkdir()
        env = {**server_env, "DATABASE_URL": database_url, "WORKERS": "2", "HOME": str(home)}
        # gunicorn prefers $XDG_RUNTIME_DIR to ~/.gunicorn; without it the default is under HOME.
        env.pop("XDG_RUNTIME_DIR", None)
        server = start_server(env, tmp_path / "server.log")
        server.wait_until_serving()
        http_workers(psutil.Process(server.process.pid), 2)
        assert not (home / ".gunicorn").exists()
        assert list(home.rglob("*.ctl")) == []
        assert server.stop() == 0, server.log()


class TestPlainUvicorn:
    def test_uvicorn_with_log_ini_logs_the_request_line(
        self, database_url: str, server_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        port = server_env["PORT"]
        command = [sys.executable, "-m", "uvicorn", "fastapi1.app:app", "--port", port, "--log-config", "log.ini"]
        server = start_server({**server_env, "DATABASE_URL": database_url}, tmp_path / "uvicorn.log", command)
        server.wait_until_serving()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so its exit status reports the signal
        assert server.stop() in {0, -signal.SIGTERM}
        assert re.search(rf"INFO +fastapi1 \[\d+\] GET http://127\.0\.0\.1:{port}/status/heartbeat 204 ", server.log())
