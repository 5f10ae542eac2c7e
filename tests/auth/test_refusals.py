"""Bad tokens and attacks: each a 401 or 403 with Notify's message, none a 500, none writing to the database."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.auth.tokens import create_token
from fastapi1.models import ApiKey, Notification, Service
from tests.auth.conftest import ADMIN_SECRET, Key, admin_headers, bearer, new_key, new_service
from tests.statements import recorded_statements

GENERAL = (
    "Invalid token: make sure your API token matches the example at "
    "https://docs.notifications.service.gov.uk/rest-api.html#authorisation-header"
)
NOTIFICATION = {"to": "ada@example.com", "personalization": {"code": "42"}}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    """A token with alg none: header and claims, no signature."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


def signed(secret: str, claims: dict[str, object], algorithm: str = "HS256") -> str:
    """A token of any claims (PyJWT would refuse some), signed by hand with an HMAC."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[algorithm]
    signing_input = f"{b64(json.dumps({'typ': 'JWT', 'alg': algorithm}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret.encode(), signing_input.encode(), digest).digest())}"


async def rows(connection: AsyncConnection) -> tuple[int, ...]:
    counts = [select(func.count()).select_from(table) for table in (Notification, ApiKey, Service)]
    return tuple([int((await connection.execute(count)).scalar_one()) for count in counts])


async def refused(
    client: AsyncClient, connection: AsyncConnection, headers: dict[str, str], path: str = "/notifications/v1/"
) -> tuple[int, str]:
    """POST with these headers; assert the refusal's shape and that nothing was written."""
    before = await rows(connection)
    response = await client.post(path, json=NOTIFICATION if "notifications" in path else {"name": "x"}, headers=headers)
    assert response.status_code in (401, 403), response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert set(response.json()) == {"detail"}
    assert await rows(connection) == before
    return response.status_code, response.json()["detail"]


class TestMissingOrMalformedHeader:
    async def test_no_token_is_401(self, auth_client: AsyncClient, auth_connection: AsyncConnection) -> None:
        assert await refused(auth_client, auth_connection, {}) == (
            401,
            "Unauthorized: authentication token must be provided",
        )

    @pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "bearertoken"])
    async def test_another_scheme_is_401(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, value: str
    ) -> None:
        assert await refused(auth_client, auth_connection, {"Authorization": value}) == (
            401,
            "Unauthorized: authentication bearer scheme must be used",
        )

    @pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "e30.e30", "....", "e30.e30.e30.e30", "%ff.%ff.%ff"])
    async def test_a_token_that_is_not_a_jwt_is_403(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, token: str
    ) -> None:
        assert await refused(auth_client, auth_connection, bearer(token)) == (403, GENERAL)

    async def test_a_10_kb_token_is_refused_before_it_is_read(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        claims = {"iss": str(key.service_id), "iat": int(time.time()), "padding": "x" * 10_000}
        assert await refused(auth_client, auth_connection, bearer(signed(key.secret, claims))) == (403, GENERAL)

    async def test_a_token_is_accepted_in_its_canonical_spelling_only(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        token = key.headers()["Authorization"].removeprefix("Bearer ")
        last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(token[-1])
        # The signature's last character carries 4 unused bits: neighbours decode to the same bytes.
        sibling = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
        for variant in (token[:-1] + sibling, token + "=", f"{token[:10]}~~~{token[10:]}", f" {token}x"):
            assert (await refused(auth_client, auth_connection, bearer(variant)))[0] == 403
        assert (
            await auth_client.post("/notifications/v1/", json=NOTIFICATION, headers=bearer(token))
        ).status_code == 201

    async def test_the_scheme_is_case_insensitive_as_notifys(self, auth_client: AsyncClient, key: Key) -> None:
        token = key.headers()["Authorization"].removeprefix("Bearer ")
        response = await auth_client.post(
            "/notifications/v1/", json=NOTIFICATION, headers={"Authorization": f"bearer {token}"}
        )
        assert response.status_code == 201


class TestAlgorithm:
    @pytest.mark.parametrize("alg", ["none", "None", "NONE"])
    async def test_alg_none_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key, alg: str
    ) -> None:
        token = unsigned({"typ": "JWT", "alg": alg}, {"iss": str(key.service_id), "iat": int(time.time())})
        assert await refused(auth_client, auth_connection, bearer(token)) == (
            403,
            "Invalid token: algorithm used is not HS256",
        )

    async def test_rs256_signed_with_the_secret_as_a_public_key_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        token = jwt.encode({"iss": str(key.service_id), "iat": int(time.time())}, pem, algorithm="RS256")
        assert await refused(auth_client, auth_connection, bearer(token)) == (
            403,
            "Invalid token: algorithm used is not HS256",
        )

    async def test_hs256_claimed_but_signed_with_the_public_key_as_hmac_secret_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        # The classic confusion: an HMAC made with a public key. Here no key is public, so it is a wrong signature.
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        token = signed(public.decode(), {"iss": str(key.service_id), "iat": int(time.time())})
        assert await refused(auth_client, auth_connection, bearer(token)) == (
            403,
            "Invalid token: API key not found",
        )

    @pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
    async def test_another_hmac_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key, algorithm: str
    ) -> None:
        token = signed(key.secret * 2, {"iss": str(key.service_id), "iat": int(time.time())}, algorithm)
        assert await refused(auth_client, auth_connection, bearer(token)) == (
            403,
            "Invalid token: algorithm used is not HS256",
        )


