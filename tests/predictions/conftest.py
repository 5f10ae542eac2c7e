"""Fixtures of the prediction tests: an HTTP client whose routes use a fast, recording backend; for jobs, a
database of the test's own and the API on it."""

from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from fastapi1.app import create_app
from fastapi1.config import Settings
from fastapi1.db.engine import Database
from tests.conftest import throwaway_database
from tests.predictions.support import RecordingBackend, batcher_over, serving


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
async def predict_client(app: FastAPI, backend: RecordingBackend) -> AsyncIterator[AsyncClient]:
    async with batcher_over(backend, max_wait_s=0.001) as batcher, serving(app, batcher) as client:
        yield client


@pytest.fixture
def jobs_url(admin_url: str) -> Iterator[str]:
    """A migrated database of the test's own: the relay's transactions commit for real."""
    with throwaway_database(admin_url) as url:
        yield url


@pytest.fixture
async def database(jobs_url: str, settings: Settings) -> AsyncIterator[Database]:
    """Engines on the test's database, for the test's own queries."""
    database = Database.connect(jobs_url, None, settings)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def api(jobs_url: str, settings: Settings) -> AsyncIterator[AsyncClient]:
    """The HTTP API on the test's database, its synchronous path on a fast recording backend."""
    app: FastAPI = create_app(settings.model_copy(update={"database_url": jobs_url, "compute_workers": 1}))
    async with (
        app.router.lifespan_context(app),
        batcher_over(RecordingBackend(), max_wait_s=0.001) as batcher,
        serving(app, batcher) as http,
    ):
        yield http
