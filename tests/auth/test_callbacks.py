"""The callback routes: admin only, validated, the token encrypted at rest, and production's SSRF rules."""

import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from fastapi1.app import create_app
from fastapi1.auth.encryption import SecretBox
from fastapi1.callbacks.urls import UrlRules, forbidden, resolve
from fastapi1.config import Settings
from tests.auth.conftest import admin_headers, new_key, new_service


@pytest.fixture(scope="module")
async def production_app(auth_settings: Settings) -> AsyncIterator[FastAPI]:
    """The application in production (https and public addresses required)."""
    application = create_app(auth_settings.model_copy(update={"environment": "production"}))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def production(production_app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client of the production application."""
    async with AsyncClient(transport=ASGITransport(app=production_app), base_url="https://prod") as http:
        yield http


async def set_callback(client: AsyncClient, service_id: uuid.UUID, url: str, token: str = "0123456789") -> int:
    """POST a callback; the status."""
    body = {"url": url, "bearer_token": token}
    response = await client.post(f"/services/v1/{service_id}/callbacks", json=body, headers=admin_headers())
    return response.status_code


class TestRoutes:
    async def test_a_callback_is_set_read_replaced_and_removed(self, auth_client: AsyncClient) -> None:
        service_id = await new_service(auth_client)
        path = f"/services/v1/{service_id}/callbacks"
        first = await auth_client.post(
            path, json={"url": "https://a.example/r", "bearer_token": "token-one-1"}, headers=admin_headers()
        )
        assert first.status_code == 201, first.text
        assert set(first.json()) == {"service_id", "url", "created_at", "updated_at"}
        second = await auth_client.post(
            path, json={"url": "https://b.example/r", "bearer_token": "token-two-2"}, headers=admin_headers()
        )
        assert (second.status_code, second.json()["url"]) == (201, "https://b.example/r")
        assert second.json()["created_at"] == first.json()["created_at"]
        read = await auth_client.get(path, headers=admin_headers())
        assert (read.status_code, read.json()["url"]) == (200, "https://b.example/r")
        assert "bearer_token" not in read.json()
        assert (await auth_client.delete(path, headers=admin_headers())).status_code == 204
        assert (await auth_client.get(path, headers=admin_headers())).status_code == 404
        assert (await auth_client.delete(path, headers=admin_headers())).status_code == 404

    async def test_the_token_is_stored_encrypted(self, auth_client: AsyncClient, auth_settings: Settings) -> None:
        service_id = await new_service(auth_client)
        assert await set_callback(auth_client, service_id, "https://a.example/r", "the-clear-token") == 201
        app_database = auth_client._transport.app.state.database  # type: ignore[attr-defined]
        async with app_database.write_engine.connect() as connection:
            stored = await connection.scalar(
                text("SELECT bearer_token FROM service_callbacks WHERE service_id = :id"), {"id": service_id}
            )
        assert "the-clear-token" not in stored
        assert SecretBox(auth_settings.secret_key).decrypt(stored) == "the-clear-token"

    async def test_only_an_admin_may_set_one(self, auth_client: AsyncClient) -> None:
        service_id = await new_service(auth_client)
        key = await new_key(auth_client, service_id)
        body = {"url": "https://a.example/r", "bearer_token": "0123456789"}
        path = f"/services/v1/{service_id}/callbacks"
        assert (await auth_client.post(path, json=body)).status_code == 401
        assert (await auth_client.post(path, json=body, headers=key.headers())).status_code == 403

    @pytest.mark.parametrize(
        ("token", "status"), [("012345678", 422), ("0123456789", 201), ("x" * 1000, 201), ("x" * 1001, 422)]
    )
    async def test_the_token_is_10_to_1000_characters(self, auth_client: AsyncClient, token: str, status: int) -> None:
        service_id = await new_service(auth_client)
        assert await set_callback(auth_client, service_id, "https://a.example/r", token) == status

    @pytest.mark.parametrize(
        "url",
        ["ftp://a.example/r", "a.example/r", "https://", "https://user:pw@a.example/r", "https://a.example:99999/"],
    )
    async def test_a_url_that_is_not_http_is_refused(self, auth_client: AsyncClient, url: str) -> None:
        service_id = await new_service(auth_client)
        assert await set_callback(auth_client, service_id, url) == 422

    async def test_a_url_past_its_length_is_refused(self, auth_client: AsyncClient) -> None:
        service_id = await new_service(auth_client)
        base = "https://a.example/"
        assert await set_callback(auth_client, service_id, base + "x" * (2048 - len(base))) == 201
        assert await set_callback(auth_client, service_id, base + "x" * (2049 - len(base))) == 422

    async def test_an_unknown_service_is_404(self, auth_client: AsyncClient) -> None:
        assert await set_callback(auth_client, uuid.uuid4(), "https://a.example/r") == 404


class TestProductionRules:
    @pytest.mark.parametrize(
        "url",
        [
            "http://93.184.216.34/r",
            "https://127.0.0.1/r",
            "https://localhost/r",
            "https://10.1.2.3/r",
            "https://192.168.0.1/r",
            "https://172.16.0.1/r",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/r",
            "https://[fd00:ec2::254]/r",
            "https://[::ffff:127.0.0.1]/r",
            "https://0.0.0.0/r",
            "https://224.0.0.1/r",
            "https://no-such-host.invalid/r",
        ],
    )
    async def test_production_refuses_http_and_every_address_that_is_not_public(
        self, production: AsyncClient, url: str
    ) -> None:
        service_id = await new_service(production)
        body = {"url": url, "bearer_token": "0123456789"}
        response = await production.post(f"/services/v1/{service_id}/callbacks", json=body, headers=admin_headers())
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "url"]

    async def test_a_public_address_is_accepted_in_production(self, production: AsyncClient) -> None:
        service_id = await new_service(production)
        assert await set_callback(production, service_id, "https://93.184.216.34/receipts") == 201

    async def test_allow_private_lifts_the_address_rule_only(self) -> None:
        rules = UrlRules(https_only=True, public_only=False)
        target = await resolve("https://localhost:8443/r", rules)
        assert (target.host, target.port) == ("localhost", 8443)
        assert "127.0.0.1" in target.addresses or "::1" in target.addresses
        with pytest.raises(ValueError, match="https"):
            await resolve("http://localhost/r", rules)

    @pytest.mark.parametrize(
        ("address", "refused"),
        [("8.8.8.8", False), ("2001:4860:4860::8888", False), ("100.64.0.1", True), ("::ffff:10.0.0.1", True)],
    )
    def test_the_address_rule(self, address: str, refused: bool) -> None:
        import ipaddress

        assert forbidden(ipaddress.ip_address(address)) is refused
