"""fastapi1 driven by GOV.UK Notify's own Python client, every e-mail and text message method of it.

A real server (``python -m fastapi1.serve`` with its delivery worker, see ``conftest.py``) answers
``notifications_python_client.notifications.NotificationsAPIClient`` with only the base URL and the
key changed. Every answer is checked against the shape of Notify's (the client's
``integration_test/schemas/v2`` and notifications-api's serialisers, summarised in
``/work/notify_v2_reference.md``); every refusal comes back as the client's ``HTTPError`` with
Notify's status code and ``[{"error", "message"}]``.
"""

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import partial
from io import BytesIO
from typing import Any, cast

import pytest
from notifications_python_client.errors import HTTPError

from tests.auth.conftest import Key
from tests.v2.conftest import EMAIL_CONTENT, EMAIL_SUBJECT, SMS_CONTENT, Account, Deployment, NotifyClient

NULLABLE_STR = (str, type(None))

# A shape: each required key with its type (or types), or the nested shape of an object.
Shape = dict[str, Any]

TEMPLATE_REF: Shape = {"id": str, "version": int, "uri": str}
POST_SMS: Shape = {
    "id": str,
    "reference": NULLABLE_STR,
    "content": {"body": str, "from_number": NULLABLE_STR},
    "uri": str,
    "template": TEMPLATE_REF,
}
POST_EMAIL: Shape = {
    "id": str,
    "reference": NULLABLE_STR,
    "content": {"body": str, "subject": str, "from_email": str},
    "uri": str,
    "template": TEMPLATE_REF,
}
NOTIFICATION: Shape = {
    "id": str,
    "reference": NULLABLE_STR,
    "email_address": NULLABLE_STR,
    "phone_number": NULLABLE_STR,
    **{f"line_{n}": type(None) for n in range(1, 7)},
    "postcode": type(None),
    "type": str,
    "status": str,
    "template": TEMPLATE_REF,
    "body": str,
    "subject": NULLABLE_STR,
    "created_at": str,
    "sent_at": NULLABLE_STR,
    "completed_at": NULLABLE_STR,
}
NOTIFICATION_LIST: Shape = {"notifications": list, "links": {"current": str}}
TEMPLATE: Shape = {
    "id": str,
    "name": str,
    "type": str,
    "created_at": str,
    "updated_at": NULLABLE_STR,
    "version": int,
    "body": str,
    "subject": NULLABLE_STR,
}
PREVIEW: Shape = {"id": str, "type": str, "version": int, "body": str, "subject": NULLABLE_STR}
TEMPLATE_LIST: Shape = {"templates": list}
TEMPLATE_HISTORY: Shape = {"id": str, "name": str, "template_type": str, "content": str, "version": int}
VERSION_LIST: Shape = {"data": list}
RECEIVED_TEXTS: Shape = {"received_text_messages": list, "links": {"current": str}}

UNFINISHED = frozenset({"created", "sending", "pending"})
DELIVERY_DEADLINE_S = 30.0
PAGE_SIZE = 250
PHONE = "+447700900123"


def shape_problems(value: object, shape: Shape, path: str = "") -> list[str]:
    """What keeps ``value`` from having ``shape``: missing keys and wrongly typed values.

    Args:
        value: An answer, or a part of one.
        shape: The keys it must have and their types; a nested dict is the shape of an object.
        path: Where ``value`` is in the answer, for the messages.

    Returns:
        One line per problem; empty when it has the shape.
    """
    if not isinstance(value, dict):
        return [f"{path or '.'}: expected an object, got {value!r}"]
    return [problem for key, expected in shape.items() for problem in key_problems(value, key, expected, path)]


