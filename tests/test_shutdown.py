"""The draining server's signal handling, without a real signal (the end-to-end test sends real ones)."""

import asyncio
import signal
from collections.abc import Iterator

import pytest
import uvicorn

from fastapi1.draining import is_draining, reset_draining
from fastapi1.shutdown import DrainingServer


@pytest.fixture
def server() -> Iterator[DrainingServer]:
    """A draining server that is never started, with a 60 s drain period."""
    yield DrainingServer(uvicorn.Config("fastapi1.app:create_app", factory=True), drain_s=60)
    reset_draining()


class TestDrainingServer:
    def test_the_first_sigterm_drains_and_keeps_serving(self, server: DrainingServer) -> None:
        server.handle_exit(signal.SIGTERM, None)
        assert is_draining()
        assert not server.should_exit
        assert asyncio.run(server.on_tick(1)) is False

    def test_the_drain_period_ends_the_serving(self, server: DrainingServer) -> None:
        server.handle_exit(signal.SIGTERM, None)
        assert server.drain_until is not None
        server.drain_until -= 60
        assert asyncio.run(server.on_tick(1)) is True

    @pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
    def test_a_second_signal_skips_the_rest_of_the_drain(self, server: DrainingServer, second: int) -> None:
        server.handle_exit(signal.SIGTERM, None)
        server.handle_exit(second, None)
        assert server.should_exit

    def test_sigint_stops_at_once_and_drains_too(self, server: DrainingServer) -> None:
        server.handle_exit(signal.SIGINT, None)
        assert server.should_exit
        assert is_draining()

    def test_without_a_drain_period_sigterm_stops_at_once(self) -> None:
        server = DrainingServer(uvicorn.Config("fastapi1.app:create_app", factory=True), drain_s=0)
        try:
            server.handle_exit(signal.SIGTERM, None)
            assert server.should_exit
            assert is_draining()
        finally:
            reset_draining()
