"""Prediction jobs across worker processes: SIGTERM lets a job finish, SIGKILL strands nothing."""

import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from httpx import AsyncClient

from fastapi1.db.engine import Database
from tests.delivery.conftest import wait_until
from tests.delivery.test_process import Workers
from tests.predictions.support import agents_body, finished, jobs, submit
from tests.processes import kill_all

FAST = {"BACKEND_DELAY_MIN_S": "0.001", "BACKEND_DELAY_MAX_S": "0.005"}


@pytest.fixture
def workers(jobs_url: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(jobs_url, tmp_path)
    yield started
    kill_all([psutil.Process(process.pid) for process in started.started if process.poll() is None])
    for process in started.started:
        process.wait()
    for log in started.logs:
        log.close()


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
