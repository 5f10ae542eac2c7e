"""Template types and versions: inferred types, PATCH adds n+1, every version readable, notifications keep theirs."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import text

from fastapi1.db.engine import Database
from fastapi1.delivery.providers import Message
from tests.auth.conftest import Key
from tests.delivery.conftest import (  # noqa: F401 (fixtures)
    RecordingProvider,
    RunRelay,
    api,
    create,
    database,
    delivery_url,
    run_relay,
    wait_final,
    wait_until,
)
from tests.services.test_templates import create_service, create_template


def template_url(service_id: str, template_id: str) -> str:
    return f"/services/v1/{service_id}/templates/{template_id}"


async def change(client: AsyncClient, service_id: str, template_id: str, **fields: Any) -> Response:
    """PATCH a template with ``fields`` as the body."""
    return await client.patch(template_url(service_id, template_id), json=fields)


async def changed(client: AsyncClient, service_id: str, template_id: str, **fields: Any) -> dict[str, Any]:
    """PATCH a template and return the version it answered, which must be a 200."""
    response = await change(client, service_id, template_id, **fields)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def versions(client: AsyncClient, service_id: str, template_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{template_url(service_id, template_id)}/versions")
    assert response.status_code == 200, response.text
    return list(response.json())


class TestTemplateTypes:
    async def test_a_template_with_a_subject_is_an_email_template(self, client: AsyncClient) -> None:
        template = await create_template(client, await create_service(client))
        assert (template["template_type"], template["version"]) == ("email", 1)

    @pytest.mark.parametrize("subject", [{}, {"subject": None}], ids=["omitted", "null"])
    async def test_a_template_without_a_subject_is_a_text_message_template(
        self, client: AsyncClient, subject: dict[str, Any]
    ) -> None:
        service_id = await create_service(client)
        response = await client.post(
            f"/services/v1/{service_id}/templates", json={"name": "t", "content": "Hi"} | subject
        )
        assert response.status_code == 201, response.text
        assert (response.json()["template_type"], response.json()["subject"]) == ("sms", None)

    @pytest.mark.parametrize(("template_type", "subject"), [("email", "Hello"), ("sms", None)])
    async def test_an_explicit_type_is_kept_and_read_back(
        self, client: AsyncClient, template_type: str, subject: str | None
    ) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id, template_type=template_type, subject=subject)
        assert template["template_type"] == template_type
        read = await client.get(template_url(service_id, template["id"]))
        assert read.json()["template_type"] == template_type

    @pytest.mark.parametrize(
        "fields",
        [
            {"template_type": "email"},
            {"template_type": "email", "subject": None},
            {"template_type": "email", "subject": ""},
            {"subject": ""},
            {"template_type": "sms", "subject": "Hello"},
            {"template_type": "sms", "subject": ""},
        ],
    )
    async def test_a_subject_that_does_not_fit_the_type_is_422_naming_the_subject(
        self, client: AsyncClient, fields: dict[str, Any]
    ) -> None:
        service_id = await create_service(client)
        response = await client.post(
            f"/services/v1/{service_id}/templates", json={"name": "t", "content": "c"} | fields
        )
        assert response.status_code == 422, response.text
        assert [error["loc"] for error in response.json()["detail"]] == [["body", "subject"]]
        assert (await client.get(f"/services/v1/{service_id}/templates")).json() == []

    async def test_an_unknown_type_is_422_naming_it(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        body = {"name": "t", "template_type": "letter", "content": "c"}
        response = await client.post(f"/services/v1/{service_id}/templates", json=body)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "template_type"]

    async def test_the_list_filters_by_type(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        await create_template(client, service_id, name="mail")
        await create_template(client, service_id, name="text", subject=None)
        listed = await client.get(f"/services/v1/{service_id}/templates", params={"template_type": "sms"})
        assert [template["name"] for template in listed.json()] == ["text"]


class TestChangeTemplate:
    async def test_a_change_adds_the_next_version_and_answers_it(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        original = await create_template(client, service_id, content="Hello ((name)).")
        updated = await changed(client, service_id, original["id"], content="Bye ((name)), ((code)).")
        assert updated["version"] == 2
        assert updated["content"] == "Bye ((name)), ((code))."
        assert (updated["name"], updated["subject"], updated["template_type"]) == (
            original["name"],
            original["subject"],
            original["template_type"],
        )
        assert updated["placeholders"] == ["band", "name", "code"]
        assert updated["created_at"] == original["created_at"]
        assert updated["updated_at"] > original["updated_at"]
        assert (await client.get(template_url(service_id, original["id"]))).json() == updated

    async def test_version_1_stays_readable_and_the_list_is_oldest_first(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        original = await create_template(client, service_id)
        second = await changed(client, service_id, original["id"], subject="((band)) moved")
        third = await changed(client, service_id, original["id"], content="New ((venue))")
        first = await client.get(f"{template_url(service_id, original['id'])}/versions/1")
        assert first.status_code == 200
        assert first.json() == original
        assert (await client.get(f"{template_url(service_id, original['id'])}/versions/2")).json() == second
        assert await versions(client, service_id, original["id"]) == [original, second, third]

    async def test_each_versions_placeholders_come_from_its_own_subject_and_content(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id, subject="((a))", content="((b))")
        await changed(client, service_id, template["id"], subject="((c))")
        await changed(client, service_id, template["id"], content="((d)) and ((c))")
        listed = await versions(client, service_id, template["id"])
        assert [version["placeholders"] for version in listed] == [["a", "b"], ["c", "b"], ["c", "d"]]
        assert [version["version"] for version in listed] == [1, 2, 3]

    async def test_a_rename_adds_a_version_and_every_version_shows_the_new_name(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id, name="old")
        renamed = await changed(client, service_id, template["id"], name="new")
        assert (renamed["name"], renamed["version"]) == ("new", 2)
        assert [version["name"] for version in await versions(client, service_id, template["id"])] == ["new", "new"]
        listed = await client.get(f"/services/v1/{service_id}/templates")
        assert [item["name"] for item in listed.json()] == ["new"]

    @pytest.mark.parametrize(
        "fields",
        [
            {"content": "Hello ((name)), ((band)) plays."},
            {"subject": "((band)) tonight"},
            {"name": "reminder"},
            {"name": "reminder", "subject": "((band)) tonight", "content": "Hello ((name)), ((band)) plays."},
        ],
    )
    async def test_a_change_that_changes_nothing_adds_no_version(
        self, client: AsyncClient, fields: dict[str, Any]
    ) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id)
        answered = await changed(client, service_id, template["id"], **fields)
        assert answered == template
        assert await versions(client, service_id, template["id"]) == [template]

    async def test_taking_no_subject_from_a_text_message_template_changes_nothing(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id, subject=None, content="Hi")
        assert (await changed(client, service_id, template["id"], subject=None))["version"] == 1
        assert len(await versions(client, service_id, template["id"])) == 1

    async def test_renaming_to_another_templates_name_is_409_and_adds_nothing(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        await create_template(client, service_id, name="taken")
        template = await create_template(client, service_id, name="mine")
        response = await change(client, service_id, template["id"], name="taken", content="changed too")
        assert response.status_code == 409
        assert response.json() == {"detail": f"Template name 'taken' already exists in service {service_id}"}
        assert await versions(client, service_id, template["id"]) == [template]

    @pytest.mark.parametrize(
        ("fields", "loc"),
        [
            ({}, ["body"]),
            ({"bogus": "x"}, ["body", "bogus"]),
            ({"template_type": "sms"}, ["body", "template_type"]),
            ({"content": ""}, ["body", "content"]),
            ({"name": " "}, ["body", "name"]),
            ({"subject": None}, ["body", "subject"]),
            ({"subject": ""}, ["body", "subject"]),
            ({"content": "((" + "k" * 65 + "))"}, ["body", "content"]),
        ],
    )
    async def test_a_bad_change_to_an_email_template_is_422_and_adds_nothing(
        self, client: AsyncClient, fields: dict[str, Any], loc: list[str]
    ) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id)
        response = await change(client, service_id, template["id"], **fields)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc
        assert await versions(client, service_id, template["id"]) == [template]

    async def test_giving_a_text_message_template_a_subject_is_422_and_adds_nothing(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id, subject=None, content="Hi")
        response = await change(client, service_id, template["id"], subject="Hello", content="Bye")
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "subject"]
        assert await versions(client, service_id, template["id"]) == [template]

    async def test_an_unknown_template_is_404(self, client: AsyncClient) -> None:
        service_id, missing = await create_service(client), str(uuid.uuid4())
        response = await change(client, service_id, missing, content="c")
        assert (response.status_code, response.json()) == (404, {"detail": f"Template {missing} not found"})

    async def test_another_services_template_is_404_everywhere_and_stays_unchanged(self, client: AsyncClient) -> None:
        owner, other = await create_service(client, "owner"), await create_service(client, "other")
        template = await create_template(client, owner)
        expected = {"detail": f"Template {template['id']} not found"}
        for response in (
            await change(client, other, template["id"], content="stolen"),
            await client.get(f"{template_url(other, template['id'])}/versions"),
        ):
            assert (response.status_code, response.json()) == (404, expected)
        one = await client.get(f"{template_url(other, template['id'])}/versions/1")
        assert one.status_code == 404
        assert await versions(client, owner, template["id"]) == [template]


class TestReadVersions:
    @pytest.mark.parametrize("version", [0, -1, 2**31])
    async def test_a_version_number_outside_1_to_int32_is_422(self, client: AsyncClient, version: int) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id)
        response = await client.get(f"{template_url(service_id, template['id'])}/versions/{version}")
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["path", "version"]

    @pytest.mark.parametrize("version", [2, 2**31 - 1])
    async def test_a_version_not_yet_made_is_404(self, client: AsyncClient, version: int) -> None:
        service_id = await create_service(client)
        template = await create_template(client, service_id)
        response = await client.get(f"{template_url(service_id, template['id'])}/versions/{version}")
        assert (response.status_code, response.json()) == (
            404,
            {"detail": f"Version {version} of template {template['id']} not found"},
        )

    async def test_the_versions_of_an_unknown_template_are_404(self, client: AsyncClient) -> None:
        service_id = await create_service(client)
        response = await client.get(f"{template_url(service_id, str(uuid.uuid4()))}/versions")
        assert response.status_code == 404


@dataclass(frozen=True)
class Live:
    """The API on a database of the test's own, whose requests commit for real, and that database's engines."""

    api: AsyncClient
    database: Database
    run_relay: RunRelay

    async def service(self) -> str:
        return await create_service(self.api, f"service-{uuid.uuid4()}")

    async def key(self, service_id: str) -> Key:
        """A normal key of the service (admin routes are open in development)."""
        response = await self.api.post(f"/services/v1/{service_id}/api-keys", json={"name": "k", "key_type": "normal"})
        assert response.status_code == 201, response.text
        return Key(uuid.UUID(response.json()["id"]), uuid.UUID(service_id), response.json()["key"])

    async def lock_waiters(self) -> int:
        """Sessions of this database waiting for a lock."""
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        async with self.database.write_engine.connect() as connection:
            return int(await connection.scalar(text(query)) or 0)

    @contextlib.asynccontextmanager
    async def holding(self, statement: str, **parameters: object) -> AsyncIterator[None]:
        """Run ``statement`` in a transaction that holds its locks until the block ends, then commits."""
        async with self.database.write_engine.connect() as connection:
            await connection.execute(text(statement), parameters)
            yield
            await connection.commit()


@pytest.fixture
def live(api: AsyncClient, database: Database, run_relay: RunRelay) -> Live:  # noqa: F811 (the fixtures)
    return Live(api, database, run_relay)


async def held_back(
    live: Live, statement: str, parameters: dict[str, object], requests: list[Coroutine[Any, Any, Response]]
) -> list[Response]:
    """Send the requests while another transaction holds what ``statement`` locks; commit it once they all wait."""
    tasks: list[asyncio.Task[Response]] = []
    try:
        async with live.holding(statement, **parameters):
            tasks = [asyncio.create_task(request) for request in requests]

            async def all_waiting() -> bool:
                return await live.lock_waiters() == len(tasks)

            await wait_until(all_waiting, within=10)
    finally:
        responses = await asyncio.gather(*tasks)
    return list(responses)


async def changes_behind_a_lock(
    live: Live, service_id: str, template_id: str, bodies: list[dict[str, Any]]
) -> list[Response]:
    """Send the changes while another transaction holds the template's row."""
    lock = "SELECT id FROM templates WHERE id = :id FOR UPDATE"
    changes = [change(live.api, service_id, template_id, **body) for body in bodies]
    return await held_back(live, lock, {"id": uuid.UUID(template_id)}, changes)