def key_problems(value: dict[str, Any], key: str, expected: Any, path: str) -> list[str]:
    """What is wrong with one key of an object.

    Args:
        value: The object.
        key: The key.
        expected: Its type, its types, or the shape of the object it holds.
        path: Where the object is in the answer.

    Returns:
        One line per problem; empty when the key is present and well typed.
    """
    where = f"{path}.{key}"
    if key not in value:
        return [f"{where}: missing"]
    if isinstance(expected, dict):
        return shape_problems(value[key], expected, where)
    if isinstance(value[key], bool) or not isinstance(value[key], expected):
        return [f"{where}: expected {expected}, got {value[key]!r}"]
    return []


def assert_shape(value: object, shape: Shape) -> None:
    """Fail, naming every problem, unless ``value`` has ``shape``.

    Args:
        value: An answer.
        shape: Its expected shape.
    """
    problems = shape_problems(value, shape)
    assert not problems, f"{problems} in {value!r}"


def assert_timestamp(value: object) -> None:
    """Fail unless ``value`` is an ISO 8601 timestamp with a time zone (Notify's end in ``Z``).

    Args:
        value: A timestamp field.
    """
    assert isinstance(value, str), value
    assert datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None, value


def refusal(call: Callable[[], object]) -> tuple[int, list[dict[str, str]]]:
    """Make a call that must fail, and return how it failed.

    Args:
        call: The client call.

    Returns:
        The status code and the errors of the ``HTTPError``.
    """
    with pytest.raises(HTTPError) as raised:
        call()
    return raised.value.status_code, cast(list[dict[str, str]], raised.value.message)


def one_error(status: int, error: str, message: str) -> tuple[int, list[dict[str, str]]]:
    """Notify's refusal with one error, as :func:`refusal` returns it.

    Args:
        status: The status code.
        error: The error's name.
        message: Its message.

    Returns:
        The status code and the errors.
    """
    return status, [{"error": error, "message": message}]


def settled(client: NotifyClient, notification_id: str, deadline_s: float = DELIVERY_DEADLINE_S) -> dict[str, Any]:
    """Poll a notification until its status is final, or fail at the deadline.

    Args:
        client: The client.
        notification_id: The notification.
        deadline_s: Seconds to wait at most.

    Returns:
        The notification in its final status.
    """
    deadline = time.monotonic() + deadline_s
    while (notification := client.get_notification_by_id(notification_id))["status"] in UNFINISHED:
        assert time.monotonic() < deadline, f"still {notification['status']} after {deadline_s}s: {notification}"
        time.sleep(0.1)
    return notification


def send_sms(account: Account, phone_number: str = PHONE, **fields: Any) -> dict[str, Any]:
    """Send the account's text message template with the ``name`` it needs.

    Args:
        account: The account.
        phone_number: The recipient.
        fields: More arguments of ``send_sms_notification``.

    Returns:
        Notify's answer.
    """
    return account.client.send_sms_notification(
        phone_number, account.sms_template, personalisation={"name": "Ada"}, **fields
    )


def send_email(account: Account, email_address: str = "ada@example.com", **fields: Any) -> dict[str, Any]:
    """Send the account's e-mail template with every placeholder it needs.

    Args:
        account: The account.
        email_address: The recipient.
        fields: More arguments of ``send_email_notification``.

    Returns:
        Notify's answer.
    """
    personalisation = {"name": "Ada", "band": "Korn"}
    return account.client.send_email_notification(email_address, account.email_template, personalisation, **fields)


