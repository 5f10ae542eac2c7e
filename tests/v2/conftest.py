"""A real fastapi1 for Notify's Python client: the server and its delivery worker, and the admin API's setup.

The server is started as ``scripts/run_app.sh`` starts it (``python -m fastapi1.serve``, one uvicorn
worker and one delivery worker) on a free port, against a throwaway PostgreSQL database, with
authentication required. Services, keys, templates, versions and senders are made through the
admin API with httpx; everything the tests check goes through
``notifications_python_client.notifications.NotificationsAPIClient``.
"""

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol, cast

import httpx
import pytest
from notifications_python_client.notifications import NotificationsAPIClient

from tests.auth.conftest import ADMIN_SECRET, SECRET_KEYS, Key, admin_headers
from tests.conftest import throwaway_database
from tests.test_end_to_end import RunningServer, free_port

# Settings the test run may carry that would send mail for real or bring in other services.
FOREIGN_SETTINGS = frozenset(
    {"DATABASE_URL", "DATABASE_READ_URL", "BROKER_URL", "REDIS_URL", "SMTP_HOST", "BACKEND_URL", "ENVIRONMENT"}
)


class NotifyClient(Protocol):
    """The typed face of ``NotificationsAPIClient`` (the library's own methods carry no annotations).

    Attributes:
        service_id: The service the key belongs to.
    """

    service_id: str

    def send_sms_notification(
        self,
        phone_number: str,
        template_id: str,
        personalisation: dict[str, Any] | None = None,
        reference: str | None = None,
        sms_sender_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v2/notifications/sms``.

        Args:
            phone_number: The recipient.
            template_id: The text message template.
            personalisation: The placeholders' values.
            reference: The sender's reference.
            sms_sender_id: Which sender it comes from.
        """

    def send_email_notification(
        self,
        email_address: str,
        template_id: str,
        personalisation: dict[str, Any] | None = None,
        reference: str | None = None,
        email_reply_to_id: str | None = None,
        one_click_unsubscribe_url: str | None = None,
        sanitise_content_for: list[str] | None = None,
    ) -> dict[str, Any]:
        """``POST /v2/notifications/email``.

        Args:
            email_address: The recipient.
            template_id: The e-mail template.
            personalisation: The placeholders' values.
            reference: The sender's reference.
            email_reply_to_id: Which reply-to address it carries.
            one_click_unsubscribe_url: The RFC 8058 unsubscribe link.
            sanitise_content_for: Placeholders whose values are sanitised.
        """

    def send_letter_notification(
        self, template_id: str, personalisation: dict[str, Any], reference: str | None = None
    ) -> dict[str, Any]:
        """``POST /v2/notifications/letter`` (templated).

        Args:
            template_id: The letter template.
            personalisation: The address and placeholders.
            reference: The sender's reference.
        """

    def send_precompiled_letter_notification(
        self, reference: str, pdf_file: BytesIO, postage: str | None = None
    ) -> dict[str, Any]:
        """``POST /v2/notifications/letter`` (precompiled).

        Args:
            reference: The sender's reference.
            pdf_file: The letter.
            postage: First or second class.
        """

    def get_notification_by_id(self, id: str) -> dict[str, Any]:
        """``GET /v2/notifications/{id}``.

        Args:
            id: The notification.
        """

    def get_pdf_for_letter(self, id: str) -> BytesIO:
        """``GET /v2/notifications/{id}/pdf``.

        Args:
            id: The notification.
        """

    def get_all_notifications(
        self,
        status: str | None = None,
        template_type: str | None = None,
        reference: str | None = None,
        older_than: str | None = None,
        include_jobs: bool | None = None,
    ) -> dict[str, Any]:
        """``GET /v2/notifications``.

        Args:
            status: Only this status.
            template_type: Only this type.
            reference: Only this reference.
            older_than: Only those older than this notification.
            include_jobs: Also those sent from CSV jobs.
        """

    def get_all_notifications_iterator(
        self,
        status: str | None = None,
        template_type: str | None = None,
        reference: str | None = None,
        older_than: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page of ``GET /v2/notifications``, following ``links.next``.

        Args:
            status: Only this status.
            template_type: Only this type.
            reference: Only this reference.
            older_than: Only those older than this notification.
        """

    def get_received_texts(self, older_than: str | None = None) -> dict[str, Any]:
        """``GET /v2/received-text-messages``.

        Args:
            older_than: Only those older than this message.
        """

    def get_received_texts_iterator(self, older_than: str | None = None) -> Iterator[dict[str, Any]]:
        """Every page of ``GET /v2/received-text-messages``.

        Args:
            older_than: Only those older than this message.
        """

    def post_template_preview(self, template_id: str, personalisation: dict[str, Any]) -> dict[str, Any]:
        """``POST /v2/template/{id}/preview``.

        Args:
            template_id: The template.
            personalisation: The placeholders' values.
        """

    def get_template(self, template_id: str) -> dict[str, Any]:
        """``GET /v2/template/{id}``.

        Args:
            template_id: The template.
        """

    def get_template_version(self, template_id: str, version: int) -> dict[str, Any]:
        """``GET /v2/template/{id}/version/{version}``.

        Args:
            template_id: The template.
            version: The version.
        """

    def get_all_template_versions(self, template_id: str) -> dict[str, Any]:
        """``GET /service/{service_id}/template/{id}/versions``.

        Args:
            template_id: The template.
        """

    def get_all_templates(self, template_type: str | None = None) -> dict[str, Any]:
        """``GET /v2/templates[?type=]``.

        Args:
            template_type: Only this type.
        """


def notify_client(combined_key: str, base_url: str) -> NotifyClient:
    """Notify's own client, pointed at fastapi1.

    Args:
        combined_key: The key as fastapi1 returned it (``{name}-{service_id}-{secret}``).
        base_url: Where the server listens.

    Returns:
        The client.
    """
    client = NotificationsAPIClient(combined_key, base_url=base_url)  # type: ignore[no-untyped-call]
    return cast(NotifyClient, client)


@dataclass(frozen=True)
class Admin:
    """The admin API of a running server, through httpx with a fresh admin token on every call.

    Attributes:
        http: A client of the server.
    """

    http: httpx.Client

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST as the admin and expect ``201``.

        Args:
            path: The path.
            body: The JSON body.

        Returns:
            The answer's JSON.
        """
        response = self.http.post(path, json=body, headers=admin_headers())
        assert response.status_code == 201, f"POST {path}: {response.status_code} {response.text}"
        return cast(dict[str, Any], response.json())

    def new_service(self) -> uuid.UUID:
        """Create a service.

        Returns:
            Its id.
        """
        return uuid.UUID(self.post("/services/v1/", {"name": f"v2-client-{uuid.uuid4()}"})["id"])

    def new_key(self, service_id: uuid.UUID, key_type: str = "normal") -> Key:
        """Create an API key.

        Args:
            service_id: The service.
            key_type: ``normal``, ``team`` or ``test``.

        Returns:
            The key, with its combined form.
        """
        body = self.post(f"/services/v1/{service_id}/api-keys", {"name": f"key-{key_type}", "key_type": key_type})
        return Key(uuid.UUID(body["id"]), service_id, str(body["key"]))

    def new_template(self, service_id: uuid.UUID, **fields: Any) -> str:
        """Create a template (``name`` defaults to a unique one).

        Args:
            service_id: The service.
            fields: ``template_type``, ``subject``, ``content`` and so on.

        Returns:
            Its id.
        """
        body = {"name": f"t-{uuid.uuid4().hex[:8]}", **fields}
        return str(self.post(f"/services/v1/{service_id}/templates", body)["id"])

    def change_template(self, service_id: uuid.UUID, template_id: str, **fields: Any) -> dict[str, Any]:
        """Change a template, which adds a version.

        Args:
            service_id: The service.
            template_id: The template.
            fields: What changes: ``name``, ``subject``, ``content``.

        Returns:
            The template as the admin API answers.
        """
        path = f"/services/v1/{service_id}/templates/{template_id}"
        response = self.http.patch(path, json=fields, headers=admin_headers())
        assert response.status_code == 200, f"PATCH {path}: {response.status_code} {response.text}"
        return cast(dict[str, Any], response.json())

    def add_sms_sender(self, service_id: uuid.UUID, sender: str) -> str:
        """Add a text message sender.

        Args:
            service_id: The service.
            sender: What recipients see it come from.

        Returns:
            The sender's id.
        """
        return str(self.post(f"/services/v1/{service_id}/sms-senders", {"sms_sender": sender})["id"])

    def add_reply_to(self, service_id: uuid.UUID, address: str) -> str:
        """Add an e-mail reply-to address.

        Args:
            service_id: The service.
            address: The address.

        Returns:
            Its id.
        """
        return str(self.post(f"/services/v1/{service_id}/email-reply-to", {"email_address": address})["id"])

    def add_to_guest_list(self, service_id: uuid.UUID, recipient: str) -> None:
        """Let a team key send to ``recipient``.

        Args:
            service_id: The service.
            recipient: An address or a number.
        """
        self.post(f"/services/v1/{service_id}/guest-list", {"recipient": recipient})

    def send_many(self, key: Key, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create notifications through ``/notifications/v1/multiple`` with a service's key.

        Args:
            key: The service's key (its token scopes the request to the service).
            items: The notifications.

        Returns:
            The notifications as created.
        """
        response = self.http.post("/notifications/v1/multiple", json=items, headers=key.headers())
        assert response.status_code == 201, f"POST /notifications/v1/multiple: {response.status_code} {response.text}"
        return cast(list[dict[str, Any]], response.json())


@dataclass(frozen=True)
class Deployment:
    """A running server: where it listens and its admin API.

    Attributes:
        base_url: Where it listens.
        admin: Its admin API.
    """

    base_url: str
    admin: Admin

    def client(self, key: Key) -> NotifyClient:
        """Notify's client with ``key``.

        Args:
            key: The key.

        Returns:
            The client.
        """
        return notify_client(key.combined, self.base_url)


def server_environment(database_url: str) -> dict[str, str]:
    """The server's environment: the throwaway database, a free port, authentication on, the simulator.

    Args:
        database_url: The database.

    Returns:
        The environment.
    """
    env = {name: value for name, value in os.environ.items() if name.upper() not in FOREIGN_SETTINGS}
    env.update(
        DATABASE_URL=database_url,
        HOST="127.0.0.1",
        PORT=str(free_port()),
        WORKERS="1",
        WORKER_PROCESSES="1",
        AUTH_REQUIRED="true",
        ADMIN_CLIENT_SECRET=ADMIN_SECRET,
        SECRET_KEY=SECRET_KEYS[0],
        AUTH_KEY_CACHE_S="0.5",
        DELIVERY_POLL_INTERVAL_S="0.5",
        DELIVERY_RETRY_BASE_S="0.1",
    )
    return env


@pytest.fixture(scope="module")
def deployment(admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """fastapi1 serving on a free port with its delivery worker, stopped after the module.

    Args:
        admin_url: The PostgreSQL server the tests may create databases on.
        tmp_path_factory: Where the server's log goes.

    Yields:
        The deployment.
    """
    log_path = Path(tmp_path_factory.mktemp("v2-server")) / "server.log"
    with throwaway_database(admin_url) as database_url:
        server = RunningServer(server_environment(database_url), log_path)
        try:
            server.wait_until_serving()
            with httpx.Client(base_url=server.base_url, timeout=30) as http:
                yield Deployment(server.base_url, Admin(http))
        finally:
            server.stop()


@dataclass(frozen=True)
class Account:
    """A service as a client of Notify sees it: its key, its client, its templates and senders.

    Attributes:
        service_id: The service.
        key: Its normal key.
        client: Notify's client with that key.
        email_template: Its e-mail template (``EMAIL_SUBJECT``, ``EMAIL_CONTENT``).
        sms_template: Its text message template (``SMS_CONTENT``).
        sms_sender: The second sms sender (the first, ``FASTAPI1``, is the default).
        sms_sender_id: Its id.
        reply_to_id: The second reply-to address's id.
    """

    service_id: uuid.UUID
    key: Key
    client: NotifyClient
    email_template: str
    sms_template: str
    sms_sender: str
    sms_sender_id: str
    reply_to_id: str


EMAIL_SUBJECT = "Hi ((name))"
EMAIL_CONTENT = "Dear ((name)), ((band)) plays."
SMS_CONTENT = "((name)): doors at 7"


def new_account(deployment: Deployment) -> Account:
    """A new service with a normal key, an e-mail and a text message template, and a sender of each kind.

    Args:
        deployment: The running server.

    Returns:
        The account.
    """
    admin = deployment.admin
    service_id = admin.new_service()
    key = admin.new_key(service_id)
    email = admin.new_template(service_id, template_type="email", subject=EMAIL_SUBJECT, content=EMAIL_CONTENT)
    sms = admin.new_template(service_id, template_type="sms", content=SMS_CONTENT)
    admin.add_sms_sender(service_id, "FASTAPI1")
    sender_id = admin.add_sms_sender(service_id, "GIGS")
    admin.add_reply_to(service_id, "default-replies@example.com")
    reply_to_id = admin.add_reply_to(service_id, "replies@example.com")
    return Account(service_id, key, deployment.client(key), email, sms, "GIGS", sender_id, reply_to_id)


@pytest.fixture
def account(deployment: Deployment) -> Account:
    """A fresh account for one test, so that lists hold only what the test made.

    Args:
        deployment: The running server.

    Returns:
        The account.
    """
    return new_account(deployment)