class TestConcurrentChanges:
    async def test_five_concurrent_changes_make_versions_2_to_6_exactly(self, live: Live) -> None:
        service_id = await live.service()
        template = await create_template(live.api, service_id)
        contents = [f"Change {index}" for index in range(5)]
        responses = await asyncio.gather(
            *(change(live.api, service_id, template["id"], content=content) for content in contents)
        )
        assert [response.status_code for response in responses] == [200] * 5
        answered = {response.json()["version"]: response.json() for response in responses}
        assert sorted(answered) == [2, 3, 4, 5, 6]
        listed = await versions(live.api, service_id, template["id"])
        assert [version["version"] for version in listed] == [1, 2, 3, 4, 5, 6]
        assert listed[1:] == [answered[number] for number in range(2, 7)]
        assert sorted(version["content"] for version in listed[1:]) == contents

    async def test_changes_that_waited_for_each_other_keep_each_others_fields(self, live: Live) -> None:
        """Each change replaces only its own fields of the version current when it is made, not when it was sent."""
        service_id = await live.service()
        template = await create_template(live.api, service_id)
        bodies = [{"content": "New ((name))"}, {"subject": "New ((band))"}]
        responses = await changes_behind_a_lock(live, service_id, template["id"], bodies)
        assert [response.status_code for response in responses] == [200, 200]
        latest = (await versions(live.api, service_id, template["id"]))[-1]
        assert (latest["version"], latest["subject"], latest["content"]) == (3, "New ((band))", "New ((name))")

    async def test_the_same_change_sent_twice_at_once_adds_one_version(self, live: Live) -> None:
        service_id = await live.service()
        template = await create_template(live.api, service_id)
        responses = await changes_behind_a_lock(live, service_id, template["id"], [{"content": "Again"}] * 2)
        assert [response.status_code for response in responses] == [200, 200]
        assert [response.json()["version"] for response in responses] == [2, 2]
        assert [version["version"] for version in await versions(live.api, service_id, template["id"])] == [1, 2]

    async def test_a_rename_racing_a_new_template_of_that_name_is_409_not_500(self, live: Live) -> None:
        service_id = await live.service()
        template = await create_template(live.api, service_id, name="mine")
        insert = (
            "INSERT INTO templates (id, service_id, name, template_type, created_at)"
            " VALUES (:id, :service_id, 'wanted', 'sms', now())"
        )
        parameters: dict[str, object] = {"id": uuid.uuid4(), "service_id": uuid.UUID(service_id)}
        rename = change(live.api, service_id, template["id"], name="wanted")
        (response,) = await held_back(live, insert, parameters, [rename])
        assert response.status_code == 409, response.text
        assert await versions(live.api, service_id, template["id"]) == [template]


