"""Property: whatever mix of clients, agents, models and lengths arrives at once, each client
gets exactly its own agents, each with the sum of its own row."""

import asyncio
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi1.predictions import controller
from fastapi1.predictions.schemas import ClientRequest
from tests.predictions.support import RecordingBackend, agents_body, batcher_over

MODELS = ["foundation-v1", "m2", "text-mock"]
AGENT_TYPES = [None, "lr", "ppo"]
numbers = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)
agents = st.tuples(st.lists(numbers, min_size=1, max_size=4), st.sampled_from(AGENT_TYPES), st.sampled_from(MODELS))
client_bodies = st.dictionaries(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=6),
    agents,
    min_size=1,
    max_size=12,
)


class TestSplitBack:
    @settings(max_examples=60, deadline=None)
    @given(
        clients=st.lists(client_bodies, min_size=1, max_size=25),
        max_size=st.integers(min_value=1, max_value=8),
        max_concurrency=st.integers(min_value=1, max_value=4),
        max_wait_ms=st.sampled_from([0.0, 0.5, 2.0]),
    )
    async def test_each_client_gets_the_sum_of_each_of_its_own_rows(
        self,
        clients: list[dict[str, tuple[list[float], str | None, str]]],
        max_size: int,
        max_concurrency: int,
        max_wait_ms: float,
    ) -> None:
        backend = RecordingBackend(delay_s=0.0005)
        requests = [
            ClientRequest.model_validate(agents_body(body, f"client-{index}")) for index, body in enumerate(clients)
        ]
        policy = {"max_size": max_size, "max_concurrency": max_concurrency, "max_wait_s": max_wait_ms / 1000}
        async with batcher_over(backend, **policy) as batcher, asyncio.timeout(30):
            answers = await asyncio.gather(
                *(controller.predict_agents(batcher, request, time.perf_counter()) for request in requests)
            )
            assert (batcher.queued_rows, batcher.in_flight) == (0, 0)
        for body, answer in zip(clients, answers, strict=True):
            assert answer["actions"] == {name: {"action": sum(row)} for name, (row, _, _) in body.items()}
        assert backend.rows_sent() == sum(len(body) for body in clients)
        assert backend.most_in_flight <= max_concurrency
        for call in backend.calls:
            assert 1 <= len(call.rows) <= max_size
            assert {len(row) for row in call.rows} == {call.key.width}
