"""E-mail through a real SMTP server on loopback (aiosmtpd): what arrives, and how refusals end."""

import email
import email.policy
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from httpx import AsyncClient

from fastapi1.config import DeliverySettings
from fastapi1.db.engine import Database
from fastapi1.delivery.providers import configured_providers
from tests.delivery.conftest import create, fast_settings, wait_final
from tests.notifications.conftest import create_template


class Mailbox:
    """An aiosmtpd handler that keeps what it receives and refuses some recipients."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 No such mailbox"
        if address.startswith("busy@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    handler = Mailbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def smtp_settings(port: int, **overrides: Any) -> DeliverySettings:
    return fast_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_from="notify@fastapi1.test", **overrides)


class TestSmtp:
    async def test_a_templated_email_arrives_with_recipient_subject_body_and_message_id(
        self, api: AsyncClient, database: Database, run_relay: Any, mailbox: tuple[Mailbox, int]
    ) -> None:
        handler, port = mailbox
        template_id = await create_template(api, "Hello ((name)),\nyour code is ((code)).", subject="Code for ((name))")
        providers = configured_providers(smtp_settings(port))
        async with run_relay(providers):
            (notification_id,) = await create(
                api, ["ada@example.com"], template_id=template_id, personalization={"name": "Ada", "code": "42"}
            )
            row = (await wait_final(database, [notification_id]))[notification_id]
        assert row["status"] == "delivered"
        ((recipients, message),) = handler.received
        assert recipients == ["ada@example.com"]
        assert message["To"] == "ada@example.com"
        assert message["From"] == "notify@fastapi1.test"
        assert message["Subject"] == "Code for Ada"
        assert message["Message-ID"] == f"<{notification_id}@fastapi1.test>"
        body = message.get_body()
        assert body is not None
        assert body.get_content().replace("\r\n", "\n") == "Hello Ada,\nyour code is 42.\n"

    async def test_without_a_template_the_body_lists_the_personalization(
        self, api: AsyncClient, database: Database, run_relay: Any, mailbox: tuple[Mailbox, int]
    ) -> None:
        handler, port = mailbox
        async with run_relay(configured_providers(smtp_settings(port))):
            ids = await create(api, ["bo@example.com"], personalization={"band": "Korn", "city": "Leeds"})
            await wait_final(database, ids)
        ((_, message),) = handler.received
        assert message["Subject"] is None
        body = message.get_body()
        assert body is not None
        assert body.get_content().replace("\r\n", "\n") == "band: Korn\ncity: Leeds\n"

    async def test_a_5xx_refusal_is_permanent_and_a_4xx_one_is_retried_until_temporary_failure(
        self, api: AsyncClient, database: Database, run_relay: Any, mailbox: tuple[Mailbox, int]
    ) -> None:
        _, port = mailbox
        async with run_relay(configured_providers(smtp_settings(port))):
            gone, busy = await create(api, ["gone@example.com", "busy@example.com"])
            rows = await wait_final(database, [gone, busy])
        assert (rows[gone]["status"], rows[gone]["attempts"]) == ("permanent-failure", 1)
        assert (rows[busy]["status"], rows[busy]["attempts"]) == ("temporary-failure", 3)

    async def test_an_unreachable_server_is_transient(
        self, api: AsyncClient, database: Database, run_relay: Any
    ) -> None:
        async with run_relay(configured_providers(smtp_settings(free_port(), smtp_timeout_s=1))):
            ids = await create(api, ["ada@example.com"])
            row = (await wait_final(database, ids))[ids[0]]
        assert (row["status"], row["attempts"]) == ("temporary-failure", 3)

    async def test_simulated_recipients_never_reach_the_smtp_server(
        self, api: AsyncClient, database: Database, run_relay: Any, mailbox: tuple[Mailbox, int]
    ) -> None:
        handler, port = mailbox
        async with run_relay(configured_providers(smtp_settings(port))):
            ids = await create(api, ["perm-fail@simulator.notify"])
            row = (await wait_final(database, ids))[ids[0]]
        assert row["status"] == "permanent-failure"
        assert handler.received == []
