"""Measure the prediction gateway in-process: many concurrent clients against the slow mock.

    .venv/bin/python scripts/measure_predictions.py [--requests 1000] [--agents 4] [--models 4]

The requests go through the real route, body parsing and batcher (httpx ASGITransport, no
socket, no database) to the in-process mock backend with its real 3-7 s delay per call.
Printed: wall time, requests/s, latency percentiles, backend calls and rows per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi1.config import Settings  # noqa: E402
from fastapi1.errors import install_error_handlers  # noqa: E402
from fastapi1.predictions.backends import BatchKey, MockBackend, Result, Row, call_backend  # noqa: E402
from fastapi1.predictions.batcher import Batcher, BatchPolicy  # noqa: E402
from fastapi1.predictions.controller import Gateway  # noqa: E402
from fastapi1.predictions.views import router  # noqa: E402


class CountingMock(MockBackend):
    """The mock backend, counting calls and rows."""

    def __init__(self, delay_min_s: float, delay_max_s: float) -> None:
        super().__init__(delay_min_s, delay_max_s)
        self.batch_sizes: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def predict(self, nn_model_name: str, agent_type: str | None, observations: list[list[float]]) -> list[float]:
        self.batch_sizes.append(len(observations))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await super().predict(nn_model_name, agent_type, observations)
        finally:
            self.in_flight -= 1


def body(client: int, agents: int, models: int) -> dict[str, object]:
    return {
        "client_id": f"client-{client}",
        "run_slug": "0",
        "observations": {
            f"agent-{agent}": {
                "observations": [0.1 * client, 0.2 * agent],
                "agent_type": "lr",
                "nn_model_name": f"model-{(client + agent) % models}",
            }
            for agent in range(agents)
        },
    }


async def timed_post(client: httpx.AsyncClient, payload: dict[str, object]) -> tuple[int, float]:
    started = time.perf_counter()
    response = await client.post("/predict", json=payload)
    return response.status_code, time.perf_counter() - started


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(arguments: argparse.Namespace) -> None:
    settings = Settings()
    backend = CountingMock(arguments.delay_min, arguments.delay_max)

    async def call(key: BatchKey, rows: list[Row]) -> Sequence[Result]:
        return await call_backend(backend, key, rows)

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    bodies = [body(client, arguments.agents, arguments.models) for client in range(arguments.requests)]
    transport = httpx.ASGITransport(app=app)
    async with (
        Batcher(BatchPolicy.from_settings(settings), call) as batcher,
        httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=None) as client,
    ):
        app.state.gateway = Gateway(batcher, settings.text_model_name)
        started = time.perf_counter()
        results = await asyncio.gather(*(timed_post(client, payload) for payload in bodies))
        wall = time.perf_counter() - started
    statuses = sorted({status for status, _ in results})
    latencies = [seconds for _, seconds in results]
    sizes = backend.batch_sizes
    print(f"requests            {arguments.requests} x {arguments.agents} agents over {arguments.models} models")
    print(f"mock delay          {arguments.delay_min}-{arguments.delay_max} s per call")
    print(f"statuses            {statuses}")
    print(f"wall time           {wall:.2f} s")
    print(f"requests/s          {arguments.requests / wall:.1f}")
    print(f"rows/s              {sum(sizes) / wall:.1f}")
    print(f"latency p50 / p99   {percentile(latencies, 0.5):.2f} s / {percentile(latencies, 0.99):.2f} s")
    print(f"latency max         {max(latencies):.2f} s")
    print(f"backend calls       {len(sizes)} (most in flight: {backend.most_in_flight})")
    print(f"rows per call       mean {statistics.fmean(sizes):.1f}, min {min(sizes)}, max {max(sizes)}")
    print(f"calls unbatched     {sum(sizes)} (one per agent row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--delay-min", type=float, default=3.0)
    parser.add_argument("--delay-max", type=float, default=7.0)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
