"""Request and response bodies of ``/predict``: the agents body (seed 004) and the text body (seed 002).

The agents models keep the original skeleton's names (``AgentRequest``, ``ClientRequest``,
``AgentResponse``, ``ClientResponse``).
"""

import uuid
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Strict, StringConstraints, Tag, TypeAdapter

from fastapi1.config import LIMITS
from fastapi1.types import MODEL_NAME_MAX, ModelName, NoNul

AGENTS_MAX = LIMITS.predict_agents_max
OBSERVATIONS_MAX = LIMITS.predict_observations_max
INPUT_MAX = LIMITS.predict_input_max
NAME_MAX = 128
AGENT_TYPE_MAX = 64

Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX), NoNul]
AgentType = Annotated[str, StringConstraints(min_length=1, max_length=AGENT_TYPE_MAX), NoNul]
# Strict: true and "0.5" are not numbers. allow_inf_nan=False: NaN and Infinity, which Python's
# json accepts, and literals that overflow (1e400) are 422s, never a backend's problem.
Observation = Annotated[float, Strict(), Field(allow_inf_nan=False)]

AGENTS_EXAMPLE: dict[str, Any] = {
    "client_id": "test",
    "run_slug": "0",
    "observations": {
        "test": {"observations": [0.1, 0.2], "agent_type": "lr", "nn_model_name": "foundation-v1"},
    },
}
TEXT_EXAMPLE: dict[str, Any] = {"input": "some text"}


class AgentRequest(BaseModel):
    """One agent's observation vector and the model that acts on it."""

    model_config = ConfigDict(extra="forbid")

    observations: Annotated[list[Observation], Field(min_length=1, max_length=OBSERVATIONS_MAX)] = Field(
        description="1-4,096 finite numbers."
    )
    agent_type: AgentType | None = Field(default=None, description="1-64 characters, or null.")
    nn_model_name: ModelName = Field(description="1-128 characters of A-Z a-z 0-9 . _ : -")


class ClientRequest(BaseModel):
    """A client's agents; each is batched with other clients' agents of the same model."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [AGENTS_EXAMPLE]})

    client_id: Name = Field(description="1-128 characters.")
    run_slug: Name = Field(description="1-128 characters.")
    observations: Annotated[dict[Name, AgentRequest], Field(min_length=1, max_length=AGENTS_MAX)] = Field(
        description="1-1,000 agents by name (1-128 characters)."
    )


class TextRequest(BaseModel):
    """A text for the text model."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TEXT_EXAMPLE]})

    input: Annotated[str, StringConstraints(min_length=1, max_length=INPUT_MAX), NoNul] = Field(
        description="1-10,000 characters."
    )


def body_shape(body: Any) -> str:
    """Tell the two bodies apart: the text body is the object with an ``input``.

    Args:
        body: The parsed JSON body.

    Returns:
        The union tag.
    """
    return "text" if isinstance(body, dict) and "input" in body else "agents"


# The longest a number of 17 significant digits is written (sign and exponent included), and a
# character: one outside the BMP escaped as a surrogate pair (json.dumps' default for an emoji),
# or, in a model name (ASCII only), as \u00XX.
LONGEST_NUMBER = "-1.2345678901234567e-308"
LONGEST_CHARACTER = "\\ud83d\\ude00"
LONGEST_ASCII_CHARACTER = "\\u0041"


def quoted(characters: int, character: str = LONGEST_CHARACTER) -> str:
    """A JSON string of ``characters`` characters, each written as ``character``.

    Args:
        characters: Its length in characters.
        character: How each is written.
    """
    return f'"{character * characters}"'


def largest_agents_body() -> int:
    """Bytes of the largest valid agents body, laid out as json.dumps does (``", "`` and ``": "``)."""
    numbers = len(LONGEST_NUMBER) * OBSERVATIONS_MAX + len(", ") * (OBSERVATIONS_MAX - 1)
    agent = numbers + len(
        f'{quoted(NAME_MAX)}: {{"observations": [], "agent_type": {quoted(AGENT_TYPE_MAX)},'
        f' "nn_model_name": {quoted(MODEL_NAME_MAX, LONGEST_ASCII_CHARACTER)}}}'
    )
    head = len(f'{{"client_id": {quoted(NAME_MAX)}, "run_slug": {quoted(NAME_MAX)}, "observations": {{}}}}')
    return head + AGENTS_MAX * agent + len(", ") * (AGENTS_MAX - 1)


# The byte cap of /predict and /schedule: the largest valid request fits (109,634,123 bytes by
# default, where 49 MB of ordinary doubles were over LIMIT_MAX_BODY_BYTES), and the cap is never
# below the other routes'. A larger body can only be valid with whitespace added.
PREDICTION_BODY_MAX_BYTES = max(LIMITS.max_body_bytes, largest_agents_body(), len(f'{{"input": {quoted(INPUT_MAX)}}}'))

BODY_TAGS = frozenset({"agents", "text"})
PREDICTION_REQUEST: TypeAdapter[ClientRequest | TextRequest] = TypeAdapter(
    Annotated[
        Annotated[ClientRequest, Tag("agents")] | Annotated[TextRequest, Tag("text")],
        Discriminator(body_shape),
    ]
)


class AgentResponse(BaseModel):
    """The backend's action for one agent."""

    action: float


class ClientResponse(BaseModel):
    """Each of the client's agents with its action."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"actions": {"test": {"action": 0.30000000000000004}}, "response_time": 3.41}]}
    )

    actions: dict[str, AgentResponse]
    response_time: float = Field(description="Seconds from receipt of the request to the answer.")


class TextResponse(BaseModel):
    """The text model's result for the input."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"input": "some text", "result": "14372"}]})

    input: str
    result: str


class AgentAction(TypedDict):
    """An action as the route sends it (see :class:`AgentResponse`)."""

    action: float


class ClientAnswer(TypedDict):
    """The agents answer as the route sends it (see :class:`ClientResponse`)."""

    actions: dict[str, AgentAction]
    response_time: float


class TextAnswer(TypedDict):
    """The text answer as the route sends it (see :class:`TextResponse`)."""

    input: str
    result: str


ACCEPTED_MESSAGE = "Request received. Processing asynchronously."


class PredictionAccepted(BaseModel):
    """A stored job (``Async-Mode: true``); its answer is at ``GET /predict/{prediction_id}`` (the ``Location``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"message": ACCEPTED_MESSAGE, "prediction_id": "0b9e5a9e-3f5c-4c8a-9a57-2f0f5d1c1e11"}]
        }
    )

    message: str
    prediction_id: uuid.UUID


class PredictionComplete(BaseModel):
    """A finished job: ``output`` is exactly the body the synchronous call answers."""

    prediction_id: uuid.UUID
    status: Literal["complete"]
    output: ClientResponse | TextResponse = Field(
        description="As the synchronous call's; `response_time` is from the job's receipt to its completion."
    )


class PredictionFailed(BaseModel):
    """A job that failed, and why (``Backend failed: ...``)."""

    prediction_id: uuid.UUID
    status: Literal["failed"]
    error: str


class JobAnswer(TypedDict, total=False):
    """A finished job as the route sends it (see :class:`PredictionComplete`, :class:`PredictionFailed`)."""

    prediction_id: str
    status: str
    output: ClientAnswer | TextAnswer
    error: str
