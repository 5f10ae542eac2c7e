"""Measure what the limits cost per call: check_request and reserve_sends, each store, batched or not.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python scripts/measure_limits.py [--rounds 5] [--redis-url redis://127.0.0.1:6379/0]

A throwaway database is created on DATABASE_URL's server, migrated and dropped afterwards;
Redis keys go under a prefix of the run's own, deleted afterwards. One process, one event
loop: ``concurrency`` tasks (1, 8, 100) make calls one after another, rounds of every configuration
alternating so that each sees the same machine. Each round uses fresh keys and services,
given their rows (one untimed call each) before the clock starts, and stays far below the
limits: what is measured is the admitted path. Printed per configuration, medians over the
rounds: wall time per call (at concurrency 1 a call's latency; at 100 the inverse of the
throughput), this process's CPU per call, and the latency p50 / p99 of single calls.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from fastapi1.config import Settings, to_async_url  # noqa: E402
from fastapi1.db.engine import Database  # noqa: E402
from fastapi1.limits import Limiter, open_limiter  # noqa: E402
from tests.conftest import throwaway_database  # noqa: E402
from tests.limits.conftest import delete_prefix  # noqa: E402

KEYS = 4
CALLS = {1: 400, 8: 1_600, 100: 4_000}


@dataclass(frozen=True)
class Config:
    """One measured configuration."""

    store: str
    operation: str
    batched: bool
    concurrency: int

    @property
    def label(self) -> str:
        """How the configuration is printed."""
        mode = "batched" if self.batched else "unbatched"
        return f"{self.store:8} {self.operation:13} {mode:9} c={self.concurrency:<3}"


@dataclass
class Sample:
    """One round of one configuration."""

    wall_per_call_us: float
    cpu_per_call_us: float
    latencies_ms: list[float]


def operation(limiter: Limiter, name: str, targets: list[uuid.UUID]) -> Callable[[int], Awaitable[object]]:
    """The call to measure, on the i-th target (round-robin)."""
    if name == "check_request":
        return lambda i: limiter.check_request(targets[i % len(targets)], "normal")
    return lambda i: limiter.reserve_sends(targets[i % len(targets)], 1)


async def one_round(limiter: Limiter, config: Config) -> Sample:
    """Warm fresh targets up, then make the round's calls from ``concurrency`` tasks."""
    targets = [uuid.uuid4() for _ in range(KEYS)]
    call = operation(limiter, config.operation, targets)
    await asyncio.gather(*(call(i) for i in range(KEYS)))
    calls = CALLS[config.concurrency]
    latencies: list[float] = []
    counter = iter(range(calls))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - started) * 1000)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(config.concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Sample(wall / calls * 1e6, cpu / calls * 1e6, latencies)


def settings_for(config: Config, stores: dict[str, Settings]) -> Settings:
    """The settings of a configuration's store; unbatched Redis gets a connection per caller.

    With the pool's ten, unbatched Redis calls measured the queue for them (p99 past 0.8 s).
    """
    chosen = stores[config.store]
    if config.store == "redis" and not config.batched:
        chosen = chosen.model_copy(update={"db_pool_size": max(CALLS)})
    return chosen


async def measure(database_url: str, redis_url: str | None, rounds: int) -> dict[Config, list[Sample]]:
    """Every configuration, ``rounds`` times, alternating."""
    prefix = f"measure-{secrets.token_hex(6)}"
    base = Settings(database_url=database_url, rate_limit_per_minute=3_000, service_daily_limit=10_000_000)
    stores = {"postgres": base}
    if redis_url:
        stores["redis"] = base.model_copy(update={"redis_url": SecretStr(redis_url), "redis_prefix": prefix})
    configs = [
        Config(store, name, batched, concurrency)
        for store in stores
        for name in ("check_request", "reserve_sends")
        for batched in (True, False)
        for concurrency in CALLS
    ]
    samples: dict[Config, list[Sample]] = {config: [] for config in configs}
    database = Database.connect(database_url, None, base)
    try:
        for _ in range(rounds):
            for config in configs:
                async with open_limiter(settings_for(config, stores), database, batched=config.batched) as limiter:
                    samples[config].append(await one_round(limiter, config))
    finally:
        await database.dispose()
        if redis_url:
            await delete_prefix(redis_url, prefix)
    return samples


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(samples: dict[Config, list[Sample]]) -> None:
    """Print the medians, and batched against unbatched per store, operation and concurrency."""
    print(f"{'configuration':40} {'wall/call µs':>12} {'cpu/call µs':>11} {'p50 ms':>7} {'p99 ms':>7}")
    walls: dict[Config, float] = {}
    for config, rounds in samples.items():
        walls[config] = statistics.median(sample.wall_per_call_us for sample in rounds)
        cpu = statistics.median(sample.cpu_per_call_us for sample in rounds)
        p50 = statistics.median(percentile(sample.latencies_ms, 0.5) for sample in rounds)
        p99 = statistics.median(percentile(sample.latencies_ms, 0.99) for sample in rounds)
        print(f"{config.label:40} {walls[config]:12.0f} {cpu:11.0f} {p50:7.2f} {p99:7.2f}")
    print("\nunbatched / batched, wall per call:")
    for config, wall in walls.items():
        if config.batched:
            unbatched = walls[Config(config.store, config.operation, False, config.concurrency)]
            label = f"{config.store} {config.operation} c={config.concurrency}"
            print(f"  {label:35} {unbatched / wall:5.2f}x")


def main() -> None:
    """Parse the arguments, measure in a throwaway database, print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--no-redis", action="store_true", help="PostgreSQL only")
    arguments = parser.parse_args()
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url:
        parser.error("set DATABASE_URL to a PostgreSQL server the script may create a database on")
    with throwaway_database(to_async_url(admin_url)) as url:
        samples = asyncio.run(measure(url, None if arguments.no_redis else arguments.redis_url, arguments.rounds))
    report(samples)


if __name__ == "__main__":
    main()