EMAIL_V1 = {"subject": "Code for ((name))", "content": "Hello ((name)), version one."}
EMAIL_V2 = {"subject": "New code for ((name))", "content": "Hi ((name)), version two: ((code))."}


class TestNotificationsKeepTheirVersion:
    async def test_a_notification_made_before_a_change_still_reads_as_version_1(self, live: Live) -> None:
        service_id = await live.service()
        key = await live.key(service_id)
        template = await create_template(live.api, service_id, **EMAIL_V1)
        item = {"to": "ada@example.com", "template_id": template["id"], "personalization": {"name": "Ada", "code": "7"}}
        before = await live.api.post("/notifications/v1/", json=item, headers=key.headers())
        assert before.status_code == 201, before.text
        await changed(live.api, service_id, template["id"], **EMAIL_V2)
        after = await live.api.post("/notifications/v1/", json=item, headers=key.headers())
        assert after.status_code == 201, after.text

        old = (await live.api.get(f"/notifications/v1/{before.json()['id']}", headers=key.headers())).json()
        new = (await live.api.get(f"/notifications/v1/{after.json()['id']}", headers=key.headers())).json()
        assert (old["subject"], old["body"]) == ("Code for Ada", "Hello Ada, version one.")
        assert (new["subject"], new["body"]) == ("New code for Ada", "Hi Ada, version two: 7.")

        old_v2 = (await live.api.get(f"/v2/notifications/{before.json()['id']}", headers=key.headers())).json()
        new_v2 = (await live.api.get(f"/v2/notifications/{after.json()['id']}", headers=key.headers())).json()
        assert (old_v2["template"]["version"], old_v2["subject"], old_v2["body"]) == (
            1,
            "Code for Ada",
            "Hello Ada, version one.",
        )
        assert old_v2["template"]["uri"].endswith(f"/v2/template/{template['id']}/version/1")
        assert (new_v2["template"]["version"], new_v2["body"]) == (2, "Hi Ada, version two: 7.")

    async def test_a_v2_send_after_a_change_uses_and_names_the_new_version(self, live: Live) -> None:
        service_id = await live.service()
        key = await live.key(service_id)
        template = await create_template(live.api, service_id, **EMAIL_V1)
        await changed(live.api, service_id, template["id"], **EMAIL_V2)
        body = {"email_address": "ada@example.com", "template_id": template["id"], "personalisation": {"name": "Ada"}}
        missing = await live.api.post("/v2/notifications/email", json=body, headers=key.headers())
        assert (missing.status_code, missing.json()["errors"][0]["message"]) == (400, "Missing personalisation: code")
        body["personalisation"] = {"name": "Ada", "code": "7"}
        sent = await live.api.post("/v2/notifications/email", json=body, headers=key.headers())
        assert sent.status_code == 201, sent.text
        assert sent.json()["template"]["version"] == 2
        assert sent.json()["content"]["body"] == "Hi Ada, version two: 7."
        read = await live.api.get(f"/v2/notifications/{sent.json()['id']}", headers=key.headers())
        assert read.json()["template"]["version"] == 2


