"""GET /metrics of a real instance (python -m fastapi1.serve, two HTTP workers and a worker process): one scrape
of any HTTP worker covers every process."""

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import pytest

from tests.conftest import throwaway_database
from tests.processes import is_delivery_worker
from tests.scrapes import Samples, parse, total, value
from tests.test_end_to_end import RunningServer, free_port, http_workers

TRANSITIONS = "fastapi1_notifications_transitions_total"
STALE = "counter_1.db"
T = TypeVar("T")


@dataclass
class Instance:
    server: RunningServer
    directory: Path
    api_pids: set[int]
    worker_pid: int

    def scrape(self) -> Samples:
        # A new connection each time, so that the scrapes land on either HTTP worker.
        response = httpx.get(f"{self.server.base_url}/metrics", timeout=10, headers={"Connection": "close"})
        assert response.status_code == 200
        return parse(response.text)

    def heartbeats_logged(self) -> Counter[int]:
        """Heartbeats answered, by the process that logged them."""
        line = rf"\[(\d+)\] GET http://127\.0\.0\.1:{self.server.port}/status/heartbeat 204 "
        return Counter(int(pid) for pid in re.findall(line, self.server.log()))

    def heartbeat(self) -> int:
        """One heartbeat on a new connection (so that either HTTP worker may answer): the process that logged it.

        The request log writes its line after the response is sent, so the client may read the log
        before the line is there (2-3% of heartbeats with two CPU burners on two cores): the line is
        waited for, by the request id the response carries.
        """
        response = httpx.get(f"{self.server.base_url}/status/heartbeat", timeout=10, headers={"Connection": "close"})
        assert response.status_code == 204
        line = re.compile(rf"\[(\d+)\] GET .* request_id={re.escape(response.headers['x-request-id'])}$", re.MULTILINE)
        match = poll(lambda: line.search(self.server.log()))
        assert match is not None
        return int(match[1])


@pytest.fixture(scope="module")
def instance(admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """An instance with two HTTP workers and one worker process, its metrics in a directory of the test's."""
    tmp_path = tmp_path_factory.mktemp("instance")
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / STALE).write_bytes(b"left by a previous run")
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "DATABASE_READ_URL"}}
    with throwaway_database(admin_url) as url:
        env |= {
            "DATABASE_URL": url,
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "WORKERS": "2",
            "WORKER_PROCESSES": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "BACKEND_DELAY_MIN_S": "0.001",
            "BACKEND_DELAY_MAX_S": "0.005",
        }
        server = RunningServer(env, tmp_path / "server.log")
        try:
            server.wait_until_serving()
            arbiter = psutil.Process(server.process.pid)
            api_pids = {worker.pid for worker in http_workers(arbiter, 2)}
            (worker,) = (child for child in arbiter.children() if is_delivery_worker(child))
            yield Instance(server, directory, api_pids, worker.pid)
        finally:
            server.stop()


def poll(condition: Callable[[], T], within: float = 30) -> T:
    """Call ``condition`` until it returns something true, and return that."""
    deadline = time.monotonic() + within
    while not (met := condition()):
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)
    return met


class TestInstanceMetrics:
    def test_the_metrics_of_a_previous_run_are_wiped_at_start(self, instance: Instance) -> None:
        assert not (instance.directory / STALE).exists()
        # The worker process's file appears when it imports fastapi1.metrics. It starts beside the
        # HTTP workers and nothing orders that import before the first heartbeat answered, which is all
        # the fixture waits for (on a loaded machine it came after: the file was not there yet).
        poll(lambda: (instance.directory / f"gauge_livesum_{instance.worker_pid}.db").exists())

    def test_every_scrape_sums_the_requests_of_both_http_workers(self, instance: Instance) -> None:
        # Heartbeats until both HTTP workers have answered some.
        answered: set[int] = set()
        for _ in range(400):
            answered.add(instance.heartbeat())
            if answered == instance.api_pids:
                break
        # Now every heartbeat answered is in the log, for good: this test's were waited for, and the
        # fixture's (wait_until_serving) were answered before them by these same two workers, each of
        # which writes a request's line in the same step of its loop as the response. The count
        # cannot grow any more, and each of those requests is counted in that step too.
        served = instance.heartbeats_logged()
        assert set(served) == instance.api_pids, served

        def heartbeats(samples: Samples) -> float:
            return total(samples, "fastapi1_http_requests_total", route="/status/heartbeat", status="204")

        # Each process writes its request counts within FLUSH_INTERVAL_S; then every scrape has them all.
        poll(lambda: heartbeats(instance.scrape()) == served.total())
        for _ in range(6):
            samples = instance.scrape()
            assert heartbeats(samples) == served.total(), (served, samples)

    def test_every_scrape_includes_the_worker_process_transitions(self, instance: Instance) -> None:
        # Created on an HTTP worker; claimed and delivered by the worker process.
        for recipient in ("someone@example.com", "+447700900123"):
            response = httpx.post(f"{instance.server.base_url}/notifications/v1/", json={"to": recipient}, timeout=10)
            assert response.status_code == 201, response.text
        poll(lambda: value(instance.scrape(), TRANSITIONS, from_status="sending", to_status="delivered") == 2)
        for _ in range(4):
            samples = instance.scrape()
            assert value(samples, TRANSITIONS, from_status="none", to_status="created") == 2
            assert value(samples, TRANSITIONS, from_status="created", to_status="sending") == 2

    def test_a_prediction_moves_the_backend_metrics(self, instance: Instance) -> None:
        agent = {"observations": [1, 2], "nn_model_name": "m"}
        body = {"client_id": "c", "run_slug": "0", "observations": {"a": agent}}
        response = httpx.post(f"{instance.server.base_url}/predict", json=body, timeout=10)
        assert response.status_code == 200, response.text
        for _ in range(4):
            samples = instance.scrape()
            assert value(samples, "fastapi1_backend_batches_total", nn_model_name="m", agent_type="") == 1
            assert value(samples, "fastapi1_prediction_queue_rows") == 0

    def test_stopping_marks_every_process_dead(self, instance: Instance) -> None:
        assert instance.server.stop() == 0, instance.server.log()
        # No live gauge of an exited process is left to be summed.
        assert list(instance.directory.glob("gauge_livesum_*.db")) == []
        assert list(instance.directory.glob("counter_*.db"))
