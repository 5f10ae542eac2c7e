"""The limits through the API: a key's requests per 60 s, a service's notifications per UTC day."""

import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.app import create_app
from fastapi1.config import Settings
from fastapi1.models import Notification
from fastapi1.notifications import dao as notifications_dao
from tests.auth.conftest import Key, admin_headers, new_key, new_service

RATE_LIMIT, DAILY_LIMIT = 5, 10


@pytest.fixture(scope="module")
async def limited_app(auth_settings: Settings) -> AsyncIterator[FastAPI]:
    settings = auth_settings.model_copy(
        update={"rate_limit_per_minute": RATE_LIMIT, "service_daily_limit": DAILY_LIMIT}
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def limited(limited_app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=limited_app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://limited") as http:
        yield http


async def stored(connection: AsyncConnection, service_id: uuid.UUID) -> int:
    count = select(func.count()).select_from(Notification).where(Notification.service_id == service_id)  # type: ignore[arg-type]
    return int((await connection.execute(count)).scalar_one())


def items(count: int) -> list[dict[str, str]]:
    return [{"to": f"user{index}@example.com"} for index in range(count)]


class TestRateLimit:
    @pytest.mark.parametrize("key_type", ["normal", "team", "test"])
    async def test_a_key_gets_its_limit_of_requests_then_429(self, limited: AsyncClient, key_type: str) -> None:
        key = await new_key(limited, await new_service(limited), key_type)
        for _ in range(RATE_LIMIT):
            assert (await limited.get("/notifications/v1/", headers=key.headers())).status_code == 200
        refused = await limited.get("/notifications/v1/", headers=key.headers())
        assert refused.status_code == 429
        assert refused.json() == {
            "detail": f"Exceeded rate limit for key type {key_type.upper()} of {RATE_LIMIT} requests per 60 seconds"
        }
        # Up to 61: PostgreSQL counts a request for its whole second's window (README, Limits).
        assert 1 <= int(refused.headers["retry-after"]) <= 61

    async def test_a_refused_request_stores_nothing_and_other_keys_go_on(
        self, limited: AsyncClient, auth_connection: AsyncConnection
    ) -> None:
        service_id = await new_service(limited)
        key, other = await new_key(limited, service_id, name="a"), await new_key(limited, service_id, name="b")
        for _ in range(RATE_LIMIT):
            assert (
                await limited.post("/notifications/v1/", json=items(1)[0], headers=key.headers())
            ).status_code == 201
        refused = await limited.post("/notifications/v1/multiple", json=items(3), headers=key.headers())
        assert refused.status_code == 429
        assert await stored(auth_connection, service_id) == RATE_LIMIT
        assert (await limited.post("/notifications/v1/", json=items(1)[0], headers=other.headers())).status_code == 201

    @pytest.mark.parametrize(("method", "path"), [("POST", "/add"), ("POST", "/add_numbers"), ("GET", "/predict/x")])
    async def test_every_service_route_counts(self, limited: AsyncClient, key: Key, method: str, path: str) -> None:
        key = await new_key(limited, await new_service(limited))
        for _ in range(RATE_LIMIT):
            await limited.request(method, path, headers=key.headers(), json={})
        assert (await limited.request(method, path, headers=key.headers(), json={})).status_code == 429

    async def test_admin_routes_do_not_count(self, limited: AsyncClient) -> None:
        for _ in range(RATE_LIMIT + 2):
            assert (await limited.get("/services/v1/" + str(uuid.uuid4()), headers=admin_headers())).status_code == 404


class TestDailyLimit:
    async def test_a_service_sends_its_limit_per_day_an_item_counting_as_one(
        self, limited: AsyncClient, auth_connection: AsyncConnection
    ) -> None:
        service_id = await new_service(limited)
        key = await new_key(limited, service_id)
        assert (
            await limited.post("/notifications/v1/multiple", json=items(8), headers=key.headers())
        ).status_code == 201
        refused = await limited.post("/notifications/v1/multiple", json=items(3), headers=key.headers())
        assert (refused.status_code, refused.json()) == (
            429,
            {"detail": f"Exceeded send limits ({DAILY_LIMIT}) for today"},
        )
        assert 1 <= int(refused.headers["retry-after"]) <= 86_400
        assert (
            await limited.post("/notifications/v1/multiple", json=items(2), headers=key.headers())
        ).status_code == 201
        assert (await limited.post("/notifications/v1/", json=items(1)[0], headers=key.headers())).status_code == 429
        assert await stored(auth_connection, service_id) == DAILY_LIMIT

    async def test_the_limit_is_the_services_whatever_the_key(self, limited: AsyncClient) -> None:
        service_id = await new_service(limited)
        first, second = await new_key(limited, service_id, name="1"), await new_key(limited, service_id, name="2")
        assert (
            await limited.post("/notifications/v1/multiple", json=items(6), headers=first.headers())
        ).status_code == 201
        assert (
            await limited.post("/notifications/v1/multiple", json=items(6), headers=second.headers())
        ).status_code == 429

    async def test_test_keys_do_not_count(self, limited: AsyncClient) -> None:
        service_id = await new_service(limited)
        test, normal = await new_key(limited, service_id, "test", "t"), await new_key(limited, service_id, name="n")
        for _ in range(2):
            response = await limited.post("/notifications/v1/multiple", json=items(DAILY_LIMIT), headers=test.headers())
            assert response.status_code == 201
        assert (
            await limited.post("/notifications/v1/multiple", json=items(DAILY_LIMIT), headers=normal.headers())
        ).status_code == 201

    async def test_a_request_refused_for_another_reason_counts_nothing(self, limited: AsyncClient) -> None:
        service_id = await new_service(limited)
        key = await new_key(limited, service_id)
        unknown_template = {"to": "a@b.example", "template_id": str(uuid.uuid4())}
        assert (
            await limited.post("/notifications/v1/", json=unknown_template, headers=key.headers())
        ).status_code == 404
        team = await new_key(limited, service_id, "team", "team")
        assert (
            await limited.post("/notifications/v1/multiple", json=items(9), headers=team.headers())
        ).status_code == 400
        assert (
            await limited.post("/notifications/v1/multiple", json=items(DAILY_LIMIT), headers=key.headers())
        ).status_code == 201

    async def test_a_request_that_fails_after_reserving_gives_its_notifications_back(
        self, limited: AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        service_id = await new_service(limited)
        key = await new_key(limited, service_id)

        async def broken_insert(*args: object, **kwargs: object) -> None:
            raise RuntimeError("the insert failed")

        with monkeypatch.context() as patched:
            patched.setattr(notifications_dao, "insert_notifications", broken_insert)
            failed = await limited.post("/notifications/v1/multiple", json=items(DAILY_LIMIT), headers=key.headers())
        assert failed.status_code == 500
        assert (
            await limited.post("/notifications/v1/multiple", json=items(DAILY_LIMIT), headers=key.headers())
        ).status_code == 201
