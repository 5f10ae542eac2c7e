"""Reading delivery back through the API: every status in the list filter, and ``failed``."""

import uuid

import pytest
from httpx import AsyncClient

from fastapi1.db.engine import Database
from fastapi1.notifications.schemas import Notification
from tests.delivery.conftest import create
from tests.delivery.test_transitions import claim, record

LIST = "/notifications/v1/"


@pytest.fixture
async def one_of_each(api: AsyncClient, database: Database) -> dict[str, str]:
    """A notification in every status, by status."""
    outcomes = ["delivered", "permanent-failure", "temporary-failure", "technical-failure", "sending"]
    ids = await create(api, [f"{status}@example.com" for status in outcomes])
    assert len(await claim(database)) == len(ids)
    await record(
        database,
        *(
            (notification_id, status, 1, 5.0 if status == "sending" else None)
            for notification_id, status in zip(ids, outcomes, strict=True)
        ),
    )
    (created,) = await create(api, ["created@example.com"])
    return dict(zip(outcomes, ids, strict=True)) | {"created": created}


class TestListFilters:
    @pytest.mark.parametrize(
        "status",
        ["created", "sending", "delivered", "permanent-failure", "temporary-failure", "technical-failure"],
    )
    async def test_each_status_filters_to_its_notifications(
        self, api: AsyncClient, one_of_each: dict[str, str], status: str
    ) -> None:
        page = (await api.get(LIST, params={"status": status})).json()
        assert [item["id"] for item in page["notifications"]] == [one_of_each[status]]
        assert page["notifications"][0]["status"] == status

    async def test_failed_is_shorthand_for_the_three_failures(
        self, api: AsyncClient, one_of_each: dict[str, str]
    ) -> None:
        page = (await api.get(LIST, params={"status": "failed"})).json()
        failures = {"permanent-failure", "temporary-failure", "technical-failure"}
        assert {item["id"] for item in page["notifications"]} == {one_of_each[status] for status in failures}

    async def test_an_unknown_status_is_422(self, api: AsyncClient) -> None:
        assert (await api.get(LIST, params={"status": "sent"})).status_code == 422


class TestReadOne:
    async def test_sent_at_is_set_from_the_hand_over_and_completed_at_only_once_final(
        self, api: AsyncClient, one_of_each: dict[str, str]
    ) -> None:
        read = {
            status: Notification.model_validate((await api.get(f"{LIST}{uuid.UUID(notification_id)}")).json())
            for status, notification_id in one_of_each.items()
        }
        assert (read["created"].sent_at, read["created"].completed_at) == (None, None)
        assert read["sending"].sent_at is not None
        assert read["sending"].completed_at is None
        for status in ("delivered", "permanent-failure", "temporary-failure", "technical-failure"):
            assert read[status].sent_at is not None
            assert read[status].completed_at is not None
            assert read[status].sent_at <= read[status].completed_at
