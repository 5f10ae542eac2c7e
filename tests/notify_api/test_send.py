"""Sending through ``/v2``: Notify's bodies, checks and answers, stored as ``/notifications/v1`` stores them."""

import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.models import Notification
from tests.auth.conftest import admin_headers, new_key, new_service
from tests.notify_api.conftest import Service, new_template, v2_error

EMAIL = "/v2/notifications/email"
SMS = "/v2/notifications/sms"


async def add_sender(client: AsyncClient, service_id: uuid.UUID, path: str, body: dict[str, object]) -> str:
    """Add a sender to a service and return its id."""
    response = await client.post(f"/services/v1/{service_id}/{path}", json=body, headers=admin_headers())
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def stored(connection: AsyncConnection, notification_id: str) -> Notification:
    """The notification's row."""
    result = await connection.execute(select(Notification).where(Notification.id == uuid.UUID(notification_id)))
    row = result.one()
    await connection.rollback()
    return Notification(**row._mapping)


class TestEmail:
    async def test_an_email_is_stored_rendered_and_answered_in_notifys_shape(
        self, auth_client: AsyncClient, service: Service, auth_connection: AsyncConnection
    ) -> None:
        body = {
            "email_address": "ada@example.com",
            "template_id": service.email_template,
            "personalisation": {"name": "Ada", "band": "Korn"},
            "reference": "order-17",
        }
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        assert response.status_code == 201, response.text
        answer = response.json()
        notification_id = answer["id"]
        assert answer == {
            "id": notification_id,
            "reference": "order-17",
            "content": {
                "body": "Dear Ada, Korn plays.",
                "subject": "Hi Ada",
                "from_email": "notify@fastapi1.localhost",
                "one_click_unsubscribe_url": None,
            },
            "uri": f"http://test/v2/notifications/{notification_id}",
            "template": {
                "id": service.email_template,
                "version": 1,
                "uri": f"http://test/v2/template/{service.email_template}/version/1",
            },
            "scheduled_for": None,
            "sanitised_content": {},
        }
        row = await stored(auth_connection, notification_id)
        assert (row.to, row.reference, row.template_version, row.service_id, row.status) == (
            "ada@example.com",
            "order-17",
            1,
            service.id,
            "created",
        )

    async def test_numbers_and_lists_in_the_personalisation_render_as_notify_renders_them(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        body = {
            "email_address": "ada@example.com",
            "template_id": service.email_template,
            "personalisation": {"name": 7, "band": ["Korn", 2.5, True]},
        }
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        assert response.status_code == 201, response.text
        assert response.json()["content"]["body"] == "Dear 7, * Korn\n* 2.5\n* true plays."

    async def test_sanitise_content_for_escapes_the_markdown_of_the_named_values_only(
        self, auth_client: AsyncClient, service: Service, auth_connection: AsyncConnection
    ) -> None:
        body = {
            "email_address": "ada@example.com",
            "template_id": service.email_template,
            "personalisation": {"name": "*Ada* [x](y)", "band": "_Korn_"},
            "sanitise_content_for": ["name"],
        }
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        assert response.status_code == 201, response.text
        assert response.json()["content"]["body"] == "Dear \\*Ada\\* \\[x\\](y), _Korn_ plays."
        assert response.json()["sanitised_content"] == {"name": "\\*Ada\\* \\[x\\](y)"}

    async def test_sanitise_content_for_removes_links(self, auth_client: AsyncClient, service: Service) -> None:
        body = {
            "email_address": "ada@example.com",
            "template_id": service.email_template,
            "personalisation": {"name": "Ada see https://evil.example/x and www.evil.example", "band": "K"},
            "sanitise_content_for": ["name"],
        }
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        assert response.json()["content"]["body"] == "Dear Ada see  and , K plays."

    async def test_sanitise_content_for_naming_an_absent_key_is_a_validation_error(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        body = {
            "email_address": "ada@example.com",
            "template_id": service.email_template,
            "personalisation": {"name": "Ada", "band": "Korn"},
            "sanitise_content_for": ["nope"],
        }
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        assert response.status_code == 400
        assert response.json()["errors"][0]["error"] == "ValidationError"
        assert "nope" in response.json()["errors"][0]["message"]

    async def test_the_reply_to_asked_for_is_recorded_and_the_default_otherwise(
        self, auth_client: AsyncClient, service: Service, auth_connection: AsyncConnection
    ) -> None:
        first = await add_sender(auth_client, service.id, "email-reply-to", {"email_address": "a@example.com"})
        second = await add_sender(auth_client, service.id, "email-reply-to", {"email_address": "b@example.com"})
        base = {
            "email_address": "ada@example.com",
            "template_id": service.email_template,
            "personalisation": {"name": "Ada", "band": "Korn"},
        }
        chosen = await auth_client.post(EMAIL, json=base | {"email_reply_to_id": second}, headers=service.key.headers())
        default = await auth_client.post(EMAIL, json=base, headers=service.key.headers())
        assert (chosen.status_code, default.status_code) == (201, 201)
        assert str((await stored(auth_connection, chosen.json()["id"])).email_reply_to_id) == second
        assert str((await stored(auth_connection, default.json()["id"])).email_reply_to_id) == first

    async def test_another_services_reply_to_is_a_bad_request_naming_it(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        other = await new_service(auth_client)
        theirs = await add_sender(auth_client, other, "email-reply-to", {"email_address": "a@example.com"})
        body = {
            "email_address": "ada@example.com",
            "template_id": service.email_template,
            "personalisation": {"name": "Ada", "band": "Korn"},
            "email_reply_to_id": theirs,
        }
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        message = f"email_reply_to_id {theirs} does not exist in database for service id {service.id}"
        assert (response.status_code, response.json()) == (400, v2_error(400, "BadRequestError", message))

    async def test_the_unsubscribe_link_is_recorded_and_answered(
        self, auth_client: AsyncClient, service: Service, auth_connection: AsyncConnection
    ) -> None:
        url = "https://example.com/unsubscribe?who=ada"
        body = {
            "email_address": "ada@example.com",
            "template_id": service.email_template,
            "personalisation": {"name": "Ada", "band": "Korn"},
            "one_click_unsubscribe_url": url,
        }
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        assert response.status_code == 201, response.text
        assert response.json()["content"]["one_click_unsubscribe_url"] == url
        assert (await stored(auth_connection, response.json()["id"])).one_click_unsubscribe_url == url

    async def test_an_sms_template_cannot_send_an_email(self, auth_client: AsyncClient, service: Service) -> None:
        body = {
            "email_address": "ada@example.com",
            "template_id": service.sms_template,
            "personalisation": {"name": "A"},
        }
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        message = "sms template is not suitable for email notification"
        assert (response.status_code, response.json()) == (400, v2_error(400, "BadRequestError", message))


class TestSms:
    async def test_a_text_message_is_stored_with_its_number_normalised(
        self, auth_client: AsyncClient, service: Service, auth_connection: AsyncConnection
    ) -> None:
        sender = await add_sender(auth_client, service.id, "sms-senders", {"sms_sender": "GOVUK"})
        body = {
            "phone_number": "07700 900-123",
            "template_id": service.sms_template,
            "personalisation": {"name": "Ada"},
        }
        response = await auth_client.post(SMS, json=body, headers=service.key.headers())
        assert response.status_code == 201, response.text
        answer = response.json()
        assert answer["content"] == {"body": "Ada: doors at 7", "from_number": "GOVUK"}
        assert answer["template"]["id"] == service.sms_template
        row = await stored(auth_connection, answer["id"])
        assert (row.to, str(row.sms_sender_id)) == ("+447700900123", sender)

    @pytest.mark.parametrize("number", ["+1 202-555-0143", "+33 6 12 34 56 78", "447700900123"])
    async def test_international_numbers_are_accepted_in_e164(
        self, auth_client: AsyncClient, service: Service, number: str
    ) -> None:
        body = {"phone_number": number, "template_id": service.sms_template, "personalisation": {"name": "A"}}
        response = await auth_client.post(SMS, json=body, headers=service.key.headers())
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize(
        ("number", "problem"),
        [
            ("0770090012", "Not enough digits"),
            ("07700 900 1234 5", "Too many digits"),
            ("not a number", "Must not contain letters or symbols"),
            ("+999 123", "Not a valid country prefix"),
            ("020 7946 0000", "Not a UK mobile number"),
        ],
    )
    async def test_a_number_that_is_not_valid_is_refused_in_notifys_words(
        self, auth_client: AsyncClient, service: Service, number: str, problem: str
    ) -> None:
        body = {"phone_number": number, "template_id": service.sms_template, "personalisation": {"name": "A"}}
        response = await auth_client.post(SMS, json=body, headers=service.key.headers())
        assert (response.status_code, response.json()) == (
            400,
            v2_error(400, "ValidationError", f"phone_number {problem}"),
        )

    async def test_an_unknown_sms_sender_is_a_bad_request_naming_it(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        unknown = uuid.uuid4()
        body = {
            "phone_number": "07700900123",
            "template_id": service.sms_template,
            "personalisation": {"name": "A"},
            "sms_sender_id": str(unknown),
        }
        response = await auth_client.post(SMS, json=body, headers=service.key.headers())
        message = f"sms_sender_id {unknown} does not exist in database for service id {service.id}"
        assert (response.status_code, response.json()) == (400, v2_error(400, "BadRequestError", message))

    async def test_an_email_template_cannot_send_a_text_message(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        body = {"phone_number": "07700900123", "template_id": service.email_template}
        response = await auth_client.post(SMS, json=body, headers=service.key.headers())
        message = "email template is not suitable for sms notification"
        assert (response.status_code, response.json()) == (400, v2_error(400, "BadRequestError", message))


class TestRefusals:
    async def test_a_missing_placeholder_is_notifys_bad_request(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        body = {"email_address": "ada@example.com", "template_id": service.email_template, "personalisation": {}}
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        error = v2_error(400, "BadRequestError", "Missing personalisation: band, name")
        assert (response.status_code, response.json()) == (400, error)

    async def test_an_unknown_or_another_services_template_is_template_not_found(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        other = await new_service(auth_client)
        theirs = await new_template(auth_client, other, template_type="sms", content="hello")
        for template_id in (str(uuid.uuid4()), str(theirs["id"])):
            body = {"phone_number": "07700900123", "template_id": template_id}
            response = await auth_client.post(SMS, json=body, headers=service.key.headers())
            assert (response.status_code, response.json()) == (
                400,
                v2_error(400, "BadRequestError", "Template not found"),
            )

    async def test_a_team_key_sends_to_its_guest_list_only(self, auth_client: AsyncClient, service: Service) -> None:
        team = await new_key(auth_client, service.id, "team", name="team")
        guest = await auth_client.post(
            f"/services/v1/{service.id}/guest-list", json={"recipient": "07700 900111"}, headers=admin_headers()
        )
        assert guest.status_code == 201, guest.text
        body = {"phone_number": "+447700900111", "template_id": service.sms_template, "personalisation": {"name": "A"}}
        assert (await auth_client.post(SMS, json=body, headers=team.headers())).status_code == 201
        response = await auth_client.post(SMS, json=body | {"phone_number": "07700900123"}, headers=team.headers())
        message = "Can\u2019t send to this recipient using a team-only API key"
        assert (response.status_code, response.json()) == (400, v2_error(400, "BadRequestError", message))

    async def test_a_refused_send_stores_nothing(
        self, auth_client: AsyncClient, service: Service, auth_connection: AsyncConnection
    ) -> None:
        bodies = [
            {"email_address": "ada@example.com", "template_id": service.email_template, "personalisation": {}},
            {"email_address": "ada@example.com", "template_id": service.sms_template},
            {
                "email_address": "ada@example.com",
                "template_id": service.email_template,
                "personalisation": {"name": "a", "band": "b"},
                "email_reply_to_id": str(uuid.uuid4()),
            },
        ]
        for body in bodies:
            assert (await auth_client.post(EMAIL, json=body, headers=service.key.headers())).status_code == 400
        found = await auth_connection.scalar(
            select(Notification.id).where(Notification.service_id == service.id).limit(1)
        )
        assert found is None

    async def test_letters_are_refused_clearly(self, auth_client: AsyncClient, service: Service) -> None:
        for body in (
            {"template_id": service.email_template, "personalisation": {"address_line_1": "1 Street"}},
            {"reference": "r", "content": "JVBERi0xLjQK"},
        ):
            response = await auth_client.post("/v2/notifications/letter", json=body, headers=service.key.headers())
            error = v2_error(400, "BadRequestError", "Service is not allowed to send letters")
            assert (response.status_code, response.json()) == (400, error)

    async def test_without_a_token_v2_is_401_even_in_development(self, dev_client: AsyncClient) -> None:
        response = await dev_client.get("/v2/notifications")
        message = "Unauthorized: authentication token must be provided"
        assert (response.status_code, response.json()) == (401, v2_error(401, "AuthError", message))

    async def test_a_token_signed_with_an_unknown_secret_is_403(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        from tests.auth.conftest import Key

        forged = Key(service.key.id, service.id, f"key-{service.id}-{uuid.uuid4()}")
        response = await auth_client.get("/v2/notifications", headers=forged.headers())
        assert (response.status_code, response.json()) == (
            403,
            v2_error(403, "AuthError", "Invalid token: API key not found"),
        )


class TestLimits:
    async def test_the_rate_limit_is_notifys_rate_limit_error(self, limited_client: AsyncClient) -> None:
        service_id = await new_service(limited_client)
        key = await new_key(limited_client, service_id)
        statuses = [(await limited_client.get("/v2/templates", headers=key.headers())).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        response = await limited_client.get("/v2/templates", headers=key.headers())
        message = "Exceeded rate limit for key type NORMAL of 3 requests per 60 seconds"
        assert (response.status_code, response.json()) == (429, v2_error(429, "RateLimitError", message))
        assert int(response.headers["Retry-After"]) >= 1

    async def test_the_daily_limit_is_notifys_too_many_requests_error(self, limited_client: AsyncClient) -> None:
        service_id = await new_service(limited_client)
        template = await new_template(limited_client, service_id, template_type="sms", content="hello")
        body = {"phone_number": "07700900123", "template_id": str(template["id"])}
        statuses = []
        for index in range(5):
            key = await new_key(limited_client, service_id, name=f"k{index}")  # a key each: the rate limit is 3
            statuses.append((await limited_client.post(SMS, json=body, headers=key.headers())).status_code)
        assert statuses == [201, 201, 201, 201, 429]
        key = await new_key(limited_client, service_id, name="last")
        response = await limited_client.post(SMS, json=body, headers=key.headers())
        error = v2_error(429, "TooManyRequestsError", "Exceeded send limits (4) for today")
        assert (response.status_code, response.json()) == (429, error)


class TestSmokeTests:
    @pytest.mark.parametrize(
        ("path", "recipient"),
        [
            (EMAIL, "simulate-delivered@notifications.service.gov.uk"),
            (EMAIL, "simulate-delivered-3@notifications.service.gov.uk"),
            (SMS, "07700900000"),
            (SMS, "07700 900 222"),
        ],
    )
    async def test_a_smoke_test_recipient_is_answered_but_never_stored_or_sent(
        self, auth_client: AsyncClient, service: Service, auth_connection: AsyncConnection, path: str, recipient: str
    ) -> None:
        if path == EMAIL:
            body = {
                "email_address": recipient,
                "template_id": service.email_template,
                "personalisation": {"name": "Ada", "band": "K"},
            }
        else:
            body = {"phone_number": recipient, "template_id": service.sms_template, "personalisation": {"name": "Ada"}}
        response = await auth_client.post(path, json=body, headers=service.key.headers())
        assert response.status_code == 201, response.text
        answer = response.json()
        assert answer["content"]["body"] in {"Dear Ada, K plays.", "Ada: doors at 7"}
        read = await auth_client.get(f"/v2/notifications/{answer['id']}", headers=service.key.headers())
        assert read.status_code == 404
        found = await auth_connection.scalar(
            select(Notification.id).where(Notification.service_id == service.id).limit(1)
        )
        assert found is None

    async def test_a_smoke_test_still_checks_the_personalisation(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        body = {"phone_number": "07700900111", "template_id": service.sms_template}
        response = await auth_client.post(SMS, json=body, headers=service.key.headers())
        assert (response.status_code, response.json()) == (
            400,
            v2_error(400, "BadRequestError", "Missing personalisation: name"),
        )
