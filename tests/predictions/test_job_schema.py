"""The jobs' claim stays an index scan of the pending jobs however many finished jobs there are."""

import asyncio

from fastapi1.predictions import dao
from tests.conftest import throwaway_database
from tests.delivery.test_schema import claim_plan, index_scans, run_sql, scanned_tables


class TestClaimPlan:
    def test_claiming_among_many_finished_jobs_reads_only_the_pending_index(self, admin_url: str) -> None:
        with throwaway_database(admin_url) as url:
            asyncio.run(
                run_sql(
                    url,
                    "INSERT INTO predictions (id, status, input, result, created_at, updated_at, completed_at) "
                    "SELECT gen_random_uuid(), 'complete', 'x', '1', now(), now(), now() "
                    "FROM generate_series(1, 200000)",
                    "INSERT INTO predictions (id, status, input, created_at, updated_at, next_attempt_at) "
                    "SELECT gen_random_uuid(), 'pending', 'x', now(), now(), now() FROM generate_series(1, 1000)",
                )
            )
            plan = asyncio.run(claim_plan(url, dao.CLAIM, "predictions"))
        assert "ix_predictions_pending_next_attempt_at" in index_scans(plan)
        assert "predictions" not in scanned_tables(plan, "Seq Scan")
