"""HTTP metrics: requests, durations and requests in progress by method and route template (pure ASGI)."""

import asyncio
import bisect
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi.routing import iter_route_contexts
from prometheus_client.metrics import Counter, Gauge
from starlette._utils import get_route_path
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi1.metrics import (
    HTTP_DURATION_BUCKETS,
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    HTTP_REQUESTS_IN_PROGRESS,
    OTHER,
    CountedHistogram,
)

UNMATCHED = "unmatched"
# Longest delay before this process's request counts and requests in progress reach the metrics.
FLUSH_INTERVAL_S = 1.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Candidate:
    """A route as the router matches it: path pattern, methods (None: any), and template."""

    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    template: str


class RouteLabels:
    """The route label of a request: the template of the route the router will pick.

    The router's algorithm (the first full match in order, else the first route whose path
    matches but not its method, a 405) over the routes of every included router, flattened
    by FastAPI in order. A path without parameters is found in a dictionary filled by that
    same algorithm, so the common static paths cost one lookup.
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        """Label by these routes; they are read on first use, once every router is included.

        Args:
            routes: The application's routes (the router's own list).
        """
        self.routes = routes
        self.candidates: list[Candidate] = []
        self.static: dict[tuple[str, str], str] | None = None

    def label(self, scope: Scope) -> str:
        """The template of the route that serves ``scope``, or ``unmatched``.

        Args:
            scope: An HTTP scope.
        """
        if self.static is None:
            self.static = self.prepare()
        path = get_route_path(scope)
        label = self.static.get((scope["method"], path))
        return label if label is not None else self.match(scope["method"], path)

    def match(self, method: str, path: str) -> str:
        """Run the router's matching over every route.

        Args:
            method: The request's method.
            path: The path the router matches (without the root path).
        """
        partial: str | None = None
        for candidate in self.candidates:
            if candidate.pattern.match(path):
                if candidate.methods is None or method in candidate.methods:
                    return candidate.template
                partial = partial or candidate.template
        return partial or UNMATCHED

    def prepare(self) -> dict[tuple[str, str], str]:
        """Flatten the routes and label every (method, path) of a route without path parameters."""
        for context in iter_route_contexts(self.routes):
            pattern, template = getattr(context, "path_regex", None), context.path_format
            if pattern is not None and template is not None:
                methods = context.methods
                self.candidates.append(Candidate(pattern, None if methods is None else frozenset(methods), template))
        return {
            (method, candidate.template): self.match(method, candidate.template)
            for candidate in self.candidates
            if "{" not in candidate.template
            for method in METHODS
        }


Series = tuple[str, str]  # method, route


class HttpRecorder:
    """This process's request counts and requests in progress, written to the metrics at most every second.

    A metric update costs one to three microseconds (a lock, a process-id check and, in
    multiprocess mode, a write to a memory-mapped file): the five per request (gauge up and
    down, histogram sum and bucket, counter) cost 10-15 us on ``GET /status/heartbeat``, 20%
    of the application's own time there. They are summed here in plain dictionaries instead,
    durations sorted into the histogram's buckets, and written when :data:`FLUSH_INTERVAL_S` has
    passed since the first change, before a scrape of this process, and when the application
    shuts down. A scrape of an instance may therefore miss the last second of another process's
    requests, never more.
    """

    def __init__(self) -> None:
        """Start with nothing recorded."""
        self.requests: dict[tuple[str, str, int], int] = {}
        self.in_progress: dict[Series, int] = {}
        self.durations: dict[Series, tuple[list[int], list[float]]] = {}
        self.histograms: dict[Series, CountedHistogram] = {}
        self.counters: dict[tuple[str, str, int], Counter] = {}
        self.gauges: dict[Series, Gauge] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_loop: asyncio.AbstractEventLoop | None = None

    def started(self, series: Series) -> None:
        """A request of ``series`` arrived.

        Args:
            series: Its method and route labels.
        """
        self.in_progress[series] = self.in_progress.get(series, 0) + 1
        self.schedule_flush()

    def finished(self, series: Series, status: int, seconds: float) -> None:
        """A request of ``series`` ended.

        Args:
            series: Its method and route labels.
            status: Its response status (500 when the application raised).
            seconds: Its duration.
        """
        self.in_progress[series] -= 1
        key = (*series, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        duration = self.durations.get(series)
        if duration is None:
            duration = self.durations[series] = ([0] * len(HTTP_DURATION_BUCKETS), [0.0])
        # The first bucket whose bound is at least the duration, as prometheus-client counts.
        duration[0][bisect.bisect_left(HTTP_DURATION_BUCKETS, seconds)] += 1
        duration[1][0] += seconds
        self.schedule_flush()

    def schedule_flush(self) -> None:
        """Have :meth:`flush` run within :data:`FLUSH_INTERVAL_S`, unless it is already due on this loop."""
        loop = asyncio.get_running_loop()
        if self.timer is None or self.timer_loop is not loop:
            self.timer = loop.call_later(FLUSH_INTERVAL_S, self.flush)
            self.timer_loop = loop

    def flush(self) -> None:
        """Write what was recorded since the last flush to the metrics."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for key, count in self.requests.items():
            self.counter(key).inc(count)
        self.requests.clear()
        for series, count in self.in_progress.items():
            self.gauge(series).set(count)
        for series, (counts, total) in self.durations.items():
            self.histogram(series).observe_counts(counts, total[0])
        self.durations.clear()

    def counter(self, key: tuple[str, str, int]) -> Counter:
        """The request counter of a method, route and status (children kept: ``labels()`` takes a lock).

        Args:
            key: The method, route and status.
        """
        counter = self.counters.get(key)
        if counter is None:
            counter = self.counters[key] = HTTP_REQUESTS.labels(key[0], key[1], str(key[2]))
        return counter

    def histogram(self, series: Series) -> CountedHistogram:
        """The duration histogram of a method and route.

        Args:
            series: The method and route.
        """
        histogram = self.histograms.get(series)
        if histogram is None:
            histogram = self.histograms[series] = HTTP_REQUEST_DURATION.labels(*series)
        return histogram

    def gauge(self, series: Series) -> Gauge:
        """The in-progress gauge of a method and route.

        Args:
            series: The method and route.
        """
        gauge = self.gauges.get(series)
        if gauge is None:
            gauge = self.gauges[series] = HTTP_REQUESTS_IN_PROGRESS.labels(*series)
        return gauge


# One per process, like the metrics it writes to.
recorder = HttpRecorder()


class HttpMetricsMiddleware:
    """Counts, times and tracks in flight every HTTP request, labelled by method and route template."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        """Wrap an ASGI application.

        Args:
            app: The application to wrap.
            routes: The routes its router matches, in order.
        """
        self.app = app
        self.routes = RouteLabels(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request and record it, also when the application raises.

        Args:
            scope: The ASGI connection scope.
            receive: The ASGI receive channel.
            send: The ASGI send channel.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send if scope["type"] != "lifespan" else flushing_on_shutdown(send))
            return
        started = time.perf_counter()
        series = (scope["method"] if scope["method"] in METHODS else OTHER, self.routes.label(scope))
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        recorder.started(series)
        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            recorder.finished(series, status, time.perf_counter() - started)


def flushing_on_shutdown(send: Send) -> Send:
    """Wrap the lifespan's send so that what was recorded is written before the application stops.

    Args:
        send: The lifespan's send channel.
    """

    async def send_after_flushing(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            recorder.flush()
        await send(message)

    return send_after_flushing