class TestSendSms:
    """send_sms_notification."""

    def test_a_text_message_with_personalisation_reference_and_sender_is_answered_as_notify_answers(
        self, account: Account, deployment: Deployment
    ) -> None:
        """Notify's POST /v2/notifications/sms body: rendered content, the chosen sender, the reference, uris."""
        answer = send_sms(account, reference="order-17", sms_sender_id=account.sms_sender_id)
        assert_shape(answer, POST_SMS)
        assert answer["reference"] == "order-17"
        assert answer["content"] == {"body": "Ada: doors at 7", "from_number": account.sms_sender}
        assert answer["uri"] == f"{deployment.base_url}/v2/notifications/{answer['id']}"
        assert (answer["template"]["id"], answer["template"]["version"]) == (account.sms_template, 1)
        assert answer["template"]["uri"].startswith(deployment.base_url)
        assert account.sms_template in answer["template"]["uri"]

    def test_without_a_sender_id_the_default_sender_is_used(self, account: Account) -> None:
        """The first sender added is the service's default."""
        answer = send_sms(account)
        assert answer["content"]["from_number"] == "FASTAPI1"
        assert answer["reference"] is None

    def test_the_notification_reads_back_with_the_number_as_it_was_sent(self, account: Account) -> None:
        """GET /v2/notifications/{id}: Notify serialises ``to`` as given, not the normalised number."""
        sent = send_sms(account, phone_number="07700 900123", reference="as-sent")
        notification = account.client.get_notification_by_id(sent["id"])
        assert_shape(notification, NOTIFICATION)
        assert notification["id"] == sent["id"]
        assert notification["type"] == "sms"
        assert (notification["phone_number"], notification["email_address"]) == ("07700 900123", None)
        assert (notification["body"], notification["subject"]) == ("Ada: doors at 7", None)
        assert notification["reference"] == "as-sent"
        assert (notification["template"]["id"], notification["template"]["version"]) == (account.sms_template, 1)
        assert_timestamp(notification["created_at"])

    def test_an_international_number_is_accepted(self, account: Account) -> None:
        """Notify validates UK and international numbers."""
        assert_shape(send_sms(account, phone_number="+33 6 12 34 56 78"), POST_SMS)


class TestSendEmail:
    """send_email_notification."""

    def test_an_email_with_every_option_is_answered_as_notify_answers(
        self, account: Account, deployment: Deployment
    ) -> None:
        """POST /v2/notifications/email with personalisation, reference, reply-to and unsubscribe link."""
        unsubscribe = "https://example.com/unsubscribe?opaque=123"
        answer = send_email(
            account, reference="ref-1", email_reply_to_id=account.reply_to_id, one_click_unsubscribe_url=unsubscribe
        )
        assert_shape(answer, POST_EMAIL)
        assert answer["reference"] == "ref-1"
        assert answer["content"]["subject"] == "Hi Ada"
        assert answer["content"]["body"] == "Dear Ada, Korn plays."
        assert "@" in answer["content"]["from_email"]
        assert answer["content"].get("one_click_unsubscribe_url") == unsubscribe
        assert answer["uri"] == f"{deployment.base_url}/v2/notifications/{answer['id']}"
        assert (answer["template"]["id"], answer["template"]["version"]) == (account.email_template, 1)

    def test_the_email_reads_back_with_its_address_subject_and_body(self, account: Account) -> None:
        """GET /v2/notifications/{id} of an e-mail."""
        sent = send_email(account, email_address="Ada@Example.com")
        notification = account.client.get_notification_by_id(sent["id"])
        assert_shape(notification, NOTIFICATION)
        assert notification["type"] == "email"
        assert (notification["email_address"], notification["phone_number"]) == ("Ada@Example.com", None)
        assert (notification["subject"], notification["body"]) == ("Hi Ada", "Dear Ada, Korn plays.")

    def test_sanitised_personalisation_cannot_make_a_link(self, account: Account) -> None:
        """``sanitise_content_for`` neutralises Markdown in the named values, and only in them."""
        personalisation = {"name": "[click](https://evil.example)", "band": "**Korn**"}
        answer = account.client.send_email_notification(
            "ada@example.com", account.email_template, personalisation, sanitise_content_for=["name"]
        )
        assert_shape(answer, POST_EMAIL)
        assert "[click](" not in answer["content"]["body"]
        assert "**Korn**" in answer["content"]["body"]

    def test_the_email_answer_says_what_was_sanitised(self, account: Account) -> None:
        """SPEC.md lists ``sanitised_content`` among the e-mail answer's fields (Notify's Ruby client reads it)."""
        personalisation = {"name": "[click](https://evil.example)", "band": "Korn"}
        answer = account.client.send_email_notification(
            "ada@example.com", account.email_template, personalisation, sanitise_content_for=["name"]
        )
        assert isinstance(answer.get("sanitised_content"), dict), answer


