"""Closed-loop load on POST /predict: N clients, each looping on a request of 4 agents over 4 models.

    .venv/bin/python scripts/predict_load.py --url http://127.0.0.1:8000 --clients 1000 --seconds 60

Each client holds one keep-alive connection and sends its next request as soon as the last
one is answered (the seed 004 request's shape: ``client_id``, ``run_slug``, agents with
``observations``, ``agent_type`` "lr" and ``nn_model_name``; here 4 agents, each for a
different one of 4 models). Every answer is checked: each agent's action must be the sum of
its own observations, which the mock backend computes, so a mixed-up split-back counts as an
error. Requests started in the ``--warmup`` seconds are not counted; requests started in the
measured window are awaited after it ends, so their whole latency counts.

The default client is raw asyncio streams (one connection per client, a request pre-encoded
once, at most ``--connect-concurrency`` connections being opened at once). ``--client httpx``
uses one ``httpx.AsyncClient`` whose pool holds one connection per client; measured at 1,000
clients it was the bottleneck itself: 20 requests/s and p50 32 s at the client while the
service answered within 9.4 s (its own ``response_time`` p99), against 130-146 requests/s with
raw streams (see the README's predict scenario). The output is one JSON
object on the last line of stdout, after the lines ``window start`` and ``window end``
printed as the measured window opens and closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

AGENTS = 4
MODELS = 4
RESPONSE_TIMEOUT_S = 120.0


@dataclass
class Tally:
    """What the clients saw: one entry per request started in the measured window."""

    window_start: float
    window_end: float
    latencies: list[float] = field(default_factory=list)
    server_times: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    started_before: int = 0

    def record(self, started: float, seconds: float, outcome: str, server_time: float | None = None) -> None:
        """Count one finished request if it started inside the window.

        Args:
            started: Loop time the request was sent.
            seconds: Its latency.
            outcome: ``"200"`` for a correct answer, else the status or the failure's name.
            server_time: The answer's ``response_time`` (the service's own receipt-to-answer seconds).
        """
        if started < self.window_start:
            self.started_before += 1
        elif started < self.window_end:
            self.statuses[outcome] += 1
            if outcome == "200":
                self.latencies.append(seconds)
            if server_time is not None:
                self.server_times.append(server_time)


def payload(client: int) -> tuple[bytes, dict[str, float]]:
    """The client's request body and the action expected for each of its agents.

    Args:
        client: The client's number.

    Returns:
        The JSON body, and ``{agent: sum(observations)}``.
    """
    observations = {
        f"agent-{agent}": {
            "observations": [round(0.001 * client, 6), float(agent)],
            "agent_type": "lr",
            "nn_model_name": f"model-{agent % MODELS}",
        }
        for agent in range(AGENTS)
    }
    expected = {name: sum(agent["observations"]) for name, agent in observations.items()}  # type: ignore[arg-type]
    body = {"client_id": f"bench-{client}", "run_slug": "0", "observations": observations}
    return orjson.dumps(body), expected


def outcome_of(status: int, body: bytes, expected: dict[str, float]) -> tuple[str, float | None]:
    """Judge one answer.

    Args:
        status: The HTTP status.
        body: The response body.
        expected: Each agent's expected action.

    Returns:
        ``"200"`` when every agent got its own action, ``"wrong"`` when not, else the status;
        and the answer's ``response_time`` when it is a correct one.
    """
    if status != 200:
        return str(status), None
    try:
        answer = orjson.loads(body)
        actions = answer["actions"]
        ok = actions.keys() == expected.keys() and all(
            abs(actions[name]["action"] - value) < 1e-9 for name, value in expected.items()
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        ok = False
    return ("200", float(answer["response_time"])) if ok else ("wrong", None)


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool, bytes]:
    """Send one pre-encoded request on a keep-alive connection and read its answer.

    Args:
        reader: The connection's reader.
        writer: The connection's writer.
        request: The whole request, head and body.

    Returns:
        The status, whether the server closes the connection, and the body.
    """
    async with asyncio.timeout(RESPONSE_TIMEOUT_S):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in lines[1:] if ":" in line)
        }
        content = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split(" ", 2)[1]), headers.get("connection", "").lower() == "close", content


async def raw_client(
    number: int, host: str, port: int, tally: Tally, connects: asyncio.Semaphore, stop_at: float
) -> None:
    """One client on raw asyncio streams: a keep-alive connection, reopened after any failure.

    Args:
        number: The client's number.
        host: Server host.
        port: Server port.
        tally: Where outcomes go.
        connects: Bounds connections being opened at once (the listen backlog is finite).
        stop_at: Loop time after which no request is started.
    """
    body, expected = payload(number)
    request = (
        f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        try:
            async with connects:
                reader, writer = await asyncio.open_connection(host, port)
        except OSError as error:
            tally.record(loop.time(), 0.0, f"connect:{type(error).__name__}")
            await asyncio.sleep(0.5)
            continue
        try:
            closed = False
            while not closed and loop.time() < stop_at:
                started = loop.time()
                status, closed, content = await exchange(reader, writer, request)
                tally.record(started, loop.time() - started, *outcome_of(status, content, expected))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            tally.record(started, loop.time() - started, type(error).__name__)
        finally:
            writer.close()


async def httpx_client(number: int, client: httpx.AsyncClient, tally: Tally, stop_at: float) -> None:
    """One client on a shared httpx.AsyncClient.

    Args:
        number: The client's number.
        client: The shared client, its pool sized to the number of clients.
        tally: Where outcomes go.
        stop_at: Loop time after which no request is started.
    """
    body, expected = payload(number)
    headers = {"content-type": "application/json"}
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        started = loop.time()
        try:
            response = await client.post("/predict", content=body, headers=headers)
        except httpx.HTTPError as error:
            tally.record(started, loop.time() - started, type(error).__name__)
            await asyncio.sleep(0.1)
            continue
        tally.record(started, loop.time() - started, *outcome_of(response.status_code, response.content, expected))


def mark(edge: str) -> None:
    """Print ``window start`` or ``window end`` at once.

    Args:
        edge: ``"start"`` or ``"end"``.
    """
    sys.stdout.write(f"window {edge}\n")
    sys.stdout.flush()


def percentile(ordered: list[float], fraction: float) -> float:
    """A percentile of sorted values (nearest rank); 0 for none.

    Args:
        ordered: Sorted values.
        fraction: 0.5 for the median, 0.99 for p99.
    """
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def run(options: argparse.Namespace) -> dict[str, Any]:
    """Drive the load and summarise it.

    Args:
        options: The command line.

    Returns:
        The summary printed as JSON.
    """
    loop = asyncio.get_running_loop()
    begun = loop.time()
    tally = Tally(begun + options.warmup, begun + options.warmup + options.seconds)
    url = urlsplit(options.url)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    # Marks on stdout for a caller measuring the service over the same window (scripts/bench.py).
    loop.call_at(tally.window_start, mark, "start")
    loop.call_at(tally.window_end, mark, "end")
    if options.client == "raw":
        connects = asyncio.Semaphore(options.connect_concurrency)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        await asyncio.gather(
            *(raw_client(n, host, port, tally, connects, tally.window_end) for n in range(options.clients))
        )
    else:
        limits = httpx.Limits(max_connections=options.clients, max_keepalive_connections=options.clients)
        timeout = httpx.Timeout(RESPONSE_TIMEOUT_S, pool=None)
        async with httpx.AsyncClient(base_url=options.url, limits=limits, timeout=timeout, trust_env=False) as client:
            await asyncio.gather(*(httpx_client(n, client, tally, tally.window_end) for n in range(options.clients)))
    drained = loop.time() - tally.window_end
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    ordered = sorted(tally.latencies)
    served = sorted(tally.server_times)
    ok = tally.statuses.get("200", 0)
    return {
        "client": options.client,
        "clients": options.clients,
        "seconds": options.seconds,
        "warmup_seconds": options.warmup,
        "requests": sum(tally.statuses.values()),
        "ok": ok,
        "requests_per_second": ok / options.seconds,
        "rows_per_second": ok * AGENTS / options.seconds,
        "p50_s": percentile(ordered, 0.50),
        "p90_s": percentile(ordered, 0.90),
        "p99_s": percentile(ordered, 0.99),
        "max_s": ordered[-1] if ordered else 0.0,
        # The same requests as the service timed them (receipt to answer): the difference is
        # time spent in the kernel's queues and the two event loops, not in the batcher.
        "server_p50_s": percentile(served, 0.50),
        "server_p99_s": percentile(served, 0.99),
        "errors": {status: count for status, count in tally.statuses.items() if status != "200"},
        "drain_seconds": drained,
        "client_cpu_seconds": (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime),
        "client_wall_seconds": loop.time() - begun,
    }


def raise_open_files_limit(clients: int) -> None:
    """Raise the soft limit on open files to the hard one when the clients need more.

    Args:
        clients: Connections to hold at once.

    Raises:
        SystemExit: When even the hard limit is too low.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = clients + 64
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"{clients} clients need {needed} open files; the hard limit is {hard} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main() -> None:
    """Parse the command line, run, print the JSON summary."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", required=True, help="the service's base URL")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window, not counted")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--connect-concurrency", type=int, default=256, help="connections opened at once at most")
    options = parser.parse_args()
    raise_open_files_limit(options.clients)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    summary = asyncio.run(run(options))
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