class CapturingProvider(RecordingProvider):
    """The simulator, keeping the message each notification was last handed over as."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: dict[uuid.UUID, Message] = {}

    async def send(self, message: Message) -> None:
        self.messages[message.id] = message
        await super().send(message)


class TestDeliveryOfVersions:
    async def test_the_worker_delivers_the_version_each_notification_names(self, live: Live) -> None:
        service_id = await live.service()
        email = await create_template(live.api, service_id, name="mail", **EMAIL_V1)
        sms = await create_template(live.api, service_id, name="text", subject=None, content="v1 for ((name))")
        values = {"name": "Ada", "code": "7"}
        email_v1 = await create(live.api, ["ada@example.com"], template_id=email["id"], personalization=values)
        sms_v1 = await create(live.api, ["+447700900123"], template_id=sms["id"], personalization=values)
        await changed(live.api, service_id, email["id"], **EMAIL_V2)
        await changed(live.api, service_id, sms["id"], content="v2 for ((name)), ((code))")
        email_v2 = await create(live.api, ["ada@example.com"], template_id=email["id"], personalization=values)
        sms_v2 = await create(live.api, ["+447700900123"], template_id=sms["id"], personalization=values)
        ids = email_v1 + sms_v1 + email_v2 + sms_v2

        provider = CapturingProvider()
        async with live.run_relay(provider.providers()):
            rows = await wait_final(live.database, ids)
        assert {row["status"] for row in rows.values()} == {"delivered"}
        sent = [provider.messages[uuid.UUID(notification_id)] for notification_id in ids]
        assert [(message.subject, message.body) for message in sent] == [
            ("Code for Ada", "Hello Ada, version one."),
            (None, "v1 for Ada"),
            ("New code for Ada", "Hi Ada, version two: 7."),
            (None, "v2 for Ada, 7"),
        ]
