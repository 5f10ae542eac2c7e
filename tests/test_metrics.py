"""GET /metrics in one process: the text format, HTTP requests by route template, the pool gauges."""

import asyncio
import bisect
import uuid

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import text

from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.http_metrics import UNMATCHED, RouteLabels
from fastapi1.metrics import HTTP_DURATION_BUCKETS, MAX_MODEL_NAMES, OTHER, BoundedLabel, CountedHistogram
from fastapi1.serve import metrics_directory
from tests.predictions.support import until
from tests.scrapes import Samples, parse, sample, value

REQUESTS = "fastapi1_http_requests_total"


async def scrape(client: AsyncClient) -> tuple[str, Samples]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text, parse(response.text)


class TestEndpoint:
    async def test_metrics_answer_prometheus_text(self, client: AsyncClient) -> None:
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "# TYPE fastapi1_http_requests_total counter" in response.text
        assert "# TYPE fastapi1_backend_batch_rows histogram" in response.text

    async def test_metrics_are_left_out_of_the_openapi_document(self, client: AsyncClient) -> None:
        assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


class TestHttpRequests:
    async def test_requests_are_labelled_by_route_template_and_status_never_by_raw_path(
        self, client: AsyncClient
    ) -> None:
        unknown = str(uuid.uuid4())
        _, before = await scrape(client)
        for _ in range(3):
            assert (await client.get("/status/heartbeat")).status_code == 204
        assert (await client.get(f"/notifications/v1/{unknown}")).status_code == 404
        assert (await client.get(f"/services/v1/{unknown}/templates/{unknown}")).status_code == 404
        assert (await client.get(f"/no/such/path/{unknown}")).status_code == 404
        assert (await client.post("/status/heartbeat")).status_code == 405
        assert (await client.get("/notifications/v1/multiple")).status_code == 422
        scraped, after = await scrape(client)

        def delta(method: str, route: str, status: str) -> float:
            labels = {"method": method, "route": route, "status": status}
            return value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels)

        assert delta("GET", "/status/heartbeat", "204") == 3
        assert delta("GET", "/notifications/v1/{notification_id}", "404") == 1
        assert delta("GET", "/services/v1/{service_id}/templates/{template_id}", "404") == 1
        assert delta("GET", UNMATCHED, "404") == 1
        assert delta("POST", "/status/heartbeat", "405") == 1
        # GET of the multiple route's path is the by-id route, as the router decides (a 422: not a UUID).
        assert delta("GET", "/notifications/v1/{notification_id}", "422") == 1
        assert unknown not in scraped
        duration = "fastapi1_http_request_duration_seconds_count"
        labels = {"method": "GET", "route": "/status/heartbeat"}
        assert value(after, duration, **labels) - value(before, duration, **labels) == 3

    async def test_an_unknown_method_is_labelled_other(self, client: AsyncClient) -> None:
        before = sample(REQUESTS, method=OTHER, route="/status/heartbeat", status="405")
        assert (await client.request("BREW", "/status/heartbeat")).status_code == 405
        assert sample(REQUESTS, method=OTHER, route="/status/heartbeat", status="405") == before + 1

    async def test_a_request_in_flight_is_in_progress_until_it_ends(self, client: AsyncClient) -> None:
        gauge = "fastapi1_http_requests_in_progress"
        _, samples = await scrape(client)
        # The scrape itself is in flight while it is taken.
        assert value(samples, gauge, method="GET", route="/metrics") == 1
        _, samples = await scrape(client)
        assert value(samples, gauge, method="GET", route="/status/heartbeat") == 0


class TestRouteLabels:
    def test_every_documented_operation_is_labelled_with_its_own_template(self, app: FastAPI) -> None:
        labels = RouteLabels(app.router.routes)
        for path, operations in app.openapi()["paths"].items():
            concrete = path.replace("{", "x").replace("}", "")
            for method in operations:
                assert labels.label({"type": "http", "method": method.upper(), "path": concrete}) == path

    def test_paths_no_route_matches_are_one_label(self, app: FastAPI) -> None:
        labels = RouteLabels(app.router.routes)
        for path in ("/", "/wp-admin.php", f"/notifications/v2/{uuid.uuid4()}", "/status"):
            assert labels.label({"type": "http", "method": "GET", "path": path}) == UNMATCHED


class TestBoundedLabels:
    def test_values_past_the_limit_are_counted_as_other(self) -> None:
        label = BoundedLabel(MAX_MODEL_NAMES)
        names = [f"model-{index}" for index in range(MAX_MODEL_NAMES + 50)]
        assert [label(name) for name in names] == names[:MAX_MODEL_NAMES] + [OTHER] * 50
        assert label(names[0]) == names[0]


class TestPoolGauges:
    async def test_checked_out_and_waiting_follow_the_pool(self, database_url: str, settings: Settings) -> None:
        database = Database.connect(database_url, None, settings.model_copy(update={"db_pool_size": 1}))
        checked_out, waiting = "fastapi1_db_pool_checked_out", "fastapi1_db_pool_waiting"
        base_checked_out, base_waiting = sample(checked_out, engine="write"), sample(waiting, engine="write")
        try:
            async with database.write_engine.connect() as held:
                await held.execute(text("SELECT 1"))
                assert sample(checked_out, engine="write") == base_checked_out + 1
                queued = asyncio.create_task(self.select_one(database))
                await until(lambda: sample(waiting, engine="write") == base_waiting + 1)
                assert not queued.done()
            await asyncio.wait_for(queued, 5)
            assert sample(waiting, engine="write") == base_waiting
            assert sample(checked_out, engine="write") == base_checked_out
        finally:
            await database.dispose()

    @staticmethod
    async def select_one(database: Database) -> None:
        async with database.write_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


class TestMetricsDirectory:
    def test_the_directory_cannot_be_set_once_prometheus_client_is_imported(self) -> None:
        # This process imported it with the application: values already live in memory here.
        with pytest.raises(RuntimeError, match="imported before"), metrics_directory(None):
            pass


def histogram_samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    """Bucket, count and sum samples by suffix and bound (``_created`` left out: a time)."""
    return {
        (sample.name.removeprefix(histogram._name), sample.labels.get("le", "")): sample.value
        for sample in histogram.collect()[0].samples
        if not sample.name.endswith("_created")
    }


class TestCountedHistogram:
    def test_counts_per_bucket_give_what_one_observe_per_value_gives(self) -> None:
        registry = CollectorRegistry()
        observed = Histogram("observed", "", buckets=HTTP_DURATION_BUCKETS, registry=registry)
        counted = CountedHistogram("counted", "", buckets=HTTP_DURATION_BUCKETS, registry=registry)
        durations = [0.0, 0.005, 0.0051, 0.3, 2.5, 10.0, 11.0, 1e9]
        counts = [0] * len(HTTP_DURATION_BUCKETS)
        for seconds in durations:
            observed.observe(seconds)
            counts[bisect.bisect_left(HTTP_DURATION_BUCKETS, seconds)] += 1
        counted.observe_counts(counts, sum(durations))
        assert histogram_samples(counted) == histogram_samples(observed)
        assert histogram_samples(counted)[("_count", "")] == len(durations)
