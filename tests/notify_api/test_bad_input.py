"""Bad input on ``/v2``: always ``400 ValidationError`` in Notify's shape, never FastAPI's 422 and never a 500."""

import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.notify_api.conftest import Service

EMAIL = "/v2/notifications/email"
SMS = "/v2/notifications/sms"


def email_body(service: Service, **fields: Any) -> dict[str, Any]:
    """A valid e-mail request, with fields replaced."""
    return {
        "email_address": "ada@example.com",
        "template_id": service.email_template,
        "personalisation": {"name": "Ada", "band": "Korn"},
    } | fields


def messages(response: Any) -> list[str]:
    """The messages of a 400 ValidationError answer, checking its shape."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status_code"] == 400
    assert {error["error"] for error in body["errors"]} == {"ValidationError"}
    return [error["message"] for error in body["errors"]]


class TestFields:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"email_address": None}, "email_address is not of type string"),
            ({"email_address": "not-an-address"}, "email_address Not a valid email address"),
            ({"email_address": "a" * 310 + "@example.com"}, "email_address String should have at most 320 characters"),
            ({"template_id": "nope"}, "template_id is not a valid UUID"),
            ({"template_id": 7}, "template_id is not a valid UUID"),
            ({"personalisation": []}, "personalisation should contain key value pairs"),
            ({"personalisation": {"name": {"a": 1}}}, "personalisation.name is not of type string"),
            ({"reference": 5}, "reference is not of type string"),
            ({"reference": "r" * 1001}, "reference String should have at most 1000 characters"),
            ({"email_reply_to_id": "x"}, "email_reply_to_id is not a valid UUID"),
            (
                {"one_click_unsubscribe_url": "http://example.com/u"},
                "one_click_unsubscribe_url is not a valid https url",
            ),
            ({"colour": "red"}, "Additional properties are not allowed (colour was unexpected)"),
        ],
    )
    async def test_a_bad_field_is_named_in_notifys_words(
        self, auth_client: AsyncClient, service: Service, fields: dict[str, Any], message: str
    ) -> None:
        response = await auth_client.post(EMAIL, json=email_body(service, **fields), headers=service.key.headers())
        assert messages(response) == [message]

    @pytest.mark.parametrize("missing", ["email_address", "template_id"])
    async def test_a_missing_field_is_a_required_property(
        self, auth_client: AsyncClient, service: Service, missing: str
    ) -> None:
        body = email_body(service)
        del body[missing]
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        assert messages(response) == [f"{missing} is a required property"]

    async def test_the_limits_of_v1_hold_at_their_edge_and_past_it(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        headers = service.key.headers()
        at_edge = {"name": "x" * 10_000, "band": "b", **{f"k{n}": "v" for n in range(98)}}
        assert (
            await auth_client.post(EMAIL, json=email_body(service, personalisation=at_edge), headers=headers)
        ).status_code == 201
        too_long = {"name": "x" * 10_001, "band": "b"}
        assert messages(
            await auth_client.post(EMAIL, json=email_body(service, personalisation=too_long), headers=headers)
        )
        too_many = {"name": "a", "band": "b", **{f"k{n}": "v" for n in range(99)}}
        assert messages(
            await auth_client.post(EMAIL, json=email_body(service, personalisation=too_many), headers=headers)
        )
        long_key = {"name": "a", "band": "b", "k" * 65: "v"}
        assert messages(
            await auth_client.post(EMAIL, json=email_body(service, personalisation=long_key), headers=headers)
        )
        assert (
            await auth_client.post(EMAIL, json=email_body(service, reference="r" * 1000), headers=headers)
        ).status_code == 201

    async def test_a_rendering_past_the_bound_is_refused(self, auth_client: AsyncClient, service: Service) -> None:
        from tests.notify_api.conftest import new_template

        template = await new_template(auth_client, service.id, template_type="email", subject="s", content="((a))" * 20)
        body = {
            "email_address": "ada@example.com",
            "template_id": str(template["id"]),
            "personalisation": {"a": "x" * 10_000},
        }
        response = await auth_client.post(EMAIL, json=body, headers=service.key.headers())
        assert response.status_code == 400
        (error,) = response.json()["errors"]
        assert error["error"] == "BadRequestError"
        assert "200,000 characters" in error["message"]

    async def test_a_body_that_is_not_an_object_or_not_json_is_a_validation_error(
        self, auth_client: AsyncClient, service: Service
    ) -> None:
        headers = service.key.headers() | {"Content-Type": "application/json"}
        for content in (b"[]", b"12", b"{", b'{"template_id": "a", "template_id": "b"}'):
            response = await auth_client.post(SMS, content=content, headers=headers)
            assert messages(response)

    async def test_an_oversized_phone_number_is_refused(self, auth_client: AsyncClient, service: Service) -> None:
        body = {"phone_number": "0" * 321, "template_id": service.sms_template}
        response = await auth_client.post(SMS, json=body, headers=service.key.headers())
        assert messages(response) == ["phone_number String should have at most 320 characters"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    [
        "email_address",
        "phone_number",
        "template_id",
        "personalisation",
        "reference",
        "email_reply_to_id",
        "sms_sender_id",
        "one_click_unsubscribe_url",
        "sanitise_content_for",
        "other",
    ]
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([EMAIL, SMS]), body=st.dictionaries(FIELDS, JSON, max_size=6) | JSON)
async def test_any_json_body_is_answered_201_or_in_notifys_error_shape(
    auth_client: AsyncClient, service: Service, path: str, body: Any
) -> None:
    if isinstance(body, dict) and "template_id" in body and isinstance(body["template_id"], str):
        body["template_id"] = service.email_template if path == EMAIL else service.sms_template
    response = await auth_client.post(path, json=body, headers=service.key.headers())
    assert response.status_code in {201, 400}, response.text
    if response.status_code == 400:
        answer = response.json()
        assert answer["status_code"] == 400
        assert answer["errors"]
        assert all(set(error) == {"error", "message"} for error in answer["errors"])
        assert {error["error"] for error in answer["errors"]} <= {"ValidationError", "BadRequestError"}
    else:
        assert uuid.UUID(response.json()["id"])
