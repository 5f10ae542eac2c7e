"""Request and response bodies of the API-key and guest-list routes."""

import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from fastapi1.models.keys import KEY_NAME_MAX
from fastapi1.models.notifications import RECIPIENT_MAX
from fastapi1.recipients import normalised_recipient
from fastapi1.services.schemas import reject_blank
from fastapi1.types import KeyType, NoNul, Timestamp

KeyName = Annotated[str, StringConstraints(min_length=1, max_length=KEY_NAME_MAX), NoNul, AfterValidator(reject_blank)]
Recipient = Annotated[
    str, StringConstraints(min_length=1, max_length=RECIPIENT_MAX), NoNul, AfterValidator(normalised_recipient)
]


class ApiKeyCreate(BaseModel):
    """A new API key of a service."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "production", "key_type": "normal"}]}
    )

    name: KeyName
    key_type: KeyType


class ApiKey(BaseModel):
    """A stored key, without its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    key_type: KeyType
    created_at: Timestamp
    revoked_at: Timestamp | None


class ApiKeyCreated(BaseModel):
    """A key just created: ``key`` is the combined form Notify's clients take, shown this once."""

    id: uuid.UUID
    name: str
    key_type: KeyType
    key: str
    created_at: Timestamp


class GuestCreate(BaseModel):
    """An address or phone number a team key may send to."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"recipient": "ada@example.com"}]})

    recipient: Recipient


class Guest(BaseModel):
    """An entry of a service's guest list, its recipient normalised (lower case; phone numbers in E.164)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    recipient: str
    created_at: Timestamp
