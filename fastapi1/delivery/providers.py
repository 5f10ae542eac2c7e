"""Providers: where a notification leaves fastapi1. SMTP for e-mail when configured, else the simulator.

A provider's ``send`` returns when the provider accepted the message and raises
:class:`PermanentFailure` (never retried) or :class:`TransientFailure` (retried with backoff);
any other exception is a fault on fastapi1's side and ends as ``technical-failure``.
"""

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol

import aiosmtplib

from fastapi1.config import DeliverySettings
from fastapi1.recipients import SIMULATED_DELIVERED, SIMULATED_PERMANENT, SIMULATED_TRANSIENT


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered notification, ready for a provider; ``id`` is the provider's idempotency key."""

    id: uuid.UUID
    to: str
    subject: str | None
    body: str
    # Sent with a test key: it never reaches a real provider, whatever the recipient.
    simulated: bool = False
    # Where replies to an e-mail go (``Reply-To``), when the service has a reply-to address.
    reply_to: str | None = None
    # The recipient's one-click unsubscribe link (RFC 8058), for e-mail.
    unsubscribe_url: str | None = None
    # The name or number a text message comes from, when the service has one.
    sender: str | None = None


class PermanentFailure(Exception):
    """The provider refused the message for good."""


class TransientFailure(Exception):
    """The provider could not take the message now; it may later."""


class Provider(Protocol):
    """Anything that can send a message."""

    async def send(self, message: Message) -> None:
        """Hand the message over.

        Args:
            message: The message.
        """


SIMULATED = SIMULATED_DELIVERED | SIMULATED_PERMANENT | SIMULATED_TRANSIENT


class Simulator:
    """Notify's simulator: fails its test recipients as Notify does, delivers to everyone else."""

    def __init__(self, delay_s: float) -> None:
        """Keep the delay.

        Args:
            delay_s: Seconds before a message counts as delivered.
        """
        self.delay_s = delay_s

    async def send(self, message: Message) -> None:
        """Deliver after the delay, or fail for the test recipients.

        Args:
            message: The message.

        Raises:
            PermanentFailure: For the permanent-failure recipients.
            TransientFailure: For the temporary-failure recipients, every time.
        """
        if message.to in SIMULATED_PERMANENT:
            raise PermanentFailure("simulated permanent failure")
        if message.to in SIMULATED_TRANSIENT:
            raise TransientFailure("simulated temporary failure")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)


def smtp_failure(error: aiosmtplib.SMTPException) -> Exception:
    """Classify an SMTP error: a 5xx reply is permanent, a 4xx reply or a lost connection transient.

    A refused login (535) is returned as it is: wrong credentials are fastapi1's fault, not the
    recipient's, so the notification ends as ``technical-failure``.

    Args:
        error: What aiosmtplib raised.
    """
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return error
    code = error.code if isinstance(error, aiosmtplib.SMTPResponseException) else None
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        code = error.recipients[0].code
    if code is not None and 500 <= code < 600:
        return PermanentFailure(f"SMTP {code}: {error}")
    return TransientFailure(f"SMTP: {error}")


