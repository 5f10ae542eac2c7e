"""A service's senders: text message senders and e-mail reply-to addresses, one default of each, admin only."""

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.auth.conftest import admin_headers, new_key, new_service
from tests.timestamps import assert_utc_timestamp


@dataclass(frozen=True)
class Kind:
    """One kind of sender: its route, the field holding its value, and valid values of it."""

    path: str
    field: str
    values: tuple[str, ...]

    def url(self, service_id: uuid.UUID) -> str:
        return f"/services/v1/{service_id}/{self.path}"


SMS = Kind("sms-senders", "sms_sender", ("GOVUK", "Tours", "+447700900123", "Alerts", "+447700900456"))
EMAIL = Kind(
    "email-reply-to",
    "email_address",
    ("a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"),
)
KINDS = pytest.mark.parametrize("kind", [SMS, EMAIL], ids=["sms-senders", "email-reply-to"])


async def add(client: AsyncClient, service_id: uuid.UUID, kind: Kind, value: object, **fields: object) -> Response:
    """POST a sender with the admin token."""
    return await client.post(kind.url(service_id), json={kind.field: value, **fields}, headers=admin_headers())


async def added(client: AsyncClient, service_id: uuid.UUID, kind: Kind, value: str, **fields: object) -> dict[str, Any]:
    """Add a sender, which must be a 201; its body."""
    response = await add(client, service_id, kind, value, **fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def listed(client: AsyncClient, service_id: uuid.UUID, kind: Kind) -> list[dict[str, Any]]:
    response = await client.get(kind.url(service_id), headers=admin_headers())
    assert response.status_code == 200, response.text
    return list(response.json())


async def defaults(client: AsyncClient, service_id: uuid.UUID, kind: Kind) -> list[str]:
    """The values of the service's default senders of ``kind`` (exactly one whenever it has any)."""
    return [sender[kind.field] for sender in await listed(client, service_id, kind) if sender["is_default"]]


class TestCreateSender:
    @KINDS
    async def test_a_sender_is_201_with_its_id_service_value_default_and_creation_time(
        self, auth_client: AsyncClient, kind: Kind
    ) -> None:
        service_id = await new_service(auth_client)
        sender = await added(auth_client, service_id, kind, kind.values[0])
        assert set(sender) == {"id", "service_id", kind.field, "is_default", "created_at"}
        assert uuid.UUID(sender["id"]).version == 4
        assert (sender["service_id"], sender[kind.field], sender["is_default"]) == (
            str(service_id),
            kind.values[0],
            True,
        )
        assert_utc_timestamp(sender["created_at"])

    @KINDS
    async def test_the_first_is_the_default_even_when_not_asked_and_later_ones_are_not(
        self, auth_client: AsyncClient, kind: Kind
    ) -> None:
        service_id = await new_service(auth_client)
        first = await added(auth_client, service_id, kind, kind.values[0], is_default=False)
        later = [await added(auth_client, service_id, kind, value) for value in kind.values[1:3]]
        assert [first["is_default"], *(sender["is_default"] for sender in later)] == [True, False, False]
        assert await defaults(auth_client, service_id, kind) == [kind.values[0]]

    @KINDS
    async def test_is_default_moves_the_default_leaving_exactly_one_after_each_step(
        self, auth_client: AsyncClient, kind: Kind
    ) -> None:
        service_id = await new_service(auth_client)
        a, b, c, d, e = kind.values
        steps = [(a, False, a), (b, True, b), (c, False, b), (d, True, d), (e, False, d), (a, True, a)]
        for value, is_default, expected in steps:
            sender = await added(auth_client, service_id, kind, value, is_default=is_default)
            assert sender["is_default"] is (value == expected)
            assert await defaults(auth_client, service_id, kind) == [expected]

    @KINDS
    async def test_the_list_is_oldest_first_as_created(self, auth_client: AsyncClient, kind: Kind) -> None:
        service_id = await new_service(auth_client)
        created = [await added(auth_client, service_id, kind, value) for value in kind.values]
        senders = await listed(auth_client, service_id, kind)
        assert senders == created
        assert [sender["created_at"] for sender in senders] == sorted(sender["created_at"] for sender in senders)

    async def test_the_two_kinds_and_two_services_each_have_their_own_default(self, auth_client: AsyncClient) -> None:
        first, second = await new_service(auth_client), await new_service(auth_client)
        await added(auth_client, first, SMS, "GOVUK")
        reply_to = await added(auth_client, first, EMAIL, "help@example.com")
        theirs = await added(auth_client, second, SMS, "Tours")
        assert (reply_to["is_default"], theirs["is_default"]) == (True, True)
        assert await defaults(auth_client, first, SMS) == ["GOVUK"]
        assert await defaults(auth_client, second, SMS) == ["Tours"]
        assert await listed(auth_client, second, EMAIL) == []

    @KINDS
    async def test_an_unknown_field_is_422_and_stores_nothing(self, auth_client: AsyncClient, kind: Kind) -> None:
        service_id = await new_service(auth_client)
        response = await add(auth_client, service_id, kind, kind.values[0], colour="red")
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "colour"]
        assert await listed(auth_client, service_id, kind) == []


