"""The real server's connection bounds (python -m fastapi1.serve): idle, slow and worn-out connections, concurrency."""

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_end_to_end import RunningServer, free_port

# Long enough for a loaded machine; a connection the server never closes makes recv time out instead.
SOCKET_TIMEOUT_S = 30
HEARTBEAT = b"GET /status/heartbeat HTTP/1.1\r\nHost: t\r\n\r\n"


def start(database_url: str, log_path: Path, **settings: str) -> RunningServer:
    """Start the real server on the test database with these settings, and wait until it serves."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "DATABASE_READ_URL"}}
    env.update(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        WORKERS="1",
        WORKER_PROCESSES="0",
        COMPUTE_WORKERS="1",
        DATABASE_URL=database_url,
        **settings,
    )
    server = RunningServer(env, log_path)
    server.wait_until_serving()
    return server


@pytest.fixture(scope="module")
def short_timeouts(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose keep-alive, header and body timeouts are 1 s, closing a connection after 3 requests."""
    server = start(
        database_url,
        tmp_path_factory.mktemp("short") / "server.log",
        HTTP_KEEP_ALIVE_S="1",
        HTTP_HEADER_TIMEOUT_S="1",
        HTTP_BODY_TIMEOUT_S="1",
        HTTP_MAX_REQUESTS_PER_CONNECTION="3",
        LOG_FORMAT="json",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def few_connections(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with long timeouts that serves 4 connections at most and closes connections older than 1 s."""
    server = start(
        database_url,
        tmp_path_factory.mktemp("few") / "server.log",
        HTTP_KEEP_ALIVE_S="60",
        HTTP_HEADER_TIMEOUT_S="60",
        HTTP_LIMIT_CONCURRENCY="4",
        HTTP_MAX_CONNECTION_AGE_S="1",
    )
    yield server
    server.stop()


def connect(server: RunningServer) -> socket.socket:
    """A raw connection to the server."""
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT_S)
    return connection


def read_head(connection: socket.socket) -> bytes:
    """Read one response head (status line and headers)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(1)
        assert chunk, f"closed before a response head: {head!r}"
        head += chunk
    return head


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closes the connection (end of file or reset) before the socket timeout."""
    try:
        return connection.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class TestIdleConnections:
    def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
        self, short_timeouts: RunningServer
    ) -> None:
        with connect(short_timeouts) as connection:
            connection.sendall(HEARTBEAT)
            assert read_head(connection).startswith(b"HTTP/1.1 204")
            assert closed_by_server(connection)

    def test_a_connection_that_never_sends_a_byte_is_closed_after_the_header_timeout(
        self, short_timeouts: RunningServer
    ) -> None:
        with connect(short_timeouts) as connection:
            assert closed_by_server(connection)


class TestSlowClients:
    def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout(
        self, short_timeouts: RunningServer
    ) -> None:
        with connect(short_timeouts) as connection:
            connection.sendall(b"GET /status/heartbeat HTTP/1.1\r\nHost: t\r\n")
            started = time.monotonic()
            cut = False
            # A slowloris: one header byte every 0.2 s would take 60 s; the server must close first.
            for byte in b"X-Slow: " + b"a" * 300:
                try:
                    connection.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    cut = True
                    break
                time.sleep(0.2)
                connection.setblocking(False)
                try:
                    if connection.recv(65536) == b"":
                        cut = True
                        break
                except BlockingIOError:
                    pass
                finally:
                    connection.setblocking(True)
            assert cut, "the server kept a slowloris connection open"
            assert time.monotonic() - started < 300 * 0.2 / 2

    def test_a_body_that_stops_arriving_gets_408_and_the_connection_is_closed(
        self, short_timeouts: RunningServer
    ) -> None:
        with connect(short_timeouts) as connection:
            connection.sendall(
                b"POST /services/v1/ HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\nX-Request-ID: slow-body\r\n\r\n{"name": '
            )
            head = read_head(connection)
            assert head.startswith(b"HTTP/1.1 408")
            assert b"connection: close" in head.lower()
            assert b"x-request-id: slow-body" in head.lower()
            connection.settimeout(SOCKET_TIMEOUT_S)
            body = connection.recv(65536)
            assert b"not received within 1 seconds" in body
            assert closed_by_server(connection)


class TestConnectionLifetime:
    def test_the_third_response_on_a_connection_closes_it(self, short_timeouts: RunningServer) -> None:
        with connect(short_timeouts) as connection:
            heads = []
            for _ in range(3):
                connection.sendall(HEARTBEAT)
                heads.append(read_head(connection).lower())
            assert [b"connection: close" in head for head in heads] == [False, False, True]
            assert closed_by_server(connection)

    def test_a_connection_older_than_the_age_limit_is_closed_after_its_next_request(
        self, few_connections: RunningServer
    ) -> None:
        with connect(few_connections) as connection:
            connection.sendall(HEARTBEAT)
            first = read_head(connection).lower()
            time.sleep(1.2)
            connection.sendall(HEARTBEAT)
            second = read_head(connection).lower()
            assert (b"connection: close" in first, b"connection: close" in second) == (False, True)
            assert closed_by_server(connection)


class TestConcurrencyLimit:
    def test_requests_beyond_the_concurrency_limit_get_503(self, few_connections: RunningServer) -> None:
        held = [connect(few_connections) for _ in range(4)]
        try:
            with connect(few_connections) as extra:
                extra.sendall(HEARTBEAT)
                assert read_head(extra).startswith(b"HTTP/1.1 503")
        finally:
            for connection in held:
                connection.close()
        deadline = time.monotonic() + SOCKET_TIMEOUT_S
        while True:  # the server notices the closed connections
            with connect(few_connections) as connection:
                connection.sendall(HEARTBEAT)
                if read_head(connection).startswith(b"HTTP/1.1 204"):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)


class TestJsonLogOfTheRealServer:
    def test_a_request_is_one_json_line_with_its_id(self, short_timeouts: RunningServer) -> None:
        with connect(short_timeouts) as connection:
            connection.sendall(b"GET /status/heartbeat HTTP/1.1\r\nHost: t\r\nX-Request-ID: e2e-json-1\r\n\r\n")
            assert b"x-request-id: e2e-json-1" in read_head(connection).lower()
        deadline = time.monotonic() + SOCKET_TIMEOUT_S
        while not (lines := [line for line in short_timeouts.log().splitlines() if "e2e-json-1" in line]):
            assert time.monotonic() < deadline, short_timeouts.log()
            time.sleep(0.1)
        entry = json.loads(lines[0])
        assert entry["request_id"] == "e2e-json-1"
        assert (entry["logger"], entry["method"], entry["path"], entry["status"]) == (
            "fastapi1",
            "GET",
            "/status/heartbeat",
            204,
        )
        assert entry["message"].startswith("GET http://t/status/heartbeat 204 ")
