"""Request and response bodies of the callback routes."""

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fastapi1.models.callbacks import CALLBACK_URL_MAX
from fastapi1.types import NoNul, Timestamp

# Notify's rule: a bearer token of at least 10 characters.
BEARER_TOKEN_MIN = 10
BEARER_TOKEN_MAX = 1_000


class CallbackCreate(BaseModel):
    """A service's delivery-status callback; a second one replaces the first."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": "https://example.com/notify/receipts", "bearer_token": "a-long-shared-secret"}]
        },
    )

    url: Annotated[str, StringConstraints(min_length=1, max_length=CALLBACK_URL_MAX), NoNul] = Field(
        description="Where receipts are POSTed: https in production, never a private address there."
    )
    bearer_token: Annotated[str, StringConstraints(min_length=BEARER_TOKEN_MIN, max_length=BEARER_TOKEN_MAX), NoNul] = (
        Field(description="Sent as `Authorization: Bearer <token>` with every receipt; stored encrypted.")
    )


class Callback(BaseModel):
    """A stored callback; its bearer token is never shown again."""

    model_config = ConfigDict(from_attributes=True)

    service_id: uuid.UUID
    url: str
    created_at: Timestamp
    updated_at: Timestamp
