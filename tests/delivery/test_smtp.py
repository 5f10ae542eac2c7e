"""E-mail through a real SMTP server on loopback (aiosmtpd): what arrives, and how refusals end."""

import email
import email.policy
import socket
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from httpx import AsyncClient

from fastapi1.auth.tokens import create_token
from fastapi1.config import DeliverySettings
from fastapi1.db.engine import Database
from fastapi1.delivery.providers import configured_providers
from tests.delivery.conftest import create, fast_settings, wait_final
from tests.notifications.conftest import create_template


class Mailbox:
    """An aiosmtpd handler that keeps what it receives and refuses some recipients."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []
        self.peers: list[object] = []  # the client's (host, port) of each mail: one per connection

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
        self.peers.append(session.peer)
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """An aiosmtpd server on a fixed loopback port that can be stopped and started again."""

    def __init__(self, handler: Mailbox, port: int) -> None:
        self.handler = handler
        self.port = port
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[Server]:
    server = Server(Mailbox(), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mailbox(smtp_server: Server) -> tuple[Mailbox, int]:
    return smtp_server.handler, smtp_server.port


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


class TestConnectionReuse:
    async def test_several_mails_travel_over_one_connection(
        self, api: AsyncClient, database: Database, run_relay: Any, mailbox: tuple[Mailbox, int]
    ) -> None:
        handler, port = mailbox
        async with run_relay(configured_providers(smtp_settings(port, delivery_concurrency=1))):
            ids = await create(api, [f"user{index}@example.com" for index in range(10)])
            rows = await wait_final(database, ids)
        assert {row["status"] for row in rows.values()} == {"delivered"}
        assert len(handler.received) == 10
        assert len(set(handler.peers)) == 1  # one connection per mail would be 10 peers

    async def test_concurrent_mails_open_at_most_delivery_concurrency_connections(
        self, api: AsyncClient, database: Database, run_relay: Any, mailbox: tuple[Mailbox, int]
    ) -> None:
        handler, port = mailbox
        async with run_relay(configured_providers(smtp_settings(port, delivery_concurrency=3))):
            ids = await create(api, [f"user{index}@example.com" for index in range(60)])
            await wait_final(database, ids)
        assert len(handler.received) == 60
        assert 1 <= len(set(handler.peers)) <= 3

    async def test_a_connection_the_server_dropped_is_replaced_without_failing_the_mail(
        self, api: AsyncClient, database: Database, run_relay: Any, smtp_server: Server
    ) -> None:
        async with run_relay(configured_providers(smtp_settings(smtp_server.port, delivery_concurrency=1))):
            first = await create(api, ["ada@example.com"])
            await wait_final(database, first)
            smtp_server.stop()  # the pooled connection is cut
            smtp_server.start()
            second = await create(api, ["bo@example.com"])
            row = (await wait_final(database, second))[second[0]]
        assert (row["status"], row["attempts"]) == ("delivered", 1)
        assert len(smtp_server.handler.received) == 2
        assert len(set(smtp_server.handler.peers)) == 2


async def service_key(api: AsyncClient, key_type: str) -> dict[str, str]:
    """The headers of a new key of a new service (admin routes are open in development)."""
    service = (await api.post("/services/v1/", json={"name": f"service-{uuid.uuid4()}"})).json()["id"]
    created = await api.post(f"/services/v1/{service}/api-keys", json={"name": key_type, "key_type": key_type})
    return {"Authorization": f"Bearer {create_token(created.json()['key'][-36:], service)}"}


class TestTestKeys:
    async def test_a_test_keys_mail_never_reaches_the_server_yet_ends_as_the_simulator_says(
        self, api: AsyncClient, database: Database, run_relay: Any, mailbox: tuple[Mailbox, int]
    ) -> None:
        handler, port = mailbox
        test_key, normal_key = await service_key(api, "test"), await service_key(api, "normal")
        async with run_relay(configured_providers(smtp_settings(port))):
            simulated = [
                (await api.post("/notifications/v1/", json={"to": to}, headers=test_key)).json()["id"]
                for to in ("ada@example.com", "perm-fail@simulator.notify", "temp-fail@simulator.notify")
            ]
            sent = (await api.post("/notifications/v1/", json={"to": "bo@example.com"}, headers=normal_key)).json()
            rows = await wait_final(database, [*simulated, sent["id"]])
        assert [rows[notification_id]["status"] for notification_id in simulated] == [
            "delivered",
            "permanent-failure",
            "temporary-failure",
        ]
        assert rows[sent["id"]]["status"] == "delivered"
        assert [recipients for recipients, _ in handler.received] == [["bo@example.com"]]