class TestRefusedSends:
    """Sends Notify refuses, and how: the client's HTTPError with Notify's status and errors."""

    def test_a_missing_placeholder(self, account: Account) -> None:
        """Notify: 400 BadRequestError ``Missing personalisation: band``."""
        call = partial(
            account.client.send_email_notification, "ada@example.com", account.email_template, {"name": "Ada"}
        )
        assert refusal(call) == one_error(400, "BadRequestError", "Missing personalisation: band")

    def test_an_unknown_template(self, account: Account) -> None:
        """Notify: 400 BadRequestError ``Template not found``."""
        call = partial(account.client.send_sms_notification, PHONE, str(uuid.uuid4()))
        assert refusal(call) == one_error(400, "BadRequestError", "Template not found")

    def test_a_template_of_the_other_type(self, account: Account) -> None:
        """Notify: ``email template is not suitable for sms notification``."""
        call = partial(account.client.send_sms_notification, PHONE, account.email_template, {"name": "A"})
        message = "email template is not suitable for sms notification"
        assert refusal(call) == one_error(400, "BadRequestError", message)

    def test_another_services_template_is_not_found(self, account: Account, deployment: Deployment) -> None:
        """A service sees only its own templates."""
        other = deployment.admin.new_template(deployment.admin.new_service(), template_type="sms", content="hi")
        call = partial(account.client.send_sms_notification, PHONE, other)
        assert refusal(call) == one_error(400, "BadRequestError", "Template not found")

    def test_an_unknown_sms_sender_id(self, account: Account) -> None:
        """Notify: ``sms_sender_id {id} does not exist in database for service id {service_id}``."""
        unknown = str(uuid.uuid4())
        message = f"sms_sender_id {unknown} does not exist in database for service id {account.service_id}"
        assert refusal(partial(send_sms, account, sms_sender_id=unknown)) == one_error(400, "BadRequestError", message)

    def test_an_unknown_email_reply_to_id(self, account: Account) -> None:
        """Notify: ``email_reply_to_id {id} does not exist in database for service id {service_id}``."""
        unknown = str(uuid.uuid4())
        message = f"email_reply_to_id {unknown} does not exist in database for service id {account.service_id}"
        call = partial(send_email, account, email_reply_to_id=unknown)
        assert refusal(call) == one_error(400, "BadRequestError", message)

    @pytest.mark.parametrize(
        ("number", "message"),
        [
            ("0770090012", "phone_number Not enough digits"),
            ("0770090012345678", "phone_number Too many digits"),
            ("07700 9001a3", "phone_number Must not contain letters or symbols"),
        ],
    )
    def test_a_bad_phone_number(self, account: Account, number: str, message: str) -> None:
        """Notify's legacy v2 phone messages, after the field name."""
        assert refusal(partial(send_sms, account, phone_number=number)) == one_error(400, "ValidationError", message)

    def test_a_bad_email_address(self, account: Account) -> None:
        """Notify: ``email_address Not a valid email address``."""
        expected = one_error(400, "ValidationError", "email_address Not a valid email address")
        assert refusal(partial(send_email, account, email_address="not-an-address")) == expected

    def test_a_template_id_that_is_not_a_uuid(self, account: Account) -> None:
        """Notify: ``template_id is not a valid UUID``."""
        call = partial(account.client.send_sms_notification, PHONE, "not-a-uuid")
        assert refusal(call) == one_error(400, "ValidationError", "template_id is not a valid UUID")

    def test_an_unsubscribe_link_that_is_not_https(self, account: Account) -> None:
        """Notify: ``one_click_unsubscribe_url is not a valid https url``."""
        call = partial(send_email, account, one_click_unsubscribe_url="http://example.com/u")
        expected = one_error(400, "ValidationError", "one_click_unsubscribe_url is not a valid https url")
        assert refusal(call) == expected

    def test_a_team_key_sends_only_to_its_guest_list(self, account: Account, deployment: Deployment) -> None:
        """Outside the guest list, Notify's 400 (its message has a typographic apostrophe)."""
        deployment.admin.add_to_guest_list(account.service_id, "+447700900456")
        team = deployment.client(deployment.admin.new_key(account.service_id, "team"))
        sent = team.send_sms_notification("+447700900456", account.sms_template, {"name": "Ada"})
        assert_shape(sent, POST_SMS)
        message = "Can\u2019t send to this recipient using a team-only API key"
        call = partial(team.send_sms_notification, PHONE, account.sms_template, {"name": "Ada"})
        assert refusal(call) == one_error(400, "BadRequestError", message)

    def test_a_wrong_key_is_refused(self, account: Account, deployment: Deployment) -> None:
        """A token signed with a secret the service does not have: 403 AuthError."""
        wrong = deployment.client(Key(uuid.uuid4(), account.service_id, wrong_key(account)))
        status, errors = refusal(wrong.get_all_notifications)
        assert status == 403
        assert errors == [{"error": "AuthError", "message": "Invalid token: API key not found"}]


