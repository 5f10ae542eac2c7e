"""HTTP metrics: requests, durations and requests in progress by method and route template (pure ASGI)."""

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi.routing import iter_route_contexts
from prometheus_client.metrics import Counter, Gauge, Histogram
from starlette._utils import get_route_path
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi1.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS, HTTP_REQUESTS_IN_PROGRESS, OTHER

UNMATCHED = "unmatched"
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
        # Children of the labelled metrics, kept: .labels() takes a lock and builds a key per call.
        self.series: dict[tuple[str, str], tuple[Gauge, Histogram]] = {}
        self.counters: dict[tuple[str, str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request and record it, also when the application raises.

        Args:
            scope: The ASGI connection scope.
            receive: The ASGI receive channel.
            send: The ASGI send channel.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in METHODS else OTHER
        route = self.routes.label(scope)
        in_progress, duration = self.route_series(method, route)
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_progress.inc()
        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            in_progress.dec()
            duration.observe(time.perf_counter() - started)
            self.counter(method, route, status).inc()

    def route_series(self, method: str, route: str) -> tuple[Gauge, Histogram]:
        """The in-progress gauge and the duration histogram of a method and route.

        Args:
            method: The method label.
            route: The route label.
        """
        series = self.series.get((method, route))
        if series is None:
            series = (HTTP_REQUESTS_IN_PROGRESS.labels(method, route), HTTP_REQUEST_DURATION.labels(method, route))
            self.series[(method, route)] = series
        return series

    def counter(self, method: str, route: str, status: int) -> Counter:
        """The request counter of a method, route and status.

        Args:
            method: The method label.
            route: The route label.
            status: The response status.
        """
        counter = self.counters.get((method, route, status))
        if counter is None:
            counter = self.counters[(method, route, status)] = HTTP_REQUESTS.labels(method, route, str(status))
        return counter
