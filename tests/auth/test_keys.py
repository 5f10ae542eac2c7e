"""API keys and the guest list through /services/v1: created once, stored encrypted, revoked everywhere."""

import asyncio
import time
import uuid

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.app import create_app
from fastapi1.auth.encryption import SecretBox, UndecryptableSecret
from fastapi1.auth.tokens import create_token
from fastapi1.config import Settings
from fastapi1.models import ApiKey
from tests.auth.conftest import SECRET_KEYS, Key, admin_headers, bearer, new_key, new_service
from tests.statements import recorded_statements

NOTIFICATION = {"to": "ada@example.com"}


async def send(client: AsyncClient, key: Key) -> int:
    """The status of a notification sent with the key."""
    return (await client.post("/notifications/v1/", json=NOTIFICATION, headers=key.headers())).status_code


def other_client(app: FastAPI) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://other")


class TestCreateKey:
    async def test_the_combined_key_is_returned_once_in_notifys_form(self, auth_client: AsyncClient) -> None:
        service_id = await new_service(auth_client)
        new = {"name": "live key", "key_type": "normal"}
        response = await auth_client.post(f"/services/v1/{service_id}/api-keys", json=new, headers=admin_headers())
        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"id", "name", "key_type", "key", "created_at"}
        name, secret = body["key"][:-74], body["key"][-36:]
        assert (name, body["key"][-73:-37], uuid.UUID(secret).version) == ("live key", str(service_id), 4)
        listed = (await auth_client.get(f"/services/v1/{service_id}/api-keys", headers=admin_headers())).json()
        assert listed == [{**new, "id": body["id"], "created_at": body["created_at"], "revoked_at": None}]
        assert secret not in str(listed)

    async def test_the_secret_is_stored_encrypted_with_the_first_secret_key(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        stored = (await auth_connection.execute(select(ApiKey.secret).where(ApiKey.id == key.id))).scalar_one()
        assert key.secret not in stored
        assert SecretBox([SecretStr(SECRET_KEYS[0])]).decrypt(stored) == key.secret

    @pytest.mark.parametrize("key_type", ["normal", "team", "test"])
    async def test_every_key_type_signs_tokens(self, auth_client: AsyncClient, key_type: str) -> None:
        key = await new_key(auth_client, await new_service(auth_client), key_type)
        response = await auth_client.post("/notifications/v1/", json={"to": "07700900123"}, headers=key.headers())
        assert response.status_code == (400 if key_type == "team" else 201), response.text

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "k", "key_type": "admin"},
            {"name": "", "key_type": "normal"},
            {"name": " ", "key_type": "test"},
            {"name": "k" * 256, "key_type": "normal"},
            {"key_type": "normal"},
            {"name": "k"},
            {"name": "k", "key_type": "normal", "secret": "s"},
        ],
    )
    async def test_a_bad_key_request_is_422(self, auth_client: AsyncClient, body: dict[str, str]) -> None:
        service_id = await new_service(auth_client)
        response = await auth_client.post(f"/services/v1/{service_id}/api-keys", json=body, headers=admin_headers())
        assert response.status_code == 422

    async def test_a_live_keys_name_is_unique_and_a_revoked_ones_free(self, auth_client: AsyncClient) -> None:
        service_id = await new_service(auth_client)
        first = await new_key(auth_client, service_id, name="same")
        again = await auth_client.post(
            f"/services/v1/{service_id}/api-keys", json={"name": "same", "key_type": "test"}, headers=admin_headers()
        )
        assert again.status_code == 409
        await auth_client.delete(f"/services/v1/{service_id}/api-keys/{first.id}", headers=admin_headers())
        assert (await new_key(auth_client, service_id, name="same")).id != first.id

    async def test_a_key_of_an_unknown_service_is_404(self, auth_client: AsyncClient) -> None:
        missing = uuid.uuid4()
        response = await auth_client.post(
            f"/services/v1/{missing}/api-keys", json={"name": "k", "key_type": "normal"}, headers=admin_headers()
        )
        assert (response.status_code, response.json()) == (404, {"detail": f"Service {missing} not found"})

    async def test_a_new_key_works_at_once_though_its_services_keys_are_cached(
        self, auth_client: AsyncClient, key: Key
    ) -> None:
        assert await send(auth_client, key) == 201
        await asyncio.sleep(0.3)
        newer = await new_key(auth_client, key.service_id, name="newer")
        assert await send(auth_client, newer) == 201


