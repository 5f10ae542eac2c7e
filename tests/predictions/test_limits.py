"""Every limit of the /predict bodies, at its edge (accepted) and past it (422, nothing sent)."""

import json
from typing import Any

import pytest
from httpx import AsyncClient

from fastapi1.errors import LOC_CHARS
from tests.predictions.support import RecordingBackend

MODEL_CHARACTERS = "AZaz09._:-"


def agent(**override: Any) -> dict[str, Any]:
    return {"observations": [0.5], "agent_type": "lr", "nn_model_name": "m"} | override


def agents(**override: Any) -> dict[str, Any]:
    return {"client_id": "c", "run_slug": "0", "observations": {"a": agent()}} | override


def one_agent(**override: Any) -> dict[str, Any]:
    return agents(observations={"a": agent(**override)})


def without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != field}


ACCEPTED = {
    "one observation": one_agent(observations=[1.5]),
    "4096 observations": one_agent(observations=[0.25] * 4_096),
    "integers as observations": one_agent(observations=[1, -2]),
    "the largest finite number": one_agent(observations=[1.7976931348623157e308]),
    "1000 agents": agents(observations={f"agent-{index}": agent() for index in range(1_000)}),
    "an agent name of 1 character": agents(observations={"a": agent()}),
    "an agent name of 128 characters": agents(observations={"n" * 128: agent()}),
    "an agent type of 1 character": one_agent(agent_type="x"),
    "an agent type of 64 characters": one_agent(agent_type="t" * 64),
    "a null agent type": one_agent(agent_type=None),
    "no agent type": agents(observations={"a": without(agent(), "agent_type")}),
    "a model name of 1 character": one_agent(nn_model_name="m"),
    "a model name of 128 characters": one_agent(nn_model_name="m" * 128),
    "every character a model name may hold": one_agent(nn_model_name=MODEL_CHARACTERS),
    "a client id of 1 character": agents(client_id="c"),
    "a client id of 128 characters": agents(client_id="c" * 128),
    "a run slug of 1 character": agents(run_slug="r"),
    "a run slug of 128 characters": agents(run_slug="r" * 128),
    "an input of 1 character": {"input": "x"},
    "an input of 10000 characters": {"input": "x" * 10_000},
}

