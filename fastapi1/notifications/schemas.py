"""Request and response bodies of the notification routes."""

import uuid
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fastapi1.config import LIMITS
from fastapi1.models.notifications import (
    PERSONALIZATION_KEY_MAX,
    PERSONALIZATION_VALUE_MAX,
    RECIPIENT_MAX,
)
from fastapi1.types import NoNul, Timestamp

PERSONALIZATION_KEYS_MAX = 100
MULTIPLE_MAX = LIMITS.notifications_per_request
PAGE_LIMIT_MAX = LIMITS.page_size_max
PAGE_LIMIT_DEFAULT = min(50, PAGE_LIMIT_MAX)

NotificationStatus = Literal[
    "created", "sending", "delivered", "permanent-failure", "temporary-failure", "technical-failure"
]
# What the list's ``status`` filter accepts: a status, or ``failed`` for the three failures (as Notify).
StatusFilter = NotificationStatus | Literal["failed"]
Recipient = Annotated[str, StringConstraints(min_length=1, max_length=RECIPIENT_MAX), NoNul]
PersonalizationKey = Annotated[str, StringConstraints(min_length=1, max_length=PERSONALIZATION_KEY_MAX), NoNul]
PersonalizationValue = Annotated[str, StringConstraints(max_length=PERSONALIZATION_VALUE_MAX), NoNul]
Personalization = Annotated[dict[PersonalizationKey, PersonalizationValue], Field(max_length=PERSONALIZATION_KEYS_MAX)]

SINGLE_EXAMPLE: dict[str, Any] = {"to": "example@gmail.com", "personalization": {"band": "Incubus"}}
MULTIPLE_EXAMPLE: list[dict[str, Any]] = [
    {"to": "example@gmail.com", "personalization": {"band": "Korn"}},
    {"to": "another-example@gmail.com", "personalization": {"band": "Soundgarden"}},
]


class NotificationCreate(BaseModel):
    """A notification to create; with a ``template_id`` the personalization fills its placeholders."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SINGLE_EXAMPLE]})

    to: Recipient = Field(description="Recipient address or number, 1-320 characters (not validated as e-mail).")
    personalization: Personalization | None = Field(
        default=None, description="Up to 100 keys of 1-64 characters; string values of at most 10,000 characters."
    )
    template_id: uuid.UUID | None = Field(default=None, description="Template whose content becomes the body.")


class Notification(BaseModel):
    """A stored notification."""

    id: uuid.UUID
    to: str
    personalization: dict[str, str]
    template_id: uuid.UUID | None
    status: NotificationStatus
    body: str | None = Field(description="Template content rendered with the personalization; null without template.")
    subject: str | None = Field(
        description="Template subject rendered with the personalization; null without template or subject."
    )
    created_at: Timestamp
    updated_at: Timestamp
    sent_at: Timestamp | None = Field(description="When it was first handed to a provider; null until then.")
    completed_at: Timestamp | None = Field(description="When its status became final; null until then.")


class NotificationRecord(TypedDict):
    """A notification as the routes send it: the fields of :class:`Notification`, timestamps as text.

    The hot paths build these plain dicts and serialise them with orjson; ``Notification``
    documents the same shape in OpenAPI, and the tests validate responses against it.
    """

    id: uuid.UUID
    to: str
    personalization: dict[str, str]
    template_id: uuid.UUID | None
    status: str
    body: str | None
    subject: str | None
    created_at: str
    updated_at: str
    sent_at: str | None
    completed_at: str | None


class NotificationPage(BaseModel):
    """One page of notifications, newest first; pass ``next`` as ``older_than`` for the next page."""

    notifications: list[Notification]
    next: uuid.UUID | None
