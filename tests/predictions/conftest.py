"""Fixtures of the prediction tests: an HTTP client whose routes use a fast, recording backend."""

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.predictions.support import RecordingBackend, batcher_over, serving


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
async def predict_client(app: FastAPI, backend: RecordingBackend) -> AsyncIterator[AsyncClient]:
    async with batcher_over(backend, max_wait_s=0.001) as batcher, serving(app, batcher) as client:
        yield client
