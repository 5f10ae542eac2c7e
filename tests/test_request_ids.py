"""Request ids on responses and log records, the JSON log line, disconnects, and the outage log's throttle."""

import asyncio
import json
import logging
import re

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from starlette.types import Message

from fastapi1.app import create_app
from fastapi1.config import Settings
from fastapi1.logging import LogFormatter, LogThrottle
from tests.proxy import TcpProxy

GENERATED = re.compile(r"[0-9a-f]{32}")


class TestRequestIdHeader:
    async def test_a_valid_client_id_is_echoed(self, client: AsyncClient) -> None:
        response = await client.get("/status/heartbeat", headers={"X-Request-ID": "abc-123_XYZ.~"})
        assert response.headers["x-request-id"] == "abc-123_XYZ.~"

    async def test_an_id_is_generated_when_the_client_sends_none(self, client: AsyncClient) -> None:
        first = (await client.get("/status/heartbeat")).headers["x-request-id"]
        second = (await client.get("/status/heartbeat")).headers["x-request-id"]
        assert GENERATED.fullmatch(first)
        assert first != second

    @pytest.mark.parametrize("bad", ["x" * 129, "has space", "tab\there", "caf\u00e9"])
    async def test_an_invalid_client_id_is_replaced(self, client: AsyncClient, bad: str) -> None:
        response = await client.get("/status/heartbeat", headers=[("X-Request-ID", bad.encode("utf-8"))])
        assert GENERATED.fullmatch(response.headers["x-request-id"])

    async def test_the_longest_valid_id_is_kept(self, client: AsyncClient) -> None:
        rid = "~" * 128
        assert (await client.get("/status/heartbeat", headers={"X-Request-ID": rid})).headers["x-request-id"] == rid

    async def test_errors_carry_the_id_too(self, client: AsyncClient) -> None:
        headers = {"X-Request-ID": "err-1"}
        missing = await client.get("/notifications/v1/00000000-0000-0000-0000-000000000000", headers=headers)
        invalid = await client.post("/services/v1/", json={}, headers=headers)
        too_large = await client.post(
            "/services/v1/", content=b"{}", headers={**headers, "Content-Length": str(10**10)}
        )
        assert (missing.status_code, invalid.status_code, too_large.status_code) == (404, 422, 413)
        assert {r.headers["x-request-id"] for r in (missing, invalid, too_large)} == {"err-1"}


class TestRequestIdOnLogRecords:
    async def test_every_record_of_a_request_carries_its_id(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        service = (await client.post("/services/v1/", json={"name": "rid"})).json()
        with caplog.at_level(logging.INFO):
            await client.post(
                "/add", json={"batchid": "rid-batch", "payload": [[1, 2]]}, headers={"X-Request-ID": "r1"}
            )
            await client.get(f"/services/v1/{service['id']}", headers={"X-Request-ID": "r2"})
        by_id: dict[str, list[str]] = {}
        for record in caplog.records:
            by_id.setdefault(getattr(record, "request_id", None), []).append(record.getMessage())
        assert any(message.startswith("Batch rid-batch stored") for message in by_id["r1"])
        assert any(message.startswith("POST http://test/add 200") for message in by_id["r1"])
        assert [message.split()[:3] for message in by_id["r2"]] == [
            ["GET", f"http://test/services/v1/{service['id']}", "200"]
        ]

    def test_records_outside_a_request_have_none(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO):
            logging.getLogger("fastapi1").info("outside")
        assert caplog.records[-1].request_id is None  # type: ignore[attr-defined]


class TestLogFormats:
    async def test_the_json_line_has_the_request_fields(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(LogFormatter, "json_lines", True)  # what LOG_FORMAT=json sets
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            await client.get("/status/heartbeat?x=1", headers={"X-Request-ID": "json-1"})
        line = LogFormatter("%(message)s").format(caplog.records[-1])
        assert "\n" not in line
        entry = json.loads(line)
        assert entry["message"].startswith("GET http://test/status/heartbeat?x=1 204 ")
        assert {key: entry[key] for key in ("level", "logger", "request_id", "method", "path", "status")} == {
            "level": "INFO",
            "logger": "fastapi1",
            "request_id": "json-1",
            "method": "GET",
            "path": "/status/heartbeat",
            "status": 204,
        }
        assert isinstance(entry["duration"], float)
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", entry["time"])

    def test_a_json_traceback_stays_on_one_line(self) -> None:
        formatter = LogFormatter()
        formatter.json_lines = True
        try:
            raise ValueError("bad")
        except ValueError as error:
            record = logging.LogRecord("fastapi1", logging.ERROR, __file__, 1, "failed", (), (ValueError, error, None))
        entry = json.loads(formatter.format(record))
        assert entry["message"] == "failed"
        assert "ValueError: bad" in entry["traceback"]
        assert entry["method"] is None

    async def test_the_text_line_keeps_the_message_and_appends_the_id(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            await client.get("/status/heartbeat", headers={"X-Request-ID": "text-1"})
        line = LogFormatter("%(name)s %(message)s").format(caplog.records[-1])
        assert re.fullmatch(r"fastapi1 GET http://test/status/heartbeat 204 \d+\.\d{6}s request_id=text-1", line)


class TestClientDisconnect:
    async def test_work_cancelled_because_the_client_left_is_logged_as_499_not_500(
        self, settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        app = create_app(settings)

        @app.get("/wait-for-the-client")
        async def wait_for_the_client() -> None:
            # What the prediction route does: its work is cancelled once the client has gone.
            raise asyncio.CancelledError

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/wait-for-the-client",
            "raw_path": b"/wait-for-the-client",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"t")],
            "server": ("t", 80),
            "client": ("127.0.0.1", 1),
        }

        async def receive() -> Message:
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            pass

        with caplog.at_level(logging.INFO, logger="fastapi1"), pytest.raises(asyncio.CancelledError):
            await app(scope, receive, send)
        assert re.search(r"GET http://t/wait-for-the-client 499 ", caplog.text)
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


class TestOutageLogThrottle:
    def test_one_event_per_interval_with_the_count_held_back(self) -> None:
        throttle = LogThrottle(3600)
        assert throttle.admit() == 0
        assert [throttle.admit() for _ in range(5)] == [None] * 5
        throttle.next_at = 0.0  # the interval has passed
        assert throttle.admit() == 5

    async def test_an_outage_logs_one_traceback_not_one_per_request(
        self, settings: Settings, database_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with TcpProxy.to_database(database_url) as proxy:
            app: FastAPI = create_app(settings.model_copy(update={"database_url": proxy.url}))
            transport = ASGITransport(app=app)
            async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as http:
                await proxy.stop()
                with caplog.at_level(logging.INFO, logger="fastapi1"):
                    statuses = [(await http.get("/notifications/v1/?limit=1")).status_code for _ in range(10)]
        assert statuses == [503] * 10
        tracebacks = [record for record in caplog.records if record.exc_info]
        assert len(tracebacks) == 1
        assert tracebacks[0].getMessage().startswith("Database unavailable during GET /notifications/v1/")
        assert len(re.findall(r"GET http://t/notifications/v1/\?limit=1 503 ", caplog.text)) == 10