class TestRevokeKey:
    async def test_revoking_is_204_and_idempotent(self, auth_client: AsyncClient, key: Key) -> None:
        path = f"/services/v1/{key.service_id}/api-keys/{key.id}"
        assert (await auth_client.delete(path, headers=admin_headers())).status_code == 204
        listed = (await auth_client.get(f"/services/v1/{key.service_id}/api-keys", headers=admin_headers())).json()
        revoked_at = listed[0]["revoked_at"]
        assert revoked_at is not None
        assert (await auth_client.delete(path, headers=admin_headers())).status_code == 204
        again = (await auth_client.get(f"/services/v1/{key.service_id}/api-keys", headers=admin_headers())).json()
        assert again[0]["revoked_at"] == revoked_at

    async def test_another_services_key_is_404_and_stays_live(self, auth_client: AsyncClient, key: Key) -> None:
        other = await new_service(auth_client)
        response = await auth_client.delete(f"/services/v1/{other}/api-keys/{key.id}", headers=admin_headers())
        assert (response.status_code, response.json()) == (404, {"detail": f"API key {key.id} not found"})
        assert await send(auth_client, key) == 201

    async def test_a_revoked_key_is_refused_by_another_process_within_the_cache_bound(
        self, auth_client: AsyncClient, auth_settings: Settings, key: Key
    ) -> None:
        """A second application (another process or replica): its cache holds the key until AUTH_KEY_CACHE_S."""
        other = create_app(auth_settings)
        async with other.router.lifespan_context(other), other_client(other) as elsewhere:
            assert await send(elsewhere, key) == 201
            await auth_client.delete(f"/services/v1/{key.service_id}/api-keys/{key.id}", headers=admin_headers())
            revoked_at = time.monotonic()
            assert await send(auth_client, key) == 403
            while await send(elsewhere, key) == 201:
                assert time.monotonic() - revoked_at < auth_settings.auth_key_cache_s + 0.5
                await asyncio.sleep(0.05)
            response = await elsewhere.post("/notifications/v1/", json=NOTIFICATION, headers=key.headers())
            assert response.json() == {"detail": "Invalid token: API key revoked"}


