"""Reading through ``/v2``: notifications (one, a page, its links), templates and their versions, previews."""

import re
import uuid
from typing import Any

import pytest
from httpx import AsyncClient

from tests.auth.conftest import admin_headers, new_key, new_service
from tests.notify_api.conftest import Service, new_template, v2_error

NOT_FOUND = v2_error(404, "NoResultFound", "No result found")
UUID_IN_LINK = re.compile(r"older_than=([0-9a-f-]{36})")


async def send_sms(client: AsyncClient, service: Service, **fields: object) -> dict[str, Any]:
    """Send a text message through /v2 and return its answer."""
    body = {"phone_number": "07700900123", "template_id": service.sms_template, "personalisation": {"name": "A"}}
    response = await client.post("/v2/notifications/sms", json=body | fields, headers=service.key.headers())
    assert response.status_code == 201, response.text
    return dict(response.json())


async def send_email(client: AsyncClient, service: Service, **fields: object) -> dict[str, Any]:
    """Send an e-mail through /v2 and return its answer."""
    body = {
        "email_address": "ada@example.com",
        "template_id": service.email_template,
        "personalisation": {"name": "Ada", "band": "Korn"},
    }
    response = await client.post("/v2/notifications/email", json=body | fields, headers=service.key.headers())
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestOneNotification:
    async def test_a_text_message_reads_back_in_notifys_full_shape(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        sent = await send_sms(auth_client, service, reference="r-1")
        response = await auth_client.get(f"/v2/notifications/{sent['id']}", headers=service.key.headers())
        assert response.status_code == 200, response.text
        read = response.json()
        assert read["id"] == sent["id"]
        assert (read["type"], read["phone_number"], read["email_address"], read["reference"]) == (
            "sms",
            "+447700900123",
            None,
            "r-1",
        )
        assert (read["body"], read["subject"], read["status"], read["created_by_name"]) == (
            "A: doors at 7",
            None,
            "created",
            None,
        )
        assert [read[f"line_{n}"] for n in range(1, 7)] + [read["postcode"]] == [None] * 7
        assert read["template"] == sent["template"]
        assert read["created_at"].endswith("+00:00")
        assert (read["sent_at"], read["completed_at"]) == (None, None)

    async def test_an_email_reads_back_with_its_subject(self, auth_client: AsyncClient, service: Service) -> None:
        sent = await send_email(auth_client, service)
        read = (await auth_client.get(f"/v2/notifications/{sent['id']}", headers=service.key.headers())).json()
        assert (read["type"], read["email_address"], read["subject"], read["body"]) == (
            "email",
            "ada@example.com",
            "Hi Ada",
            "Dear Ada, Korn plays.",
        )

    async def test_an_unknown_or_another_services_notification_is_no_result_found(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        other = await new_key(auth_client, await new_service(auth_client))
        sent = await send_sms(auth_client, service)
        for notification_id, headers in ((uuid.uuid4(), service.key.headers()), (sent["id"], other.headers())):
            response = await auth_client.get(f"/v2/notifications/{notification_id}", headers=headers)
            assert (response.status_code, response.json()) == (404, NOT_FOUND)

    async def test_an_id_that_is_not_a_uuid_is_a_validation_error(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        response = await auth_client.get("/v2/notifications/nope", headers=service.key.headers())
        error = v2_error(400, "ValidationError", "notification_id is not a valid UUID")
        assert (response.status_code, response.json()) == (400, error)

    async def test_v1_and_v2_are_two_views_of_the_same_notifications(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        via_v1 = await auth_client.post(
            "/notifications/v1/",
            json={
                "to": "ada@example.com",
                "template_id": service.email_template,
                "personalization": {"name": "Ada", "band": "X"},
            },
            headers=service.key.headers(),
        )
        assert via_v1.status_code == 201, via_v1.text
        read = (await auth_client.get(f"/v2/notifications/{via_v1.json()['id']}", headers=service.key.headers())).json()
        assert (read["subject"], read["body"], read["template"]["version"]) == ("Hi Ada", "Dear Ada, X plays.", 1)
        via_v2 = await send_sms(auth_client, service)
        back = await auth_client.get(f"/notifications/v1/{via_v2['id']}", headers=service.key.headers())
        assert (back.status_code, back.json()["to"], back.json()["body"]) == (200, "+447700900123", "A: doors at 7")

    async def test_a_letters_pdf_is_refused_for_a_notification_and_404_for_none(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        sent = await send_sms(auth_client, service)
        response = await auth_client.get(f"/v2/notifications/{sent['id']}/pdf", headers=service.key.headers())
        error = v2_error(400, "BadRequestError", "Notification is not a letter")
        assert (response.status_code, response.json()) == (400, error)
        missing = await auth_client.get(f"/v2/notifications/{uuid.uuid4()}/pdf", headers=service.key.headers())
        assert (missing.status_code, missing.json()) == (404, NOT_FOUND)


class TestList:
    async def test_filters_by_type_status_and_reference(self, auth_client: AsyncClient, service: Service) -> None:
        sms = await send_sms(auth_client, service, reference="shared")
        email = await send_email(auth_client, service, reference="shared")
        other = await send_sms(auth_client, service, reference="other")

        async def listed(query: str) -> list[str]:
            response = await auth_client.get(f"/v2/notifications{query}", headers=service.key.headers())
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["notifications"]]

        assert await listed("") == [other["id"], email["id"], sms["id"]]
        assert await listed("?template_type=sms") == [other["id"], sms["id"]]
        assert await listed("?template_type=email") == [email["id"]]
        assert await listed("?template_type=email&template_type=sms") == [other["id"], email["id"], sms["id"]]
        assert await listed("?reference=shared") == [email["id"], sms["id"]]
        assert await listed("?reference=shared&template_type=sms") == [sms["id"]]
        assert await listed("?status=created") == [other["id"], email["id"], sms["id"]]
        assert await listed("?status=delivered") == []
        assert await listed("?status=failed&status=sending") == []
        assert await listed("?template_type=letter") == []

    async def test_pages_of_250_are_followed_by_their_next_links_to_the_end(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        items = [{"to": f"person{n}@example.com"} for n in range(260)]
        created = await auth_client.post("/notifications/v1/multiple", json=items, headers=service.key.headers())
        assert created.status_code == 201, created.text
        seen: list[str] = []
        query = "?template_type=email"
        pages = 0
        while True:
            response = await auth_client.get(f"/v2/notifications{query}", headers=service.key.headers())
            page = response.json()
            assert page["links"]["current"].startswith("http://test/v2/notifications?template_type=email")
            if not page["notifications"]:
                assert "next" not in page["links"]
                break
            pages += 1
            seen.extend(item["id"] for item in page["notifications"])
            match = UUID_IN_LINK.search(page["links"]["next"])
            assert match is not None
            assert match.group(1) == page["notifications"][-1]["id"]
            assert "template_type=email" in page["links"]["next"]
            query = f"?template_type=email&older_than={match.group(1)}"
        assert pages == 2
        # One request's notifications share their creation time: newest first is then by id, descending.
        assert seen == sorted((item["id"] for item in created.json()), reverse=True)

    async def test_an_unknown_cursor_is_an_empty_page_as_notify_gives(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        await send_sms(auth_client, service)
        response = await auth_client.get(f"/v2/notifications?older_than={uuid.uuid4()}", headers=service.key.headers())
        assert response.status_code == 200
        assert response.json()["notifications"] == []

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("status=elephant", "status elephant is not one of ["),
            ("template_type=apple", "template_type apple is not one of [sms, email, letter]"),
            ("older_than=nope", "older_than is not a valid UUID"),
            ("colour=red", "Additional properties are not allowed (colour was unexpected)"),
        ],
    )
    async def test_a_bad_filter_is_a_validation_error(
        self, auth_client: AsyncClient, service: Service, query: str, message: str
    ) -> None:
        response = await auth_client.get(f"/v2/notifications?{query}", headers=service.key.headers())
        assert response.status_code == 400, response.text
        (error,) = response.json()["errors"]
        assert error["error"] == "ValidationError"
        assert error["message"].startswith(message)


class TestTemplates:
    async def test_a_template_reads_at_its_current_version_and_at_each_earlier_one(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        path = f"/services/v1/{service.id}/templates/{service.sms_template}"
        changed = await auth_client.patch(path, json={"content": "((name)), doors at 8"}, headers=admin_headers())
        assert (changed.status_code, changed.json()["version"]) == (200, 2)
        current = (await auth_client.get(f"/v2/template/{service.sms_template}", headers=service.key.headers())).json()
        assert (current["version"], current["body"], current["type"], current["subject"]) == (
            2,
            "((name)), doors at 8",
            "sms",
            None,
        )
        first = await auth_client.get(f"/v2/template/{service.sms_template}/version/1", headers=service.key.headers())
        assert (first.json()["version"], first.json()["body"]) == (1, "((name)): doors at 7")
        missing = await auth_client.get(f"/v2/template/{service.sms_template}/version/3", headers=service.key.headers())
        assert (missing.status_code, missing.json()) == (404, NOT_FOUND)
        versions = await auth_client.get(
            f"/service/{service.id}/template/{service.sms_template}/versions", headers=service.key.headers()
        )
        assert [item["version"] for item in versions.json()["data"]] == [1, 2]

    async def test_a_notification_keeps_the_version_it_was_sent_with(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        before = await send_sms(auth_client, service)
        path = f"/services/v1/{service.id}/templates/{service.sms_template}"
        assert (
            await auth_client.patch(path, json={"content": "New: ((name))"}, headers=admin_headers())
        ).status_code == 200
        after = await send_sms(auth_client, service)
        assert (before["template"]["version"], after["template"]["version"]) == (1, 2)
        old = (await auth_client.get(f"/v2/notifications/{before['id']}", headers=service.key.headers())).json()
        new = (await auth_client.get(f"/v2/notifications/{after['id']}", headers=service.key.headers())).json()
        assert (old["body"], new["body"]) == ("A: doors at 7", "New: A")

    async def test_templates_list_by_type(self, auth_client: AsyncClient, service: Service) -> None:
        async def names(query: str) -> set[str]:
            response = await auth_client.get(f"/v2/templates{query}", headers=service.key.headers())
            assert response.status_code == 200, response.text
            return {item["id"] for item in response.json()["templates"]}

        assert await names("") == {service.email_template, service.sms_template}
        assert await names("?type=email") == {service.email_template}
        assert await names("?type=sms") == {service.sms_template}
        assert await names("?type=letter") == set()
        bad = await auth_client.get("/v2/templates?type=apple", headers=service.key.headers())
        error = v2_error(400, "ValidationError", "type apple is not one of [sms, email, letter]")
        assert (bad.status_code, bad.json()) == (400, error)

    async def test_a_preview_renders_and_checks_the_personalisation(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        path = f"/v2/template/{service.email_template}/preview"
        response = await auth_client.post(
            path, json={"personalisation": {"name": "Ada", "band": "Korn"}}, headers=service.key.headers()
        )
        assert response.status_code == 200, response.text
        preview = response.json()
        assert (preview["id"], preview["type"], preview["version"], preview["subject"], preview["body"]) == (
            service.email_template,
            "email",
            1,
            "Hi Ada",
            "Dear Ada, Korn plays.",
        )
        missing = await auth_client.post(path, json={"personalisation": {"name": "Ada"}}, headers=service.key.headers())
        assert (missing.status_code, missing.json()) == (
            400,
            v2_error(400, "BadRequestError", "Missing personalisation: band"),
        )

    async def test_another_services_template_is_no_result_found(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        other = await new_service(auth_client)
        theirs = str((await new_template(auth_client, other, template_type="sms", content="x"))["id"])
        for path in (f"/v2/template/{theirs}", f"/v2/template/{theirs}/version/1"):
            response = await auth_client.get(path, headers=service.key.headers())
            assert (response.status_code, response.json()) == (404, NOT_FOUND)
        preview = await auth_client.post(
            f"/v2/template/{theirs}/preview", json={"personalisation": {}}, headers=service.key.headers()
        )
        assert (preview.status_code, preview.json()) == (404, NOT_FOUND)
        versions = await auth_client.get(f"/service/{other}/template/{theirs}/versions", headers=service.key.headers())
        assert (versions.status_code, versions.json()) == (404, NOT_FOUND)


class TestReceivedTexts:
    async def test_a_service_has_no_received_text_messages(self, auth_client: AsyncClient, service: Service) -> None:
        response = await auth_client.get("/v2/received-text-messages", headers=service.key.headers())
        assert response.status_code == 200
        assert response.json() == {
            "received_text_messages": [],
            "links": {"current": "http://test/v2/received-text-messages"},
        }