def wrong_key(account: Account) -> str:
    """The account's combined key with another secret.

    Args:
        account: The account.

    Returns:
        A key of the right form that the service does not have.
    """
    return f"wrong-{account.service_id}-{uuid.uuid4()}"


class TestLetters:
    """send_letter_notification, send_precompiled_letter_notification and get_pdf_for_letter: no letters here."""

    def test_a_letter_is_refused(self, account: Account) -> None:
        """fastapi1 sends no letters: Notify's refusal for a service without the permission."""
        address = {"address_line_1": "The Occupier", "address_line_2": "1 High Street", "address_line_3": "SW1A 1AA"}
        call = partial(account.client.send_letter_notification, account.email_template, address)
        assert refusal(call) == one_error(400, "BadRequestError", "Service is not allowed to send letters")

    def test_a_precompiled_letter_is_refused(self, account: Account) -> None:
        """The same for a PDF."""
        pdf = BytesIO(b"%PDF-1.4\n%%EOF\n")
        call = partial(account.client.send_precompiled_letter_notification, "letter-1", pdf)
        assert refusal(call) == one_error(400, "BadRequestError", "Service is not allowed to send letters")

    def test_there_is_no_pdf_of_a_text_message(self, account: Account) -> None:
        """Notify: 400 ``Notification is not a letter``."""
        sent = send_sms(account)
        status, errors = refusal(partial(account.client.get_pdf_for_letter, sent["id"]))
        assert status == 400
        assert [error["message"] for error in errors] == ["Notification is not a letter"]


class TestReadOne:
    """get_notification_by_id of what is not there, or not the caller's."""

    def test_an_unknown_notification_is_not_found(self, account: Account) -> None:
        """Notify: 404 NoResultFound ``No result found``."""
        call = partial(account.client.get_notification_by_id, str(uuid.uuid4()))
        assert refusal(call) == one_error(404, "NoResultFound", "No result found")

    def test_another_services_notification_is_not_found(self, account: Account, deployment: Deployment) -> None:
        """A service sees only its own notifications."""
        theirs = send_sms(account)
        stranger = deployment.client(deployment.admin.new_key(deployment.admin.new_service()))
        call = partial(stranger.get_notification_by_id, theirs["id"])
        assert refusal(call) == one_error(404, "NoResultFound", "No result found")