class TestUnknownService:
    @KINDS
    async def test_adding_to_or_listing_an_unknown_service_is_404(self, auth_client: AsyncClient, kind: Kind) -> None:
        missing = uuid.uuid4()
        posted = await add(auth_client, missing, kind, kind.values[0])
        got = await auth_client.get(kind.url(missing), headers=admin_headers())
        for response in (posted, got):
            assert (response.status_code, response.json()) == (404, {"detail": f"Service {missing} not found"})


class TestAdminOnly:
    @KINDS
    async def test_without_a_token_is_401_and_stores_nothing(self, auth_client: AsyncClient, kind: Kind) -> None:
        service_id = await new_service(auth_client)
        posted = await auth_client.post(kind.url(service_id), json={kind.field: kind.values[0]})
        got = await auth_client.get(kind.url(service_id))
        for response in (posted, got):
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert await listed(auth_client, service_id, kind) == []

    @KINDS
    async def test_the_services_own_token_is_403_and_stores_nothing(self, auth_client: AsyncClient, kind: Kind) -> None:
        service_id = await new_service(auth_client)
        headers = (await new_key(auth_client, service_id)).headers()
        posted = await auth_client.post(kind.url(service_id), json={kind.field: kind.values[0]}, headers=headers)
        got = await auth_client.get(kind.url(service_id), headers=headers)
        assert (posted.status_code, got.status_code) == (403, 403)
        assert await listed(auth_client, service_id, kind) == []


class TestSmsSenderValues:
    @pytest.mark.parametrize(
        ("value", "stored"),
        [
            ("ABC", "ABC"),
            ("ABCDEFGHIJK", "ABCDEFGHIJK"),
            ("GOV UK 123", "GOV UK 123"),
            ("07700 900 123", "+447700900123"),
            ("+44 7700 900123", "+447700900123"),
            ("0044 7700 900123", "+447700900123"),
            ("+44 (0) 7700 900 123", "+447700900123"),
            ("+1 202 555 0143", "+12025550143"),
            ("  GOVUK ", "GOVUK"),
        ],
        ids=[
            "3-letters",
            "11-letters",
            "letters-digits-spaces",
            "uk",
            "uk-e164",
            "uk-00",
            "20-characters",
            "us",
            "surrounding-spaces",
        ],
    )
    async def test_a_name_is_kept_and_a_number_is_stored_in_e164(
        self, auth_client: AsyncClient, value: str, stored: str
    ) -> None:
        service_id = await new_service(auth_client)
        assert (await added(auth_client, service_id, SMS, value))["sms_sender"] == stored
        assert [sender["sms_sender"] for sender in await listed(auth_client, service_id, SMS)] == [stored]

    @pytest.mark.parametrize(
        "value",
        [
            "AB",
            "ABCDEFGHIJKL",
            "GOV.UK",
            "GOV_UK",
            "Tours!",
            "ça va",
            "",
            "   ",
            "12",
            "12345",
            "07700 900 12",
            "+44 (0) 7700 900 1234",
            "0770 WWW WWWW",
            "ABC\x00",
            123,
            None,
        ],
        ids=[
            "2-letters",
            "12-letters",
            "full-stop",
            "underscore",
            "exclamation",
            "accent",
            "empty",
            "blank",
            "2-digits",
            "digits-not-a-number",
            "number-too-short",
            "21-characters",
            "letters-in-a-number",
            "nul",
            "not-a-string",
            "null",
        ],
    )
    async def test_anything_else_is_422_naming_the_field_and_stores_nothing(
        self, auth_client: AsyncClient, value: object
    ) -> None:
        service_id = await new_service(auth_client)
        response = await add(auth_client, service_id, SMS, value)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "sms_sender"]
        assert await listed(auth_client, service_id, SMS) == []


