"""PostgreSQL cut away from a running worker and brought back: it resumes by itself, nothing is lost."""

import asyncio

from httpx import AsyncClient

from fastapi1.db.engine import Database
from tests.delivery.conftest import RecordingProvider, RunRelay, create, statuses, wait_final, wait_until
from tests.proxy import TcpProxy


class TestDatabaseCut:
    async def test_the_worker_resumes_after_the_database_returns_and_every_notification_ends_delivered(
        self, api: AsyncClient, database: Database, delivery_url: str, run_relay: RunRelay
    ) -> None:
        provider = RecordingProvider(delay_s=0.02)
        async with (
            TcpProxy.to_database(delivery_url) as proxy,
            # A claim whose COMMIT is cut may have committed unseen: its rows wait for their lease.
            run_relay(provider.providers(), url=proxy.url, delivery_poll_interval_s=1.0, delivery_lease_s=5.0),
        ):
            before = await create(api, [f"before{index}@example.com" for index in range(300)])

            async def some_delivered() -> bool:
                rows = await statuses(database, before)
                return any(row["status"] == "delivered" for row in rows.values())

            await wait_until(some_delivered, within=10)
            await proxy.stop()  # mid-run: claims, outcomes and the LISTEN connection all cut
            during = await create(api, [f"during{index}@example.com" for index in range(100)])
            await asyncio.sleep(1.5)  # the outage lasts a while: the worker's retries fail meanwhile
            await proxy.start()
            rows = await wait_final(database, before + during, within=30)
        assert {row["status"] for row in rows.values()} == {"delivered"}
        # Outcomes were recorded within their leases, so nothing was delivered twice.
        assert len(provider.sends) == 400
        assert set(provider.sends.values()) == {1}