class TestIssuer:
    async def test_a_token_without_iss_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        token = signed(key.secret, {"iat": int(time.time())})
        assert await refused(auth_client, auth_connection, bearer(token)) == (
            403,
            "Invalid token: iss field not provided",
        )

    @pytest.mark.parametrize("issuer", ["not-a-uuid", "", 12, None, ["a"], {"a": 1}, "fastapi1-admin"])
    async def test_an_iss_that_is_not_a_service_id_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key, issuer: object
    ) -> None:
        token = signed(key.secret, {"iss": issuer, "iat": int(time.time())})
        assert await refused(auth_client, auth_connection, bearer(token)) == (
            403,
            "Invalid token: service id is not the right data type",
        )

    async def test_an_unknown_service_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        token = signed(key.secret, {"iss": str(uuid.uuid4()), "iat": int(time.time())})
        assert await refused(auth_client, auth_connection, bearer(token)) == (403, "Invalid token: service not found")

    async def test_a_service_without_keys_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        service_id = await new_service(auth_client)
        token = signed(key.secret, {"iss": str(service_id), "iat": int(time.time())})
        assert await refused(auth_client, auth_connection, bearer(token)) == (
            403,
            "Invalid token: service has no API keys",
        )


class TestSignature:
    async def test_a_token_signed_with_another_services_key_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        other = await new_key(auth_client, await new_service(auth_client))
        token = signed(other.secret, {"iss": str(key.service_id), "iat": int(time.time())})
        assert await refused(auth_client, auth_connection, bearer(token)) == (403, "Invalid token: API key not found")

    async def test_a_tampered_payload_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        header, _, signature = key.headers()["Authorization"].removeprefix("Bearer ").split(".")
        forged = b64(json.dumps({"iss": str(key.service_id), "iat": int(time.time()) + 1}).encode())
        assert await refused(auth_client, auth_connection, bearer(f"{header}.{forged}.{signature}")) == (
            403,
            "Invalid token: API key not found",
        )

    async def test_a_revoked_key_is_refused_as_revoked(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        revoked = await auth_client.delete(f"/services/v1/{key.service_id}/api-keys/{key.id}", headers=admin_headers())
        assert revoked.status_code == 204
        assert await refused(auth_client, auth_connection, key.headers()) == (403, "Invalid token: API key revoked")


class TestIssuedAt:
    @pytest.mark.parametrize("offset", [-30, 0, 30])
    async def test_iat_within_30_seconds_either_way_is_accepted(
        self, auth_client: AsyncClient, key: Key, offset: int
    ) -> None:
        response = await auth_client.post(
            "/notifications/v1/", json=NOTIFICATION, headers=key.headers(time.time() + offset)
        )
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize("offset", [-32, 32, -3600, 86_400])
    async def test_iat_beyond_30_seconds_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key, offset: int
    ) -> None:
        assert await refused(auth_client, auth_connection, key.headers(time.time() + offset)) == (
            403,
            "Error: Your system clock must be accurate to within 30 seconds",
        )

    @pytest.mark.parametrize("iat", ["missing", "now", None, True, [1], {"s": 1}])
    async def test_iat_missing_or_not_a_number_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key, iat: object
    ) -> None:
        claims: dict[str, object] = {"iss": str(key.service_id)}
        if iat != "missing":
            claims["iat"] = str(int(time.time())) if iat == "now" else iat
        assert await refused(auth_client, auth_connection, bearer(signed(key.secret, claims))) == (403, GENERAL)


