"""Request and response bodies of the senders' routes."""

import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from fastapi1.models.services import EMAIL_ADDRESS_MAX
from fastapi1.recipients import checked_email_address, checked_sms_sender
from fastapi1.types import NoNul, Timestamp

# Surrounding spaces are dropped (as Notify's form drops them), so a blank sender is refused as empty.
SmsSenderText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=20),
    NoNul,
    AfterValidator(checked_sms_sender),
]
EmailAddress = Annotated[
    str, StringConstraints(min_length=3, max_length=EMAIL_ADDRESS_MAX), NoNul, AfterValidator(checked_email_address)
]


class SmsSenderCreate(BaseModel):
    """A new text message sender: 3 to 11 letters, digits and spaces, or a phone number."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"sms_sender": "GOVUK"}]})

    sms_sender: SmsSenderText
    is_default: bool = Field(default=False, description="Make it the default; a service's first sender always is.")


class SmsSender(BaseModel):
    """A stored text message sender."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    service_id: uuid.UUID
    sms_sender: str
    is_default: bool
    created_at: Timestamp


class EmailReplyToCreate(BaseModel):
    """A new reply-to address for the service's e-mails."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"email_address": "help@example.com"}]})

    email_address: EmailAddress
    is_default: bool = Field(default=False, description="Make it the default; a service's first address always is.")


class EmailReplyTo(BaseModel):
    """A stored reply-to address."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    service_id: uuid.UUID
    email_address: str
    is_default: bool
    created_at: Timestamp
