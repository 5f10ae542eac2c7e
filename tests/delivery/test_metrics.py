"""Notification transitions are counted where they are committed: creation, claims and outcomes."""

from httpx import AsyncClient

from fastapi1.db.engine import Database
from tests.delivery.conftest import RecordingProvider, RunRelay, create, wait_final
from tests.scrapes import sample

TRANSITIONS = "fastapi1_notifications_transitions_total"
PAIRS = [
    ("none", "created"),
    ("created", "sending"),
    ("sending", "sending"),
    ("sending", "delivered"),
    ("sending", "permanent-failure"),
    ("sending", "temporary-failure"),
]


def transitions() -> dict[tuple[str, str], float]:
    return {pair: sample(TRANSITIONS, from_status=pair[0], to_status=pair[1]) for pair in PAIRS}


class TestTransitions:
    async def test_every_committed_status_change_is_counted_once(
        self, api: AsyncClient, database: Database, run_relay: RunRelay
    ) -> None:
        before = transitions()
        recipients = ["someone@example.com", "perm-fail@simulator.notify", "temp-fail@simulator.notify"]
        async with run_relay(RecordingProvider().providers(), delivery_max_attempts=3):
            ids = await create(api, recipients)
            await wait_final(database, ids)
        after = transitions()
        assert {pair: after[pair] - before[pair] for pair in PAIRS} == {
            ("none", "created"): 3,
            ("created", "sending"): 3,
            # temp-fail's two retries: each is scheduled (an outcome) and then claimed again.
            ("sending", "sending"): 4,
            ("sending", "delivered"): 1,
            ("sending", "permanent-failure"): 1,
            ("sending", "temporary-failure"): 1,
        }
