"""The rendered subject and body are bounded: a small request never renders, stores or serves a huge text.

Each input limit holds alone, but they multiply: a template of ``((a))`` 20,000 times and a value of
10,000 characters would render 200 million characters. The bound is checked by counting, before
anything is rendered or stored.
"""

import contextlib
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection

from fastapi1.config import LIMITS
from fastapi1.models.notifications import PERSONALIZATION_VALUE_MAX
from fastapi1.models.services import TEMPLATE_CONTENT_MAX, TEMPLATE_SUBJECT_MAX
from tests.notifications.conftest import count_rows, create_template

SINGLE = "/notifications/v1/"
MULTIPLE = "/notifications/v1/multiple"
RENDERED_MAX = LIMITS.rendered_chars
LARGEST_VALUE = {"a": "v" * PERSONALIZATION_VALUE_MAX}
# Every character of the content is a placeholder: the largest rendering the input limits allow.
LARGEST_CONTENT = "((a))" * (TEMPLATE_CONTENT_MAX // len("((a))"))
LARGEST_SUBJECT = "((a))" * (TEMPLATE_SUBJECT_MAX // len("((a))"))


def renders_to(length: int) -> str:
    """A template text that renders to ``length`` characters with :data:`LARGEST_VALUE`."""
    copies, rest = divmod(length, PERSONALIZATION_VALUE_MAX)
    return "((a))" * copies + "x" * rest


def texts_rendering(part: str, length: int) -> tuple[str, str | None]:
    """Content and subject of a template whose ``part`` (body or subject) renders to ``length`` characters."""
    text = renders_to(length)
    return (text, None) if part == "body" else ("Hello ((a))", text)


def too_long(part: str, length: int) -> str:
    return f"Personalization renders the {part} to {length:,} characters; at most {RENDERED_MAX:,} allowed"


@contextlib.contextmanager
def peak_allocation() -> Iterator[list[int]]:
    """Measure the most memory Python held at once inside the block, in bytes (appended on exit)."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


class TestTheLargestRequest:
    async def test_a_template_of_placeholders_with_the_longest_value_is_422_without_rendering_or_storing(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        template_id = await create_template(client, LARGEST_CONTENT)
        item = {"to": "x", "template_id": template_id, "personalization": LARGEST_VALUE}
        with peak_allocation() as peak:
            response = await client.post(SINGLE, json=item)
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {"type": "value_error", "loc": ["body", "personalization"], "msg": too_long("body", 200_000_000)}
        ]
        assert peak[0] < 20_000_000, "the 200-million-character body must be counted, never rendered"
        assert await count_rows(connection) == (0, 0)

    async def test_the_largest_subject_is_422_too(self, client: AsyncClient, connection: AsyncConnection) -> None:
        template_id = await create_template(client, "Hello", subject=LARGEST_SUBJECT)
        response = await client.post(
            SINGLE, json={"to": "x", "template_id": template_id, "personalization": LARGEST_VALUE}
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["msg"] == too_long("subject", 2_000_000)
        assert await count_rows(connection) == (0, 0)

    async def test_in_a_list_the_first_oversized_item_is_named_and_nothing_is_stored(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        largest = await create_template(client, LARGEST_CONTENT)
        fine = {"to": "x", "template_id": largest, "personalization": {"a": "v"}}
        huge = {"to": "x", "template_id": largest, "personalization": LARGEST_VALUE}
        with peak_allocation() as peak:
            response = await client.post(MULTIPLE, json=[fine, fine, huge, huge, huge])
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {"type": "value_error", "loc": ["body", 2, "personalization"], "msg": too_long("body", 200_000_000)}
        ]
        assert peak[0] < 20_000_000
        assert await count_rows(connection) == (0, 0)


class TestTheEdge:
    @pytest.mark.parametrize("part", ["body", "subject"])
    async def test_a_rendering_of_exactly_the_bound_is_accepted_and_read_back_whole(
        self, client: AsyncClient, part: str
    ) -> None:
        template_id = await create_template(client, *texts_rendering(part, RENDERED_MAX))
        response = await client.post(
            SINGLE, json={"to": "x", "template_id": template_id, "personalization": LARGEST_VALUE}
        )
        assert response.status_code == 201, response.text
        assert len(response.json()[part]) == RENDERED_MAX
        assert (await client.get(f"{SINGLE}{response.json()['id']}")).json() == response.json()

    @pytest.mark.parametrize("part", ["body", "subject"])
    async def test_one_character_past_the_bound_is_422_and_stores_nothing(
        self, client: AsyncClient, connection: AsyncConnection, part: str
    ) -> None:
        template_id = await create_template(client, *texts_rendering(part, RENDERED_MAX + 1))
        response = await client.post(
            SINGLE, json={"to": "x", "template_id": template_id, "personalization": LARGEST_VALUE}
        )
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {"type": "value_error", "loc": ["body", "personalization"], "msg": too_long(part, RENDERED_MAX + 1)}
        ]
        assert await count_rows(connection) == (0, 0)

    async def test_in_a_list_one_item_past_the_bound_rejects_the_list_naming_its_index(
        self, client: AsyncClient, connection: AsyncConnection
    ) -> None:
        template_id = await create_template(client, renders_to(RENDERED_MAX - 1) + "((b))")
        at_bound = {"to": "x", "template_id": template_id, "personalization": LARGEST_VALUE | {"b": "1"}}
        past = {"to": "y", "template_id": template_id, "personalization": LARGEST_VALUE | {"b": "12"}}
        response = await client.post(MULTIPLE, json=[at_bound, at_bound, at_bound, past, at_bound])
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", 3, "personalization"]
        assert response.json()["detail"][0]["msg"] == too_long("body", RENDERED_MAX + 1)
        assert await count_rows(connection) == (0, 0)


class TestPagesStayBounded:
    async def test_a_page_after_the_largest_allowed_rows_is_at_most_twice_the_bound_per_notification(
        self, client: AsyncClient
    ) -> None:
        at_bound = await create_template(client, renders_to(RENDERED_MAX), subject=renders_to(RENDERED_MAX))
        oversized = await create_template(client, "((a))" * 1_000, subject=LARGEST_SUBJECT)
        attempts: list[dict[str, Any]] = [
            {"to": "x", "template_id": template_id, "personalization": LARGEST_VALUE}
            for template_id in (oversized, at_bound) * 5
        ]
        statuses = [(await client.post(SINGLE, json=attempt)).status_code for attempt in attempts]
        assert statuses == [422, 201] * 5
        limit = 10
        page = await client.get(SINGLE, params={"limit": limit})
        assert page.status_code == 200
        assert [len(n["body"]) for n in page.json()["notifications"]] == [RENDERED_MAX] * 5
        # Besides its subject and body, a notification carries its personalization and a few short fields.
        overhead = len('{"a": ""}') + PERSONALIZATION_VALUE_MAX + 1_000
        assert len(page.content) <= limit * (2 * RENDERED_MAX + overhead)
