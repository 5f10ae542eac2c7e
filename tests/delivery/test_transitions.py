"""The transitions are guarded in SQL: duplicates change nothing, final is final, nothing moves back."""

import uuid
from datetime import timedelta

from httpx import AsyncClient
from sqlalchemy import text

from fastapi1.db.engine import Database
from fastapi1.delivery import dao
from fastapi1.models.notifications import FINAL_STATUSES, NOTIFICATION_STATUSES, TRANSITIONS
from fastapi1.notifications.schemas import NotificationStatus
from tests.delivery.conftest import create, statuses

LEASE = timedelta(seconds=60)


async def claim(database: Database, limit: int = 100) -> dict[uuid.UUID, int]:
    async with database.write_sessions() as session, session.begin():
        return {row.id: row.attempts for row in await dao.claim(session, limit, LEASE)}


async def record(database: Database, *outcomes: tuple[str, str, int, float | None]) -> set[str]:
    batch = dao.Outcomes()
    for notification_id, status, attempt, delay in outcomes:
        batch.add(uuid.UUID(notification_id), status, attempt, delay)
    async with database.write_sessions() as session, session.begin():
        return {str(changed) for changed in await dao.record(session, batch)}


class TestTransitionTable:
    def test_it_names_only_known_statuses_and_never_leaves_a_final_one(self) -> None:
        assert {status for pair in TRANSITIONS for status in pair} <= set(NOTIFICATION_STATUSES)
        assert not [pair for pair in TRANSITIONS if pair[0] in FINAL_STATUSES]
        assert ("sending", "created") not in TRANSITIONS

    def test_the_api_schema_lists_the_model_statuses(self) -> None:
        assert NotificationStatus.__args__ == NOTIFICATION_STATUSES  # type: ignore[attr-defined]


class TestGuardedRecord:
    async def test_a_duplicate_outcome_changes_nothing(self, api: AsyncClient, database: Database) -> None:
        (notification_id,) = await create(api, ["a@example.com"])
        await claim(database)
        assert await record(database, (notification_id, "delivered", 1, None)) == {notification_id}
        first = (await statuses(database, [notification_id]))[notification_id]
        assert await record(database, (notification_id, "delivered", 1, None)) == set()
        assert (await statuses(database, [notification_id]))[notification_id] == first

    async def test_a_final_status_never_changes(self, api: AsyncClient, database: Database) -> None:
        (notification_id,) = await create(api, ["a@example.com"])
        await claim(database)
        await record(database, (notification_id, "permanent-failure", 1, None))
        for status in (*FINAL_STATUSES, "sending", "created"):
            delay = 0.0 if status == "sending" else None
            assert await record(database, (notification_id, status, 1, delay)) == set()
        assert (await statuses(database, [notification_id]))[notification_id]["status"] == "permanent-failure"

    async def test_a_status_never_moves_backwards(self, api: AsyncClient, database: Database) -> None:
        (notification_id,) = await create(api, ["a@example.com"])
        assert await record(database, (notification_id, "delivered", 0, None)) == set(), "created cannot skip sending"
        await claim(database)
        assert await record(database, (notification_id, "created", 1, 0.0)) == set()
        assert (await statuses(database, [notification_id]))[notification_id]["status"] == "sending"

    async def test_a_late_worker_cannot_reschedule_an_attempt_another_worker_holds(
        self, api: AsyncClient, database: Database
    ) -> None:
        (notification_id,) = await create(api, ["a@example.com"])
        await claim(database)
        async with database.write_engine.begin() as connection:  # the first lease runs out
            await connection.execute(text("UPDATE notifications SET next_attempt_at = now()"))
        assert await claim(database) == {uuid.UUID(notification_id): 2}
        assert await record(database, (notification_id, "sending", 1, 5.0)) == set()
        # ...but what it learnt for good stands: the message did go out on attempt 1.
        assert await record(database, (notification_id, "delivered", 1, None)) == {notification_id}
        assert await record(database, (notification_id, "delivered", 2, None)) == set()

    async def test_outcomes_of_a_batch_apply_row_by_row(self, api: AsyncClient, database: Database) -> None:
        done, pending = await create(api, ["a@example.com", "b@example.com"])
        await claim(database)
        await record(database, (done, "delivered", 1, None))
        changed = await record(database, (done, "temporary-failure", 1, None), (pending, "sending", 1, 1.0))
        assert changed == {pending}
        rows = await statuses(database, [done, pending])
        assert (rows[done]["status"], rows[pending]["status"]) == ("delivered", "sending")
        assert rows[done]["completed_at"] is not None
        assert rows[pending]["completed_at"] is None


class TestClaim:
    async def test_a_claim_marks_sending_starts_the_lease_and_counts_the_attempt(
        self, api: AsyncClient, database: Database
    ) -> None:
        ids = await create(api, ["a@example.com", "b@example.com", "c@example.com"])
        claimed = await claim(database, limit=2)
        assert len(claimed) == 2
        assert set(claimed.values()) == {1}
        rows = await statuses(database, ids)
        held = [row for row in rows.values() if row["status"] == "sending"]
        assert len(held) == 2
        assert all(row["sent_at"] is not None and row["next_attempt_at"] > row["sent_at"] for row in held)
        assert await claim(database) == {
            uuid.UUID(next(key for key, row in rows.items() if row["status"] == "created")): 1
        }
        assert await claim(database) == {}, "leased rows are not claimed again before the lease ends"