def sent_three(account: Account, reference: str) -> list[str]:
    """Send two text messages that are delivered and one that fails for good, all with ``reference``.

    Args:
        account: The account.
        reference: Their reference.

    Returns:
        Their ids, oldest first, once each has its final status.
    """
    ids = [send_sms(account, reference=reference)["id"], send_email(account, reference=reference)["id"]]
    ids.append(send_sms(account, phone_number="07700900002", reference=reference)["id"])
    for notification_id in ids:
        settled(account.client, notification_id)
    return ids


class TestList:
    """get_all_notifications and get_all_notifications_iterator."""

    def test_the_list_is_newest_first_with_links(self, account: Account, deployment: Deployment) -> None:
        """``{"notifications", "links": {"current", "next"}}``; ``next`` is older_than the last one."""
        ids = sent_three(account, "batch")
        page = account.client.get_all_notifications(reference="batch")
        assert_shape(page, NOTIFICATION_LIST)
        for notification in page["notifications"]:
            assert_shape(notification, NOTIFICATION)
        assert [notification["id"] for notification in page["notifications"]] == ids[::-1]
        assert page["links"]["current"].startswith(deployment.base_url)
        assert f"older_than={ids[0]}" in page["links"]["next"]

    def test_older_than_returns_what_follows_and_an_empty_page_has_no_next(self, account: Account) -> None:
        """``older_than`` is exclusive; past the last one the page is empty and Notify gives no ``next``."""
        ids = sent_three(account, "older")
        older = account.client.get_all_notifications(reference="older", older_than=ids[2])
        assert [notification["id"] for notification in older["notifications"]] == [ids[1], ids[0]]
        empty = account.client.get_all_notifications(reference="older", older_than=ids[0])
        assert empty["notifications"] == []
        assert "next" not in empty["links"]

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"template_type": "sms"}, [2, 0]),
            ({"template_type": "email"}, [1]),
            ({"status": "delivered"}, [1, 0]),
            ({"status": "permanent-failure"}, [2]),
            ({"status": "failed"}, [2]),
            ({"status": "delivered", "template_type": "sms"}, [0]),
        ],
    )
    def test_filters(self, account: Account, filters: dict[str, Any], expected: list[int]) -> None:
        """``status`` (``failed`` being the three failures), ``template_type`` and ``reference`` combine."""
        ids = sent_three(account, "filtered")
        send_sms(account, reference="another")
        page = account.client.get_all_notifications(reference="filtered", **filters)
        assert [notification["id"] for notification in page["notifications"]] == [ids[index] for index in expected]

    @pytest.mark.parametrize(
        ("filters", "message"),
        [
            ({"template_type": "apple"}, "template_type apple is not one of [sms, email, letter]"),
            ({"older_than": "yesterday"}, "older_than is not a valid UUID"),
        ],
    )
    def test_bad_filters(self, account: Account, filters: dict[str, Any], message: str) -> None:
        """Notify's ValidationError messages for the query."""
        call = partial(account.client.get_all_notifications, **filters)
        assert refusal(call) == one_error(400, "ValidationError", message)

    def test_a_bad_status(self, account: Account) -> None:
        """Notify: ``status elephant is not one of [cancelled, created, ...]``."""
        status, errors = refusal(partial(account.client.get_all_notifications, status="elephant"))
        assert status == 400
        assert [error["error"] for error in errors] == ["ValidationError"]
        assert errors[0]["message"].startswith("status elephant is not one of [")

    def test_the_iterator_follows_next_over_more_than_one_page(self, account: Account, deployment: Deployment) -> None:
        """260 notifications made through /notifications/v1/multiple: a page of 250, then 10, then the end."""
        items = [
            {"to": PHONE, "template_id": account.sms_template, "personalization": {"name": f"n{i}"}} for i in range(260)
        ]
        created = deployment.admin.send_many(account.key, items)
        first = account.client.get_all_notifications()
        assert len(first["notifications"]) == PAGE_SIZE
        assert first["links"]["next"]
        listed = [notification["id"] for notification in account.client.get_all_notifications_iterator()]
        assert len(listed) == len(set(listed)) == 260
        assert set(listed) == {notification["id"] for notification in created}
        by_type = list(account.client.get_all_notifications_iterator(template_type="sms"))
        assert len(by_type) == 260
        assert {notification["type"] for notification in by_type} == {"sms"}

    def test_the_iterator_of_a_list_of_one_page(self, account: Account) -> None:
        """A list shorter than a page still ends (the next page is empty)."""
        ids = sent_three(account, "short")
        listed = [notification["id"] for notification in account.client.get_all_notifications_iterator()]
        assert listed == ids[::-1]


