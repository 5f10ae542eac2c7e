"""The request log line, and tracebacks for unexpected errors."""

import logging
import re

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from fastapi1.app import create_app
from fastapi1.config import Settings

REQUEST_LINE = re.compile(r"^GET http://test/status/heartbeat 204 \d+\.\d{6}s$")


class TestRequestLog:
    async def test_each_request_is_logged_once_as_method_url_status_seconds(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            await client.get("/status/heartbeat")
        lines = [record.getMessage() for record in caplog.records if record.name == "fastapi1"]
        assert len(lines) == 1
        assert REQUEST_LINE.match(lines[0]), lines[0]

    async def test_the_query_string_is_part_of_the_logged_url(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            await client.get("/status/heartbeat?probe=1")
        assert caplog.records[-1].getMessage().startswith("GET http://test/status/heartbeat?probe=1 204 ")


class TestUnexpectedErrors:
    @pytest.fixture
    def failing_app(self, settings: Settings) -> FastAPI:
        app = create_app(settings)

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("kaboom")

        return app

    async def test_an_unexpected_error_is_a_500_without_details_and_a_logged_traceback(
        self, failing_app: FastAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        transport = ASGITransport(app=failing_app, raise_app_exceptions=False)
        with caplog.at_level(logging.INFO, logger="fastapi1"):
            async with AsyncClient(transport=transport, base_url="http://test") as http:
                response = await http.get("/boom")
        assert response.status_code == 500
        assert response.json() == {"detail": "Internal server error"}
        errors = [record for record in caplog.records if record.levelno == logging.ERROR]
        assert errors
        assert errors[0].exc_info is not None
        assert "kaboom" in caplog.text
        assert re.search(r"GET http://test/boom 500 \d+\.\d{6}s", caplog.text)
