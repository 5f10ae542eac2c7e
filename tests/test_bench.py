"""The benchmark's own arithmetic: reading wrk's report and checking rows (scripts/bench.py)."""

import importlib.util
import sys
from types import ModuleType

import pytest

from tests.conftest import PROJECT_ROOT

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