class TestKeyCache:
    async def test_a_revocation_is_refused_at_once_in_its_process_despite_a_concurrent_lookup(
        self, auth_app: FastAPI, auth_client: AsyncClient, key: Key, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A lookup that read the keys before the revocation committed must not be cached after it."""
        authenticator = auth_app.state.authenticator
        lookup = authenticator.lookup
        release = asyncio.Event()

        async def slow_lookup(service_id: uuid.UUID) -> object:
            found = await lookup(service_id)
            await release.wait()
            return found

        authenticator.forget(key.service_id)
        monkeypatch.setattr(authenticator, "lookup", slow_lookup)
        stale = asyncio.create_task(auth_client.post("/notifications/v1/", json=NOTIFICATION, headers=key.headers()))
        await asyncio.sleep(0.2)  # the lookup has read the key, live
        monkeypatch.setattr(authenticator, "lookup", lookup)
        revoked = await auth_client.delete(f"/services/v1/{key.service_id}/api-keys/{key.id}", headers=admin_headers())
        assert revoked.status_code == 204
        release.set()
        assert (await stale).status_code == 201  # it was checked before the revocation
        assert await send(auth_client, key) == 403

    async def test_tokens_naming_unknown_services_do_not_evict_known_ones(
        self, auth_app: FastAPI, auth_client: AsyncClient, key: Key
    ) -> None:
        assert await send(auth_client, key) == 201
        cache = auth_app.state.authenticator.cache
        for _ in range(cache.max_unknown + 50):
            response = await auth_client.post(
                "/notifications/v1/", json=NOTIFICATION, headers=bearer(create_token(key.secret, str(uuid.uuid4())))
            )
            assert response.json() == {"detail": "Invalid token: service not found"}
        assert len(cache.unknown) == cache.max_unknown
        assert key.service_id in cache.entries

    async def test_the_key_is_never_cached_on_the_way(self, auth_client: AsyncClient) -> None:
        service_id = await new_service(auth_client)
        response = await auth_client.post(
            f"/services/v1/{service_id}/api-keys", json={"name": "k", "key_type": "test"}, headers=admin_headers()
        )
        assert response.headers["cache-control"] == "no-store"

    async def test_a_cached_key_costs_no_database_round_trip(
        self, auth_app: FastAPI, auth_client: AsyncClient, key: Key
    ) -> None:
        created = await auth_client.post("/notifications/v1/", json=NOTIFICATION, headers=key.headers())
        with recorded_statements(auth_app) as statements:
            response = await auth_client.get(f"/notifications/v1/{created.json()['id']}", headers=key.headers())
        assert response.status_code == 200
        assert len(statements) == 1, statements  # the notification's SELECT, no key lookup

    async def test_concurrent_requests_of_a_service_share_one_lookup(
        self, auth_app: FastAPI, auth_client: AsyncClient, key: Key
    ) -> None:
        auth_app.state.authenticator.cache.forget(key.service_id)
        with recorded_statements(auth_app) as statements:
            responses = await asyncio.gather(
                *(auth_client.get("/notifications/v1/?limit=1", headers=key.headers()) for _ in range(20))
            )
        assert {response.status_code for response in responses} == {200}
        assert sum("api_keys" in statement for statement in statements) == 1


class TestSecretRotation:
    def test_the_first_key_encrypts_and_every_key_decrypts(self) -> None:
        old, new = SecretStr("o" * 32), SecretStr("n" * 32)
        stored_under_old = SecretBox([old]).encrypt("secret")
        rotated = SecretBox([new, old])
        assert rotated.decrypt(stored_under_old) == "secret"
        assert SecretBox([new]).decrypt(rotated.encrypt("secret")) == "secret"
        assert SecretBox([new]).decrypt(rotated.rotate(stored_under_old)) == "secret"
        with pytest.raises(UndecryptableSecret):
            SecretBox([new]).decrypt(stored_under_old)

    async def test_a_key_encrypted_under_the_old_secret_key_keeps_working_after_rotation(
        self, auth_client: AsyncClient, auth_settings: Settings, key: Key
    ) -> None:
        rotated = auth_settings.model_copy(
            update={"secret_key": [SecretStr("r" * 40), *(auth_settings.secret_key or [])]}
        )
        other = create_app(rotated)
        async with other.router.lifespan_context(other), other_client(other) as elsewhere:
            assert await send(elsewhere, key) == 201


class TestGuestList:
    async def test_recipients_are_stored_normalised_and_listed(self, auth_client: AsyncClient) -> None:
        service_id = await new_service(auth_client)
        path = f"/services/v1/{service_id}/guest-list"
        for recipient in ("Ada@Example.COM", "07700 900123", "+1 (202) 555-0143"):
            added = await auth_client.post(path, json={"recipient": recipient}, headers=admin_headers())
            assert added.status_code == 201
        listed = (await auth_client.get(path, headers=admin_headers())).json()
        assert [guest["recipient"] for guest in listed] == ["+12025550143", "+447700900123", "ada@example.com"]
        duplicate = await auth_client.post(path, json={"recipient": "+44 7700 900 123"}, headers=admin_headers())
        assert duplicate.status_code == 409

    @pytest.mark.parametrize("recipient", ["", "12", "not a number", "x" * 321, "0770090012345678"])
    async def test_a_recipient_that_is_neither_is_422(self, auth_client: AsyncClient, recipient: str) -> None:
        service_id = await new_service(auth_client)
        response = await auth_client.post(
            f"/services/v1/{service_id}/guest-list", json={"recipient": recipient}, headers=admin_headers()
        )
        assert response.status_code == 422

    async def test_an_entry_is_removed_by_its_service_only(self, auth_client: AsyncClient) -> None:
        service_id, other = await new_service(auth_client), await new_service(auth_client)
        guest = (
            await auth_client.post(
                f"/services/v1/{service_id}/guest-list", json={"recipient": "a@b.example"}, headers=admin_headers()
            )
        ).json()
        for owner, status in ((other, 404), (service_id, 204), (service_id, 404)):
            removed = await auth_client.delete(
                f"/services/v1/{owner}/guest-list/{guest['id']}", headers=admin_headers()
            )
            assert removed.status_code == status
        assert (await auth_client.get(f"/services/v1/{service_id}/guest-list", headers=admin_headers())).json() == []