class Smtp:
    """E-mail through an SMTP server (aiosmtplib), over a small pool of open connections.

    A connection carries one mail at a time and goes back to the pool after it; at most
    ``DELIVERY_CONCURRENCY`` are open. A connection that failed in any way other than a reply
    (lost, timed out, cancelled) is closed instead. A pooled connection the server dropped
    while it was idle is replaced by a fresh one once, before the mail counts as failed.
    """

    def __init__(self, settings: DeliverySettings) -> None:
        """Keep the server's settings; no connection is opened yet.

        Args:
            settings: The SMTP_* settings and ``DELIVERY_CONCURRENCY`` (the pool's bound).
        """
        self.settings = settings
        sender_domain = settings.smtp_from.rpartition("@")[2]
        self.message_id_domain = sender_domain or "fastapi1"
        self.slots = asyncio.Semaphore(settings.delivery_concurrency)
        self.idle: list[aiosmtplib.SMTP] = []

    def build(self, message: Message) -> EmailMessage:
        """The e-mail: rendered subject and body, the notification id as its Message-ID.

        Args:
            message: The message.

        Raises:
            PermanentFailure: When the recipient cannot be an e-mail header (a line break in it).
        """
        email = EmailMessage()
        email["From"] = self.settings.smtp_from
        try:
            email["To"] = message.to
        except ValueError as error:
            raise PermanentFailure(f"invalid recipient: {error}") from error
        if message.subject:
            # A header is one line: line breaks a personalization put into the subject fold to spaces.
            email["Subject"] = " ".join(message.subject.split())
        if message.reply_to:
            email["Reply-To"] = message.reply_to
        if message.unsubscribe_url:
            # RFC 8058: the link in angle brackets, and the header that makes a POST to it the
            # whole unsubscription, so a mail client can offer it without opening a page.
            email["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email["Message-ID"] = f"<{message.id}@{self.message_id_domain}>"
        email["Date"] = format_datetime(datetime.now(UTC))
        email.set_content(message.body)
        return email

    async def connect(self) -> aiosmtplib.SMTP:
        """A new connection: connected, STARTTLS when required, logged in when configured.

        Returns:
            The connection.
        """
        settings = self.settings
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_s,
        )
        await client.connect()
        return client

    def pooled(self) -> aiosmtplib.SMTP | None:
        """An idle connection that is still open (the last returned first), None if there is none."""
        while self.idle:
            client = self.idle.pop()
            if client.is_connected:
                return client
            client.close()
        return None

    async def send(self, message: Message) -> None:
        """Send the e-mail over a pooled connection, or a new one.

        Args:
            message: The message.

        Raises:
            PermanentFailure: On a 5xx reply.
            TransientFailure: On a 4xx reply or a lost connection.
        """
        email = self.build(message)
        async with self.slots:
            client = self.pooled()
            try:
                if client is not None:
                    try:
                        await self.send_over(client, email)
                        return
                    except aiosmtplib.SMTPServerDisconnected:
                        pass  # dropped while idle: once more on a fresh connection
                await self.send_over(await self.connect(), email)
            except aiosmtplib.SMTPException as error:
                raise smtp_failure(error) from error

    async def send_over(self, client: aiosmtplib.SMTP, email: EmailMessage) -> None:
        """Send one e-mail over ``client``; it goes back to the pool unless the connection failed.

        Args:
            client: An open connection.
            email: The e-mail.

        Raises:
            aiosmtplib.SMTPException: What aiosmtplib raised.
        """
        try:
            await client.send_message(email)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            # A refusal (aiosmtplib has reset the envelope): the connection can carry the next mail.
            self.give_back(client)
            raise
        except BaseException:
            client.close()
            raise
        self.give_back(client)

    def give_back(self, client: aiosmtplib.SMTP) -> None:
        """Return a connection to the pool, or close it when it is closing or the pool is full.

        Args:
            client: The connection.
        """
        if client.is_connected and len(self.idle) < self.settings.delivery_concurrency:
            self.idle.append(client)
        else:
            client.close()


@dataclass(frozen=True, slots=True)
class Providers:
    """Which provider takes a message: e-mail (a recipient with ``@``) or SMS."""

    email: Provider
    sms: Provider
    simulator: Provider

    def for_message(self, message: Message) -> Provider:
        """The provider for ``message``; a test key's messages and Notify's test recipients go to the simulator.

        Args:
            message: The message.
        """
        if message.simulated or message.to in SIMULATED:
            return self.simulator
        return self.email if "@" in message.to else self.sms


def configured_providers(settings: DeliverySettings) -> Providers:
    """SMTP for e-mail when ``SMTP_HOST`` is set; the simulator for SMS and otherwise.

    Args:
        settings: The delivery settings.
    """
    simulator = Simulator(settings.simulator_delay_ms / 1000)
    email: Provider = Smtp(settings) if settings.smtp_host else simulator
    return Providers(email=email, sms=simulator, simulator=simulator)