class TestTemplates:
    """get_template, get_template_version, get_all_template_versions, post_template_preview, get_all_templates."""

    def test_a_template_reads_as_notify_serialises_it(self, account: Account) -> None:
        """GET /v2/template/{id}: the raw content, subject, placeholders, version."""
        template = account.client.get_template(account.email_template)
        assert_shape(template, TEMPLATE)
        assert (template["id"], template["type"], template["version"]) == (account.email_template, "email", 1)
        assert (template["subject"], template["body"]) == (EMAIL_SUBJECT, EMAIL_CONTENT)
        assert template["personalisation"] == {"name": {"required": True}, "band": {"required": True}}
        assert_timestamp(template["created_at"])
        sms = account.client.get_template(account.sms_template)
        assert (sms["type"], sms["subject"], sms["body"]) == ("sms", None, SMS_CONTENT)

    def test_a_template_names_who_created_it(self, account: Account) -> None:
        """Notify's ``created_by`` is a required string, the creator's e-mail address (the client's schema)."""
        for template_id in (account.email_template, account.sms_template):
            assert isinstance(account.client.get_template(template_id)["created_by"], str)
        for template in account.client.get_all_templates()["templates"]:
            assert isinstance(template["created_by"], str)

    def test_a_change_adds_a_version_and_every_version_stays_readable(
        self, account: Account, deployment: Deployment
    ) -> None:
        """PATCH (admin) adds version 2; /version/1 and /version/2 both read; the latest is 2."""
        deployment.admin.change_template(account.service_id, account.sms_template, content="((name)): doors at 8")
        latest = account.client.get_template(account.sms_template)
        assert (latest["version"], latest["body"]) == (2, "((name)): doors at 8")
        first = account.client.get_template_version(account.sms_template, 1)
        assert_shape(first, TEMPLATE)
        assert (first["version"], first["body"]) == (1, SMS_CONTENT)
        assert account.client.get_template_version(account.sms_template, 2)["body"] == "((name)): doors at 8"
        call = partial(account.client.get_template_version, account.sms_template, 3)
        assert refusal(call) == one_error(404, "NoResultFound", "No result found")

    def test_all_versions_through_the_internal_route(self, account: Account, deployment: Deployment) -> None:
        """``get_all_template_versions``: Notify's ``{"data": [template history, ...]}``."""
        deployment.admin.change_template(account.service_id, account.email_template, subject="Hello ((name))")
        versions = account.client.get_all_template_versions(account.email_template)
        assert_shape(versions, VERSION_LIST)
        subjects = {version["version"]: version.get("subject") for version in versions["data"]}
        assert subjects == {1: EMAIL_SUBJECT, 2: "Hello ((name))"}
        for version in versions["data"]:
            assert_shape(version, TEMPLATE_HISTORY)

    def test_a_notification_keeps_the_version_it_was_sent_with(self, account: Account, deployment: Deployment) -> None:
        """Sent at version 1, read after version 2 exists: still version 1, rendered from version 1."""
        sent = send_sms(account)
        deployment.admin.change_template(account.service_id, account.sms_template, content="((name)): cancelled")
        notification = account.client.get_notification_by_id(sent["id"])
        assert (notification["template"]["version"], notification["body"]) == (1, "Ada: doors at 7")
        assert send_sms(account)["template"]["version"] == 2

    def test_an_unknown_template_is_not_found(self, account: Account) -> None:
        """Notify: 404 NoResultFound."""
        call = partial(account.client.get_template, str(uuid.uuid4()))
        assert refusal(call) == one_error(404, "NoResultFound", "No result found")

    def test_a_preview_renders_subject_and_body(self, account: Account) -> None:
        """POST /v2/template/{id}/preview."""
        preview = account.client.post_template_preview(account.email_template, {"name": "Ada", "band": "Korn"})
        assert_shape(preview, PREVIEW)
        assert (preview["id"], preview["type"], preview["version"]) == (account.email_template, "email", 1)
        assert (preview["subject"], preview["body"]) == ("Hi Ada", "Dear Ada, Korn plays.")

    def test_a_preview_with_a_missing_placeholder(self, account: Account) -> None:
        """Notify: 400 BadRequestError ``Missing personalisation: band``."""
        call = partial(account.client.post_template_preview, account.email_template, {"name": "Ada"})
        assert refusal(call) == one_error(400, "BadRequestError", "Missing personalisation: band")

    @pytest.mark.parametrize(("template_type", "expected"), [(None, {"email", "sms"}), ("email", {"email"})])
    def test_all_templates(self, account: Account, template_type: str | None, expected: set[str]) -> None:
        """GET /v2/templates with and without ``type``."""
        listed = account.client.get_all_templates(template_type)
        assert_shape(listed, TEMPLATE_LIST)
        for template in listed["templates"]:
            assert_shape(template, TEMPLATE)
        assert {template["type"] for template in listed["templates"]} == expected

    def test_only_the_text_message_template_is_of_type_sms(self, account: Account) -> None:
        """``type=sms`` lists the one text message template."""
        listed = account.client.get_all_templates("sms")
        assert [template["id"] for template in listed["templates"]] == [account.sms_template]