REJECTED: dict[str, tuple[dict[str, Any] | bytes, list[str | int]]] = {
    "no observations": (one_agent(observations=[]), ["body", "observations", "a", "observations"]),
    "4097 observations": (one_agent(observations=[0.5] * 4_097), ["body", "observations", "a", "observations"]),
    "NaN": (
        b'{"client_id":"c","run_slug":"0","observations":{"a":{"observations":[NaN],"nn_model_name":"m"}}}',
        ["body", "observations", "a", "observations", 0],
    ),
    "Infinity": (
        b'{"client_id":"c","run_slug":"0","observations":{"a":{"observations":[1,Infinity],"nn_model_name":"m"}}}',
        ["body", "observations", "a", "observations", 1],
    ),
    "-Infinity": (
        b'{"client_id":"c","run_slug":"0","observations":{"a":{"observations":[-Infinity],"nn_model_name":"m"}}}',
        ["body", "observations", "a", "observations", 0],
    ),
    "a literal that overflows": (
        b'{"client_id":"c","run_slug":"0","observations":{"a":{"observations":[1e400],"nn_model_name":"m"}}}',
        ["body", "observations", "a", "observations", 0],
    ),
    "a boolean observation": (one_agent(observations=[True]), ["body", "observations", "a", "observations", 0]),
    "a string observation": (one_agent(observations=["0.5"]), ["body", "observations", "a", "observations", 0]),
    "a null observation": (one_agent(observations=[0.5, None]), ["body", "observations", "a", "observations", 1]),
    "no agents": (agents(observations={}), ["body", "observations"]),
    "1001 agents": (
        agents(observations={f"agent-{index}": agent() for index in range(1_001)}),
        ["body", "observations"],
    ),
    "an empty agent name": (agents(observations={"": agent()}), ["body", "observations", "", "[key]"]),
    "an agent name of 129 characters": (
        agents(observations={"n" * 129: agent()}),
        # A 422 never echoes more than LOC_CHARS of a name back.
        ["body", "observations", "n" * LOC_CHARS + "…", "[key]"],
    ),
    "an empty agent type": (one_agent(agent_type=""), ["body", "observations", "a", "agent_type"]),
    "an agent type of 65 characters": (one_agent(agent_type="t" * 65), ["body", "observations", "a", "agent_type"]),
    "a number as agent type": (one_agent(agent_type=1), ["body", "observations", "a", "agent_type"]),
    "an empty model name": (one_agent(nn_model_name=""), ["body", "observations", "a", "nn_model_name"]),
    "a model name of 129 characters": (
        one_agent(nn_model_name="m" * 129),
        ["body", "observations", "a", "nn_model_name"],
    ),
    "a slash in a model name": (one_agent(nn_model_name="a/b"), ["body", "observations", "a", "nn_model_name"]),
    "a space in a model name": (one_agent(nn_model_name="a b"), ["body", "observations", "a", "nn_model_name"]),
    "a letter outside ASCII in a model name": (
        one_agent(nn_model_name="modèle"),
        ["body", "observations", "a", "nn_model_name"],
    ),
    "no model name": (
        agents(observations={"a": without(agent(), "nn_model_name")}),
        ["body", "observations", "a", "nn_model_name"],
    ),
    "an empty client id": (agents(client_id=""), ["body", "client_id"]),
    "a client id of 129 characters": (agents(client_id="c" * 129), ["body", "client_id"]),
    "no client id": (without(agents(), "client_id"), ["body", "client_id"]),
    "an empty run slug": (agents(run_slug=""), ["body", "run_slug"]),
    "a run slug of 129 characters": (agents(run_slug="r" * 129), ["body", "run_slug"]),
    "no run slug": (without(agents(), "run_slug"), ["body", "run_slug"]),
    "an unknown field in the body": (agents(priority=1), ["body", "priority"]),
    "an unknown field in an agent": (one_agent(weight=1), ["body", "observations", "a", "weight"]),
    "an empty input": ({"input": ""}, ["body", "input"]),
    "an input of 10001 characters": ({"input": "x" * 10_001}, ["body", "input"]),
    "a NUL in the input": ({"input": "a\x00b"}, ["body", "input"]),
    "a number as input": ({"input": 1}, ["body", "input"]),
    "an unknown field beside the input": ({"input": "x", "client_id": "c"}, ["body", "client_id"]),
    "an array body": (b"[]", ["body"]),
    "a string body": (b'"text"', ["body"]),
    "a body that is not JSON": (b"{", ["body"]),
    # The parser keeps the last of repeated keys: without a 422 the first agent would go unanswered.
    "a repeated agent name": (
        b'{"client_id":"c","run_slug":"0","observations":{"a":{"observations":[1],"nn_model_name":"m"},'
        b'"a":{"observations":[2],"nn_model_name":"m"}}}',
        ["body", "observations"],
    ),
    "a repeated key in an agent": (
        b'{"client_id":"c","run_slug":"0","observations":{"a":{"observations":[1],"observations":[2],'
        b'"nn_model_name":"m"}}}',
        ["body", "observations", "a"],
    ),
    "a repeated key in the body": (
        b'{"client_id":"c","client_id":"d","run_slug":"0","observations":{"a":{"observations":[1],"nn_model_name":"m"}}}',
        ["body"],
    ),
    "a repeated input": (b'{"input":"a","input":"b"}', ["body"]),
}


class TestLimits:
    @pytest.mark.parametrize("body", ACCEPTED.values(), ids=ACCEPTED.keys())
    async def test_a_body_at_the_edge_is_answered(self, predict_client: AsyncClient, body: dict[str, Any]) -> None:
        response = await predict_client.post("/predict", json=body)
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(("body", "loc"), REJECTED.values(), ids=REJECTED.keys())
    async def test_a_body_past_the_edge_is_422_naming_the_field_and_nothing_is_sent(
        self, predict_client: AsyncClient, backend: RecordingBackend, body: dict[str, Any] | bytes, loc: list[str | int]
    ) -> None:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = await predict_client.post("/predict", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert loc in [error["loc"] for error in response.json()["detail"]]
        assert backend.calls == []