LONGEST_LOCAL_PART = "x" * 64
# 64 + 1 + 189 = 254 characters, the longest address email-validator accepts (RFC 5321's path limit).
LONGEST_ADDRESS = f"{LONGEST_LOCAL_PART}@{'d' * 63}.{'d' * 63}.{'d' * 57}.com"


class TestEmailReplyToValues:
    @pytest.mark.parametrize(
        ("value", "stored"),
        [
            ("a@b.co", "a@b.co"),
            ("Ada.Lovelace+tours@example.co.uk", "Ada.Lovelace+tours@example.co.uk"),
            (LONGEST_ADDRESS, LONGEST_ADDRESS),
            ("  help@example.com ", "help@example.com"),
        ],
        ids=["short", "plus-and-subdomains", "254-characters", "surrounding-spaces"],
    )
    async def test_an_address_is_stored(self, auth_client: AsyncClient, value: str, stored: str) -> None:
        assert len(LONGEST_ADDRESS) == 254
        service_id = await new_service(auth_client)
        assert (await added(auth_client, service_id, EMAIL, value))["email_address"] == stored
        assert [sender["email_address"] for sender in await listed(auth_client, service_id, EMAIL)] == [stored]

    @pytest.mark.parametrize(
        "value",
        [
            "not an address",
            "ab",
            "a@b",
            "ada@@example.com",
            "ada@localhost",
            "Ada <ada@example.com>",
            "ada@example.com\nBcc: eve@example.com",
            f"x{LONGEST_ADDRESS}",
            "x" * 300 + "@example.com",
            "",
            None,
        ],
        ids=[
            "words",
            "2-characters",
            "no-domain-dot",
            "two-ats",
            "single-label-domain",
            "display-name",
            "header-injection",
            "255-characters",
            "past-320-characters",
            "empty",
            "null",
        ],
    )
    async def test_anything_else_is_422_naming_the_field_and_stores_nothing(
        self, auth_client: AsyncClient, value: object
    ) -> None:
        service_id = await new_service(auth_client)
        response = await add(auth_client, service_id, EMAIL, value)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "email_address"]
        assert await listed(auth_client, service_id, EMAIL) == []


class TestConcurrentSenders:
    @KINDS
    async def test_concurrent_first_senders_of_a_service_leave_exactly_one_default(
        self, auth_client: AsyncClient, kind: Kind
    ) -> None:
        service_id = await new_service(auth_client)
        responses = await asyncio.gather(*(add(auth_client, service_id, kind, value) for value in kind.values))
        assert [response.status_code for response in responses] == [201] * len(kind.values)
        answered = [response.json()[kind.field] for response in responses if response.json()["is_default"]]
        assert len(answered) == 1
        assert await defaults(auth_client, service_id, kind) == answered
        assert len(await listed(auth_client, service_id, kind)) == len(kind.values)

    @KINDS
    async def test_concurrent_claims_of_the_default_leave_exactly_one(
        self, auth_client: AsyncClient, kind: Kind
    ) -> None:
        service_id = await new_service(auth_client)
        await added(auth_client, service_id, kind, kind.values[0])
        claims = [add(auth_client, service_id, kind, value, is_default=True) for value in kind.values[1:]]
        responses = await asyncio.gather(*claims)
        assert [response.status_code for response in responses] == [201] * len(claims)
        assert all(response.json()["is_default"] for response in responses)
        (default,) = await defaults(auth_client, service_id, kind)
        assert default in kind.values[1:]
