"""Prediction jobs across processes: SIGTERM lets a job finish, SIGKILL strands nothing, run_app.sh serves them."""

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx import AsyncClient

from fastapi1.db.engine import Database
from tests.delivery.conftest import wait_until
from tests.delivery.test_process import Workers
from tests.predictions.support import agents_body, finished, jobs, submit
from tests.test_end_to_end import RunningServer, free_port

FAST = {"BACKEND_DELAY_MIN_S": "0.001", "BACKEND_DELAY_MAX_S": "0.005"}


@pytest.fixture
def workers(jobs_url: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(jobs_url, tmp_path)
    yield started
    started.stop_all()


async def started(workers: Workers, index: int) -> None:
    async def predicting() -> bool:
        return "Worker predicting" in workers.log(index)

    await wait_until(predicting, within=30)


async def all_claimed(database: Database, ids: list[str], attempts: int) -> bool:
    rows = await jobs(database)
    return all(rows[prediction_id]["attempts"] == attempts for prediction_id in ids)


class TestWorkerProcess:
    async def test_sigterm_lets_the_jobs_in_flight_finish_and_exits_0(
        self, api: AsyncClient, database: Database, workers: Workers
    ) -> None:
        worker = workers.start(BACKEND_DELAY_MIN_S="0.7", BACKEND_DELAY_MAX_S="0.7")
        await started(workers, 0)
        ids = [await submit(api, {"input": f"text {index}"}) for index in range(5)]
        await wait_until(lambda: all_claimed(database, ids, 1), within=10)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, workers.log(0)
        assert {row["status"] for row in (await jobs(database)).values()} == {"complete"}, workers.log(0)

    async def test_a_worker_killed_mid_job_strands_nothing_another_completes_it_after_the_lease(
        self, api: AsyncClient, database: Database, workers: Workers
    ) -> None:
        doomed = workers.start(BACKEND_DELAY_MIN_S="60", BACKEND_DELAY_MAX_S="60", PREDICTION_LEASE_S="3")
        await started(workers, 0)
        body = agents_body({"a": ([1.0, 2.0], None, "m")})
        ids = [await submit(api, body) for _ in range(5)] + [await submit(api, {"input": "some text"})]
        await wait_until(lambda: all_claimed(database, ids, 1), within=10)
        doomed.kill()
        assert doomed.wait(timeout=10) == -signal.SIGKILL

        workers.start(**FAST)
        answers = [await finished(api, prediction_id, within=30) for prediction_id in ids]
        assert [answer["status"] for answer in answers] == ["complete"] * 6
        assert answers[0]["output"]["actions"] == {"a": {"action": 3.0}}
        # Each was claimed twice: by the killed worker (whose backend call never returned) and its heir.
        assert {row["attempts"] for row in (await jobs(database)).values()} == {2}


class TestRunApp:
    def test_the_launcher_answers_an_async_job_through_its_worker(self, jobs_url: str, tmp_path: Path) -> None:
        env = {key: value for key, value in os.environ.items() if key != "DATABASE_READ_URL"}
        env.update(DATABASE_URL=jobs_url, HOST="127.0.0.1", PORT=str(free_port()), WORKERS="1", **FAST)
        server = RunningServer(env, tmp_path / "server.log")
        try:
            server.wait_until_serving(timeout=60)
            accepted = httpx.post(
                f"{server.base_url}/predict", json={"input": "some text"}, headers={"Async-Mode": "true"}, timeout=10
            )
            assert accepted.status_code == 202, accepted.text
            deadline = time.monotonic() + 20
            while (answer := httpx.get(server.base_url + accepted.headers["location"], timeout=10)).status_code == 400:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.02)
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "complete"
            assert answer.json()["output"]["input"] == "some text"
            assert server.stop() == 0, server.log()
        finally:
            server.stop()
