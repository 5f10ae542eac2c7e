"""The delivery revision: old rows migrate both ways, and the claim stays an index scan at scale."""

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import Executable, text
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi1.db.migrate import alembic_config, upgrade_to_head
from fastapi1.delivery import dao
from tests.conftest import throwaway_database

BEFORE_DELIVERY = "d9187a419195"


async def run_sql(url: str, *statements: str) -> list[dict[str, Any]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            rows: list[dict[str, Any]] = []
            for statement in statements:
                result = await connection.execute(text(statement))
                rows = [dict(row) for row in result.mappings()] if result.returns_rows else []
            return rows
    finally:
        await engine.dispose()


def insert_old(status: str) -> str:
    return (
        'INSERT INTO notifications (id, "to", status, created_at, updated_at) '
        f"VALUES ('{uuid.uuid4()}', 'x', '{status}', now() - interval '1 hour', now() - interval '1 minute')"
    )


class TestDeliveryRevision:
    def test_old_rows_migrate_up_and_down(self, admin_url: str) -> None:
        with throwaway_database(admin_url, migrate=False) as url:
            command.upgrade(alembic_config(url), BEFORE_DELIVERY)
            asyncio.run(run_sql(url, *(insert_old(status) for status in ("created", "sending", "delivered", "failed"))))

            upgrade_to_head(url)
            query = (
                "SELECT status, completed_at = updated_at AS completed, next_attempt_at, attempts FROM notifications"
            )
            rows = {row["status"]: row for row in asyncio.run(run_sql(url, query))}
            assert set(rows) == {"created", "sending", "delivered", "technical-failure"}
            assert rows["technical-failure"]["completed"]
            assert rows["delivered"]["completed"]
            assert rows["created"]["next_attempt_at"] is not None
            assert rows["sending"]["next_attempt_at"] is not None
            assert {row["attempts"] for row in rows.values()} == {0}

            command.downgrade(alembic_config(url), BEFORE_DELIVERY)
            statuses = {row["status"] for row in asyncio.run(run_sql(url, "SELECT status FROM notifications"))}
            assert statuses == {"created", "sending", "delivered", "failed"}


async def claim_plan(url: str, claim: Executable = dao.CLAIM, table: str = "notifications") -> dict[str, Any]:
    """The plan PostgreSQL picks for a worker's claim statement, as the worker sends it."""
    engine = create_async_engine(url)
    compiled = claim.compile(dialect=engine.dialect)
    values = compiled.construct_params({"limit": 100, "lease": timedelta(seconds=60)})
    parameters = tuple(values[name] for name in compiled.positiontup or ())
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"ANALYZE {table}"))
            result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled.string}", parameters)
            document = result.scalar_one()
    finally:
        await engine.dispose()
    plan: dict[str, Any] = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    return plan


def index_scans(plan: dict[str, Any]) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= index_scans(child)
    return found


def scanned_tables(plan: dict[str, Any], node_type: str) -> set[str]:
    found = {plan["Relation Name"]} if plan["Node Type"] == node_type else set()
    return found.union(*(scanned_tables(child, node_type) for child in plan.get("Plans", [])))


class TestClaimPlan:
    def test_claiming_among_many_final_rows_reads_only_the_pending_index(self, admin_url: str) -> None:
        with throwaway_database(admin_url) as url:
            asyncio.run(
                run_sql(
                    url,
                    'INSERT INTO notifications (id, "to", status, created_at, updated_at, completed_at) '
                    "SELECT gen_random_uuid(), 'x', 'delivered', now(), now(), now() FROM generate_series(1, 200000)",
                    'INSERT INTO notifications (id, "to", status, created_at, updated_at, next_attempt_at) '
                    "SELECT gen_random_uuid(), 'x', 'created', now(), now(), now() FROM generate_series(1, 1000)",
                )
            )
            plan = asyncio.run(claim_plan(url))
        assert "ix_notifications_pending_next_attempt_at" in index_scans(plan)
        assert "notifications" not in scanned_tables(plan, "Seq Scan")