class TestCallerKinds:
    async def test_a_service_token_on_an_admin_route_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, key: Key
    ) -> None:
        assert await refused(auth_client, auth_connection, key.headers(), "/services/v1/") == (
            403,
            "Unauthorized: not allowed to perform this action",
        )

    async def test_an_admin_token_where_a_service_token_is_needed_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection
    ) -> None:
        assert await refused(auth_client, auth_connection, admin_headers()) == (
            403,
            "Invalid token: service id is not the right data type",
        )

    @pytest.mark.parametrize(
        "make",
        [
            lambda: create_token("x" * 32 + ADMIN_SECRET[:4], "fastapi1-admin"),
            lambda: create_token(ADMIN_SECRET, "fastapi1-admin", time.time() - 60),
        ],
        ids=["wrong secret", "stale"],
    )
    async def test_a_bad_admin_token_is_refused(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection, make: Callable[[], str]
    ) -> None:
        status, _ = await refused(auth_client, auth_connection, bearer(make()), "/services/v1/")
        assert status == 403

    async def test_no_token_on_an_admin_route_is_401(
        self, auth_client: AsyncClient, auth_connection: AsyncConnection
    ) -> None:
        assert (await refused(auth_client, auth_connection, {}, "/services/v1/"))[0] == 401

    @pytest.mark.parametrize(
        "path", ["/add", "/add_numbers", "/predict", "/schedule", "/add/b1", "/predict/" + str(uuid.UUID(int=1))]
    )
    async def test_additions_and_predictions_need_a_service_token(self, auth_client: AsyncClient, path: str) -> None:
        method = "GET" if path.count("/") > 1 else "POST"
        response = await auth_client.request(method, path, json={})
        assert response.status_code == 401
        assert response.json() == {"detail": "Unauthorized: authentication token must be provided"}

    async def test_status_routes_need_no_token(self, auth_client: AsyncClient) -> None:
        assert (await auth_client.get("/status/heartbeat")).status_code == 204
        assert (await auth_client.get("/status/ready")).status_code == 200


class TestNothingIsWritten:
    async def test_a_refusal_runs_no_statement_but_a_key_lookup(
        self, auth_app: FastAPI, auth_client: AsyncClient, key: Key
    ) -> None:
        other_service = str(await new_service(auth_client))
        tokens = [
            "",
            "x",
            signed(key.secret, {"iss": str(uuid.uuid4()), "iat": int(time.time())}),
            signed(key.secret, {"iss": other_service, "iat": int(time.time())}),
            signed(key.secret, {"iss": str(key.service_id), "iat": int(time.time()) - 60}),
            signed(key.secret * 2, {"iss": str(key.service_id), "iat": int(time.time())}),
        ]
        with recorded_statements(auth_app) as statements:
            for token in tokens:
                response = await auth_client.post("/notifications/v1/", json=NOTIFICATION, headers=bearer(token))
                assert response.status_code in (401, 403)
        assert statements
        assert all(statement.lstrip().upper().startswith("SELECT") for statement in statements), statements
