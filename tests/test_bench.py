"""The benchmark: its arithmetic (scripts/bench*.py), delivery checks, the predict scenario, locust users."""

import argparse
import asyncio
import contextlib
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from fastapi1.delivery.providers import Message, PermanentFailure, Providers, Simulator
from tests.conftest import PROJECT_ROOT, throwaway_database

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000/notifications/v1/multiple
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    95.31ms   40.12ms 412.77ms   71.20%
    Req/Sec   170.11     30.02   250.00     70.00%
  Latency Distribution
     50%   90.20ms
     75%  115.02ms
     90%  140.33ms
     99%  179.70ms
  3414 requests in 10.08s, 4.21MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:    338.69
Transfer/sec:    427.60KB
STATUSES {"201": 3410, "503": 4}
"""


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", PROJECT_ROOT / "scripts" / "bench.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module
    spec.loader.exec_module(module)
    return module


class TestWrkReport:
    def test_rate_percentiles_statuses_and_socket_errors_are_read(self, bench: ModuleType) -> None:
        rps, p50, p99, statuses, socket_errors = bench.parse_wrk(WRK_OUTPUT)
        assert (rps, p50, p99) == (338.69, 90.2, 179.7)
        assert statuses == {"201": 3410, "503": 4}
        assert socket_errors == 3


class TestRowsCheck:
    @pytest.mark.parametrize(
        ("stored", "verdict"),
        [(3_200, "lost 0 ok"), (6_400, "lost 0 ok"), (6_500, "CHECK FAILED"), (3_100, "lost 100")],
    )
    def test_no_row_may_be_missing_and_at_most_one_request_per_connection_extra(
        self, bench: ModuleType, stored: int, verdict: str
    ) -> None:
        result = bench.Result(
            scenario="multiple_100",
            connections=32,
            seconds=10,
            requests_per_second=1,
            notifications_per_second=1,
            p50_ms=1,
            p99_ms=1,
            errors=0,
            acknowledged=3_200,
            stored=stored,
            items_per_request=100,
        )
        assert verdict in result.rows_check
        assert ("CHECK FAILED" in result.rows_check) == (stored < 3_200 or stored > 3_200 + 32 * 100)


class TestV2Comparison:
    def test_each_round_runs_every_send_and_swaps_v1_and_v2(self, bench: ModuleType) -> None:
        assert [name for _, name in bench.v2_order(0)] == ["v1_email", "v2_email", "v1_sms", "v2_sms"]
        assert [name for _, name in bench.v2_order(1)] == ["v2_email", "v1_email", "v2_sms", "v1_sms"]
        sends = {s.name: s for s in bench.v2_scenarios({"email": "e", "sms": "s"})}
        assert {(s.path, s.ok_status, s.items) for s in sends.values()} == {
            ("/notifications/v1/", 201, 1),
            ("/v2/notifications/email", 201, 1),
            ("/v2/notifications/sms", 201, 1),
        }
        assert sends["v2_sms"].body["template_id"] == sends["v1_sms"].body["template_id"] == "s"

    def test_ratios_are_of_the_medians_and_of_each_round_s_own_pair(self, bench: ModuleType) -> None:
        rates = {(0, "v1_sms"): 100, (0, "v2_sms"): 90, (1, "v2_sms"): 120, (1, "v1_sms"): 100, (2, "v1_sms"): 50}
        rows = [{"round": n, "scenario": name, "requests_per_second": rate} for (n, name), rate in rates.items()]
        assert bench.v2_ratio(rows, "v1_sms", "v2_sms") == (1.05, [0.9, 1.2])  # round 2 ran v1 alone
        assert bench.v2_ratio(rows, "v1_email", "v2_email") is None


class TestDeliveryScenario:
    def test_variants_are_runs_of_worker_settings(self, bench: ModuleType) -> None:
        assert bench.delivery_variants("") == [{}]
        assert bench.delivery_variants("A=1,B=2; A=3") == [{"A": "1", "B": "2"}, {"A": "3"}]

    def test_the_checks_count_lost_unfinished_twice_sent_and_unsent_notifications(
        self, bench: ModuleType, admin_url: str
    ) -> None:
        delivery = sys.modules["bench_delivery"]
        ids = [uuid.uuid4() for _ in range(5)]
        lost = uuid.uuid4()  # acknowledged by the API, never stored
        rows = [(ids[0], "delivered"), (ids[1], "delivered"), (ids[2], "delivered"), (ids[3], "sending")]
        rows.append((ids[4], "permanent-failure"))
        # ids[0] sent once, ids[1] twice, ids[2] never; ids[3] sent but not final
        sends = ids[0].bytes + ids[1].bytes + ids[1].bytes + ids[3].bytes
        with throwaway_database(admin_url) as url:
            dsn = bench.asyncpg_dsn(url)
            asyncio.run(insert_notifications(dsn, rows))
            result = delivery.DeliveryResult(label="t", worker_env={})
            asyncio.run(delivery.check(dsn, [str(i) for i in [*ids, lost]], sends, result))
        assert (result.lost, result.not_final, result.sends) == (1, 1, 4)
        assert (result.delivered_twice, result.delivered_unsent, result.sent_not_delivered) == (1, 1, 1)
        assert result.statuses == {"delivered": 3, "sending": 1, "permanent-failure": 1}
        assert result.check.startswith("CHECK FAILED: lost 1, not final 1, delivered twice 1")
        assert delivery.DeliveryResult(label="t", worker_env={}).check == "ok"


async def insert_notifications(dsn: str, rows: list[tuple[uuid.UUID, str]]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for notification_id, status in rows:
            pending = status in {"created", "sending"}
            await connection.execute(
                'INSERT INTO notifications (id, "to", status, attempts, created_at, updated_at, next_attempt_at,'
                " completed_at) VALUES ($1, 'a@b.c', $2, 1, now(), now(), $3, $4)",
                notification_id,
                status,
                datetime.now(UTC) if pending else None,
                None if pending else datetime.now(UTC),
            )
    finally:
        await connection.close()


class TestCountingWorker:
    def test_only_the_sends_a_provider_accepted_are_counted(self, tmp_path: Path) -> None:
        spec = importlib.util.spec_from_file_location("bench_worker", PROJECT_ROOT / "scripts" / "bench_worker.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fd = os.open(tmp_path / "sends", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        simulator = Simulator(0)
        providers = module.counted(Providers(email=simulator, sms=simulator, simulator=simulator), fd)
        accepted, refused = uuid.uuid4(), uuid.uuid4()

        async def send_both() -> None:
            await providers.email.send(Message(accepted, "ada@example.com", None, "hi"))
            with pytest.raises(PermanentFailure):
                await providers.simulator.send(Message(refused, "perm-fail@simulator.notify", None, "hi"))

        try:
            asyncio.run(send_both())
        finally:
            os.close(fd)
        assert (tmp_path / "sends").read_bytes() == accepted.bytes


@pytest.fixture(scope="module")
def predict_load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("predict_load", PROJECT_ROOT / "scripts" / "predict_load.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["predict_load"] = module
    spec.loader.exec_module(module)
    return module


class TestPredictClientJudgesAnswers:
    def test_each_agent_must_get_the_sum_of_its_own_observations(self, predict_load: ModuleType) -> None:
        body, expected = predict_load.payload(7)
        agents = json.loads(body)["observations"]
        assert len(agents) == 4
        assert len({agent["nn_model_name"] for agent in agents.values()}) == 4
        right = {"actions": {name: {"action": value} for name, value in expected.items()}, "response_time": 1.0}
        assert predict_load.outcome_of(200, json.dumps(right).encode(), expected) == ("200", 1.0)
        names = list(expected)
        swapped = dict(expected, **{names[0]: expected[names[1]], names[1]: expected[names[0]]})
        mixed = {"actions": {name: {"action": value} for name, value in swapped.items()}}
        assert predict_load.outcome_of(200, json.dumps(mixed).encode(), expected) == ("wrong", None)
        assert predict_load.outcome_of(200, b"not json", expected) == ("wrong", None)
        assert predict_load.outcome_of(503, b"{}", expected) == ("503", None)


class TestMetricTotals:
    def test_samples_of_every_label_set_are_summed(self, bench: ModuleType) -> None:
        text = (
            "# TYPE fastapi1_backend_batches_total counter\n"
            'fastapi1_backend_batches_total{agent_type="lr",nn_model_name="a"} 3.0\n'
            'fastapi1_backend_batches_total{agent_type="lr",nn_model_name="b"} 4.0\n'
            "fastapi1_backend_batch_rows_sum 250.0\n"
        )
        assert bench.metric_total(text, "fastapi1_backend_batches_total") == 7.0
        assert bench.metric_total(text, "fastapi1_backend_batch_rows_sum") == 250.0
        assert bench.metric_total(text, "fastapi1_backend_batch_rows_count") is None


@pytest.fixture(scope="module")
def served(admin_url: str, tmp_path_factory: pytest.TempPathFactory, bench: ModuleType) -> Iterator[Any]:
    """The real server (python -m fastapi1.serve, one worker) with a mock backend of 1-5 ms."""
    log = tmp_path_factory.mktemp("predict") / "service.log"
    env = {
        **os.environ,
        "DATABASE_URL": "",
        "PORT": str(bench.free_port()),
        "HOST": "127.0.0.1",
        "WORKERS": "1",
        "WORKER_PROCESSES": "0",
        "BACKEND_DELAY_MIN_S": "0.001",
        "BACKEND_DELAY_MAX_S": "0.005",
    }
    env.pop("BACKEND_URL", None)
    with throwaway_database(admin_url) as url:
        env["DATABASE_URL"] = url
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "fastapi1.serve"], cwd=PROJECT_ROOT, env=env, stdout=output, stderr=output
            )
            try:
                base = f"http://127.0.0.1:{env['PORT']}"
                deadline = time.monotonic() + 60
                while True:
                    assert process.poll() is None, log.read_text()
                    with contextlib.suppress(httpx.TransportError):
                        if httpx.get(f"{base}/status/heartbeat", timeout=1).status_code == 204:
                            break
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
                yield bench.Service(base, process, log)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


class TestPredictScenario:
    @pytest.mark.parametrize("client", ["raw", "httpx"])
    def test_clients_loop_and_the_service_is_measured_over_the_window(
        self, bench: ModuleType, served: Any, client: str
    ) -> None:
        options = argparse.Namespace(predict_seconds=2.0, predict_warmup=0.5, predict_client=client)
        result = bench.run_predict_clients(served, 40, options)
        assert result["errors"] == {}
        assert result["ok"] > 40  # every client looped more than once
        assert result["backend_counted_from"] in {"log", "metrics"}
        # every row of the window went to the backend, batched: fewer calls than rows
        assert result["backend_rows"] >= 4 * result["ok"] * 0.5
        assert 0 < result["backend_calls"] < result["backend_rows"]
        assert result["rows_per_call"] == pytest.approx(result["backend_rows"] / result["backend_calls"])
        assert result["calls_saved_ratio"] > 1
        assert 0 < result["service_cpu_cores"] <= 2.5
        assert result["p50_s"] <= result["p99_s"] <= result["max_s"]
        assert 0 < result["server_p50_s"] <= result["server_p99_s"] <= result["max_s"]


def locust_requests(base: str, tmp_path: Path, *arguments: str) -> dict[str, int]:
    """Run locustfile.py headless for a few seconds; requests per name."""
    prefix = tmp_path / f"stats{len(list(tmp_path.iterdir()))}"
    subprocess.run(
        [
            *(str(Path(sys.executable).parent / "locust"), "-f", str(PROJECT_ROOT / "locustfile.py"), "--headless"),
            *("-u", "4", "-r", "4", "-t", "4s", "--host", base, "--csv", str(prefix), "--only-summary", *arguments),
        ],
        capture_output=True,
        check=True,
        cwd=tmp_path,
    )
    with (prefix.parent / f"{prefix.name}_stats.csv").open() as stats:
        return {row["Name"]: int(row["Request Count"]) for row in csv.DictReader(stats) if row["Name"] != "Aggregated"}


class TestLocustUsers:
    def test_the_predict_user_runs_only_when_its_tag_is_asked_for(self, served: Any, tmp_path: Path) -> None:
        default = locust_requests(served.base, tmp_path)
        assert "/schedule" not in default
        assert default.get("/notifications/v1/multiple", 0) > 0
        multiple = locust_requests(served.base, tmp_path, "--tags", "multiple")
        assert set(multiple) == {"/notifications/v1/multiple"}
        predict = locust_requests(served.base, tmp_path, "--tags", "predict")
        assert set(predict) == {"/schedule"}


class TestBrokerPrefix:
    def test_a_broker_run_without_a_prefix_uses_its_own_and_deletes_its_queues(
        self, bench: ModuleType, broker_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def declare(name: str, passive: bool = False) -> None:
            connection = await aio_pika.connect(broker_url)
            async with connection:
                channel = await connection.channel()
                await channel.declare_queue(name, durable=True, passive=passive)

        monkeypatch.setenv("BROKER_URL", broker_url)
        monkeypatch.delenv("BROKER_PREFIX", raising=False)
        with bench.throwaway_broker_prefix():
            prefix = os.environ["BROKER_PREFIX"]
            asyncio.run(declare(f"{prefix}.deliveries"))  # as the service's worker would
        assert "BROKER_PREFIX" not in os.environ
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            asyncio.run(declare(f"{prefix}.deliveries", passive=True))

    def test_an_explicit_prefix_is_left_alone(self, bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BROKER_URL", "amqp://guest:guest@127.0.0.1:1/")
        monkeypatch.setenv("BROKER_PREFIX", "theirs")
        with bench.throwaway_broker_prefix():
            assert os.environ["BROKER_PREFIX"] == "theirs"
        assert os.environ["BROKER_PREFIX"] == "theirs"  # and nothing was deleted (no broker at port 1 to ask)
