"""Request and response bodies of the addition routes."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from fastapi1.config import LIMITS
from fastapi1.models.additions import BATCH_ID_MAX
from fastapi1.types import Timestamp

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
BATCH_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"

BatchId = Annotated[str, StringConstraints(min_length=1, max_length=BATCH_ID_MAX, pattern=BATCH_ID_PATTERN)]
# Strict: 1.0, true and "1" are not integers here. The OpenAPI format tells clients to use a
# 64-bit integer type (and lets fastapi1.app restore the exact bounds FastAPI turns to floats).
Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX, json_schema_extra={"format": "int64"})]
Pair = tuple[Int64, Int64]


class AddRequest(BaseModel):
    """Pairs of integers to add, under a client-chosen batch id (the idempotency key)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"batchid": "id0101", "payload": [[1, 2], [3, 4]]}]}
    )

    batchid: BatchId = Field(description="1-64 characters of A-Z a-z 0-9 . _ : -")
    # Empty is a valid batch with an empty response, as the original project's own tests expect.
    payload: Annotated[list[Pair], Field(max_length=LIMITS.add_pairs_max)] = Field(
        description="0-100,000 pairs of signed 64-bit integers."
    )


class AddResponse(BaseModel):
    """The sums of a batch, in payload order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "batchid": "id0101",
                    "response": [3, 7],
                    "status": "complete",
                    "started_at": "2026-11-22T23:06:52.123456+00:00",
                    "completed_at": "2026-11-22T23:06:52.125012+00:00",
                }
            ]
        }
    )

    batchid: str
    response: list[int]
    status: Literal["complete"]
    started_at: Timestamp
    completed_at: Timestamp


class AddNumbersRequest(BaseModel):
    """Integers to sum."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"numbers": [1, 2, 3, 4]}]})

    numbers: Annotated[list[Int64], Field(min_length=1, max_length=LIMITS.add_numbers_max)]


class AddNumbersResponse(BaseModel):
    """The sum of the numbers."""

    sum: int