class TestReceivedTexts:
    """get_received_texts and get_received_texts_iterator."""

    def test_no_text_messages_have_been_received(self, account: Account) -> None:
        """fastapi1 receives none: an empty list in Notify's shape, and an iterator that ends."""
        received = account.client.get_received_texts()
        assert_shape(received, RECEIVED_TEXTS)
        assert received["received_text_messages"] == []
        assert list(account.client.get_received_texts_iterator()) == []


class TestDelivery:
    """What the delivery worker makes of /v2 notifications, and Notify's test recipients."""

    @pytest.mark.parametrize(
        ("recipient", "status"),
        [
            ("ada@example.com", "delivered"),
            (PHONE, "delivered"),
            ("perm-fail@simulator.notify", "permanent-failure"),
            ("07700900002", "permanent-failure"),
        ],
    )
    def test_notifications_end_as_notifys_simulator_says(self, account: Account, recipient: str, status: str) -> None:
        """The worker hands /v2 notifications to the simulator; their final status reads back through /v2."""
        sent = send_email(account, email_address=recipient) if "@" in recipient else send_sms(account, recipient)
        notification = settled(account.client, sent["id"])
        assert notification["status"] == status
        assert_timestamp(notification["sent_at"])
        assert_timestamp(notification["completed_at"])

    @pytest.mark.parametrize("recipient", ["simulate-delivered@notifications.service.gov.uk", "07700900000"])
    def test_smoke_test_recipients_are_answered_but_never_stored(self, account: Account, recipient: str) -> None:
        """Notify's smoke-test recipients: a full 201 answer, then nothing to read (Notify never persists them)."""
        sent = send_email(account, email_address=recipient) if "@" in recipient else send_sms(account, recipient)
        assert_shape(sent, POST_EMAIL if "@" in recipient else POST_SMS)
        call = partial(account.client.get_notification_by_id, sent["id"])
        assert refusal(call) == one_error(404, "NoResultFound", "No result found")
        assert account.client.get_all_notifications()["notifications"] == []
