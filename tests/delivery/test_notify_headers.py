"""E-mail from /v2 at a real SMTP server (aiosmtpd): Reply-To, RFC 8058 headers; Notify's test recipients never."""

import contextlib
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from httpx import AsyncClient

from fastapi1.db.engine import Database
from fastapi1.delivery.controller import Relay
from fastapi1.delivery.providers import configured_providers
from tests.auth.conftest import Key
from tests.delivery.conftest import RunRelay, create, wait_final
from tests.delivery.test_smtp import Server, smtp_server, smtp_settings  # noqa: F401 (the fixture)

UNSUBSCRIBE_URL = "https://example.com/unsubscribe?who=ada&list=tours"
SMOKE_TEST_EMAILS = [
    "simulate-delivered@notifications.service.gov.uk",
    "simulate-delivered-2@notifications.service.gov.uk",
]
SMOKE_TEST_NUMBERS = ["07700900000", "07700900111", "07700900222"]


@dataclass(frozen=True)
class NotifyService:
    """A service with a key and a template of each type; its relay sends e-mail to the loopback SMTP server."""

    api: AsyncClient
    database: Database
    run_relay: RunRelay
    server: Server
    id: str
    key: Key
    email_template: str
    sms_template: str

    def relay(self, **overrides: Any) -> contextlib.AbstractAsyncContextManager[Relay]:
        """A relay with SMTP_HOST set to the loopback server."""
        return self.run_relay(configured_providers(smtp_settings(self.server.port, **overrides)))

    async def send_email(self, email_address: str, **fields: object) -> dict[str, Any]:
        body = {"email_address": email_address, "template_id": self.email_template, "personalisation": {"name": "Ada"}}
        response = await self.api.post("/v2/notifications/email", json=body | fields, headers=self.key.headers())
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def send_sms(self, phone_number: str) -> dict[str, Any]:
        body = {"phone_number": phone_number, "template_id": self.sms_template, "personalisation": {"name": "Ada"}}
        response = await self.api.post("/v2/notifications/sms", json=body, headers=self.key.headers())
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def add_reply_to(self, address: str, **fields: object) -> str:
        """Add a reply-to address (admin routes are open in development); its id."""
        body = {"email_address": address, **fields}
        response = await self.api.post(f"/services/v1/{self.id}/email-reply-to", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def mail(self, notification_id: str) -> EmailMessage:
        """The one mail the server received for the notification (its Message-ID names it)."""
        wanted = f"<{notification_id}@fastapi1.test>"
        (message,) = [message for _, message in self.server.handler.received if message["Message-ID"] == wanted]
        return message


async def new_template(api: AsyncClient, service_id: str, **fields: object) -> str:
    response = await api.post(f"/services/v1/{service_id}/templates", json={"name": f"t-{uuid.uuid4()}", **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
async def service(
    api: AsyncClient,
    database: Database,
    run_relay: RunRelay,
    smtp_server: Server,  # noqa: F811 (the fixture)
) -> NotifyService:
    """A new service with a normal key and one template of each type."""
    service_id = (await api.post("/services/v1/", json={"name": f"service-{uuid.uuid4()}"})).json()["id"]
    created = await api.post(f"/services/v1/{service_id}/api-keys", json={"name": "k", "key_type": "normal"})
    key = Key(uuid.UUID(created.json()["id"]), uuid.UUID(service_id), created.json()["key"])
    email = await new_template(api, service_id, subject="Hi ((name))", content="Dear ((name)), doors at 7.")
    sms = await new_template(api, service_id, content="((name)): doors at 7")
    return NotifyService(api, database, run_relay, smtp_server, service_id, key, email, sms)


class TestReplyTo:
    async def test_the_reply_to_asked_for_and_else_the_default_arrive_as_reply_to(self, service: NotifyService) -> None:
        await service.add_reply_to("help@example.com")
        other = await service.add_reply_to("tours@example.com")
        async with service.relay():
            chosen = await service.send_email("ada@example.com", email_reply_to_id=other)
            default = await service.send_email("bo@example.com")
            rows = await wait_final(service.database, [chosen["id"], default["id"]])
        assert {row["status"] for row in rows.values()} == {"delivered"}
        assert service.mail(chosen["id"])["Reply-To"] == "tours@example.com"
        assert service.mail(default["id"])["Reply-To"] == "help@example.com"
        mail = service.mail(default["id"])
        assert (mail["To"], mail["Subject"]) == ("bo@example.com", "Hi Ada")
        body = mail.get_body()
        assert body is not None
        assert body.get_content().strip() == "Dear Ada, doors at 7."

    async def test_the_default_when_sent_is_kept_though_the_default_moves_before_delivery(
        self, service: NotifyService
    ) -> None:
        await service.add_reply_to("help@example.com")
        before = await service.send_email("ada@example.com")
        await service.add_reply_to("tours@example.com", is_default=True)
        after = await service.send_email("ada@example.com")
        async with service.relay():
            await wait_final(service.database, [before["id"], after["id"]])
        assert service.mail(before["id"])["Reply-To"] == "help@example.com"
        assert service.mail(after["id"])["Reply-To"] == "tours@example.com"


class TestOneClickUnsubscribe:
    async def test_the_unsubscribe_url_goes_out_as_rfc_8058_headers(self, service: NotifyService) -> None:
        async with service.relay():
            sent = await service.send_email("ada@example.com", one_click_unsubscribe_url=UNSUBSCRIBE_URL)
            await wait_final(service.database, [sent["id"]])
        mail = service.mail(sent["id"])
        assert mail["List-Unsubscribe"] == f"<{UNSUBSCRIBE_URL}>"
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail["Reply-To"] is None

    async def test_without_a_reply_to_or_an_unsubscribe_url_the_mail_has_neither_header(
        self, service: NotifyService
    ) -> None:
        async with service.relay():
            sent = await service.send_email("ada@example.com")
            await wait_final(service.database, [sent["id"]])
        mail = service.mail(sent["id"])
        assert mail["Subject"] == "Hi Ada"
        assert [mail[header] for header in ("Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post")] == [None] * 3


class TestSimulatedRecipients:
    async def test_smoke_test_recipients_through_v2_are_answered_but_never_stored_or_sent(
        self, service: NotifyService
    ) -> None:
        """Notify's way: a 201 like any other, then nothing (reading it back is a 404); a real mail sent after
        them is the only one the server gets."""
        async with service.relay():
            answers = [await service.send_email(address) for address in SMOKE_TEST_EMAILS]
            answers += [await service.send_sms(number) for number in SMOKE_TEST_NUMBERS]
            for answer in answers:
                read = await service.api.get(f"/v2/notifications/{answer['id']}", headers=service.key.headers())
                assert read.status_code == 404
            marker = await service.send_email("ada@example.com")
            await wait_final(service.database, [marker["id"]])
        assert [message["To"] for _, message in service.server.handler.received] == ["ada@example.com"]

    async def test_smoke_test_recipients_sent_another_way_are_delivered_by_the_simulator_only(
        self, service: NotifyService
    ) -> None:
        async with service.relay():
            ids = await create(service.api, SMOKE_TEST_EMAILS + SMOKE_TEST_NUMBERS)
            rows = await wait_final(service.database, ids)
        assert [(row["status"], row["attempts"]) for row in rows.values()] == [("delivered", 1)] * len(ids)
        assert service.server.handler.received == []

    async def test_failing_recipients_through_v2_end_as_notify_says_without_reaching_smtp(
        self, service: NotifyService
    ) -> None:
        async with service.relay(delivery_max_attempts=3, delivery_retry_base_s=0.02):
            permanent = [
                (await service.send_email("perm-fail@simulator.notify"))["id"],
                (await service.send_sms("07700900002"))["id"],
            ]
            temporary = [
                (await service.send_email("temp-fail@simulator.notify"))["id"],
                (await service.send_sms("07700900003"))["id"],
            ]
            rows = await wait_final(service.database, permanent + temporary)
        expected = dict.fromkeys(permanent, ("permanent-failure", 1)) | dict.fromkeys(
            temporary, ("temporary-failure", 3)
        )
        assert {key: (row["status"], row["attempts"]) for key, row in rows.items()} == expected
        for notification_id, (status, _) in expected.items():
            read = await service.api.get(f"/v2/notifications/{notification_id}", headers=service.key.headers())
            assert read.json()["status"] == status
        assert service.server.handler.received == []
