"""Bursts against real servers: two instances on one database, each with two HTTP workers.

``limit + 30`` concurrent requests spread over the four processes get exactly ``limit``
successes, for the rate limit of a key and for the daily limit of a service, with the state
in PostgreSQL and in Redis.
"""

import asyncio
import contextlib
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from fastapi1.auth.tokens import create_token
from tests import test_end_to_end
from tests.conftest import asyncpg_dsn, throwaway_database
from tests.test_end_to_end import RunningServer, StartServer

server_env = test_end_to_end.server_env
start_server = test_end_to_end.start_server
LIMIT = 40
BURST = LIMIT + 30
ADMIN_SECRET = secrets.token_urlsafe(32)


def headers(secret: str, issuer: str) -> dict[str, str]:
    # A new connection for each request, so the kernel spreads them over both HTTP workers.
    return {"Authorization": f"Bearer {create_token(secret, issuer)}", "Connection": "close"}


def serving_processes(servers: list[RunningServer], path: str) -> set[int]:
    """The HTTP worker processes whose request log has a line for ``path``."""
    pattern = re.compile(rf"\[(\d+)\] \w+ http://127\.0\.0\.1:\d+{re.escape(path)}")
    return {int(pid) for server in servers for pid in pattern.findall(server.log())}


def new_key(server: RunningServer, service_id: str, name: str) -> str:
    response = httpx.post(
        f"{server.base_url}/services/v1/{service_id}/api-keys",
        json={"name": name, "key_type": "normal"},
        headers=headers(ADMIN_SECRET, "fastapi1-admin"),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["key"])[-36:]


def new_service(server: RunningServer) -> str:
    response = httpx.post(
        f"{server.base_url}/services/v1/",
        json={"name": f"burst-{uuid.uuid4()}"},
        headers=headers(ADMIN_SECRET, "fastapi1-admin"),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def burst(requests: list[tuple[str, str, dict[str, str], object]]) -> Counter[int]:
    """Send every request at once (each its own connection); count the statuses."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        ready = asyncio.Barrier(len(requests))

        async def one(method: str, url: str, request_headers: dict[str, str], body: object) -> int:
            await ready.wait()
            return (await client.request(method, url, headers=request_headers, json=body)).status_code

        statuses = await asyncio.gather(*(one(*request) for request in requests))
    return Counter(statuses)


async def stored(url: str, service_id: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(
            await connection.fetchval("SELECT count(*) FROM notifications WHERE service_id = $1", uuid.UUID(service_id))
        )
    finally:
        await connection.close()


@pytest.fixture(params=["postgres", "redis"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "postgres":
        return {}
    url: str = request.getfixturevalue("redis_url")
    return {"REDIS_URL": url, "REDIS_PREFIX": request.getfixturevalue("redis_prefix")}


@pytest.fixture
def instances(
    admin_url: str, server_env: dict[str, str], store_env: dict[str, str], start_server: StartServer, tmp_path: Path
) -> Iterator[tuple[str, list[RunningServer]]]:
    """Two instances on one database, two HTTP workers each, every limit at LIMIT."""
    with throwaway_database(admin_url) as url, contextlib.ExitStack():
        servers = []
        for number in range(2):
            env = {
                **server_env,
                **store_env,
                "PORT": str(test_end_to_end.free_port()),
                "DATABASE_URL": url,
                "WORKERS": "2",
                "WORKER_PROCESSES": "0",
                "AUTH_REQUIRED": "true",
                "ADMIN_CLIENT_SECRET": ADMIN_SECRET,
                "SECRET_KEY": "k" * 40,
                "RATE_LIMIT_PER_MINUTE": str(LIMIT),
                "SERVICE_DAILY_LIMIT": str(LIMIT),
            }
            servers.append(start_server(env, tmp_path / f"instance-{number}.log"))
        for server in servers:
            server.wait_until_serving()
        yield url, servers


class TestBursts:
    def test_a_keys_burst_gets_exactly_its_rate_limit_across_instances_and_workers(
        self, instances: tuple[str, list[RunningServer]]
    ) -> None:
        _, servers = instances
        service_id = new_service(servers[0])
        secret = new_key(servers[0], service_id, "burst")
        requests = [
            ("GET", f"{servers[index % 2].base_url}/notifications/v1/?limit=1", headers(secret, service_id), None)
            for index in range(BURST)
        ]
        statuses = asyncio.run(burst(requests))
        assert statuses == Counter({200: LIMIT, 429: BURST - LIMIT})
        assert len(serving_processes(servers, "/notifications/v1/?limit=1")) >= 3

    def test_a_services_burst_gets_exactly_its_daily_limit_across_instances_and_workers(
        self, instances: tuple[str, list[RunningServer]]
    ) -> None:
        url, servers = instances
        service_id = new_service(servers[0])
        # Two keys, so that neither key's rate limit (LIMIT each) is what refuses.
        secrets_ = [new_key(servers[0], service_id, name) for name in ("a", "b")]
        requests = [
            (
                "POST",
                f"{servers[index % 2].base_url}/notifications/v1/",
                headers(secrets_[index // (BURST // 2 + 1)], service_id),
                {"to": f"user{index}@example.com"},
            )
            for index in range(BURST)
        ]
        statuses = asyncio.run(burst(requests))
        assert statuses == Counter({201: LIMIT, 429: BURST - LIMIT})
        assert asyncio.run(stored(url, service_id)) == LIMIT
