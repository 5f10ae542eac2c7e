"""Request and response bodies of the services and templates routes."""

import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, computed_field

from fastapi1.models.notifications import PERSONALIZATION_KEY_MAX
from fastapi1.models.services import SERVICE_NAME_MAX, TEMPLATE_CONTENT_MAX, TEMPLATE_NAME_MAX, TEMPLATE_SUBJECT_MAX
from fastapi1.services import templating
from fastapi1.types import NoNul, Timestamp


def check_placeholder_names(text: str) -> str:
    """Refuse placeholders that no personalization key could ever fill.

    Args:
        text: Subject or content.

    Returns:
        The text unchanged.

    Raises:
        ValueError: When a placeholder name is longer than a personalization key may be.
    """
    too_long = [name for name in templating.placeholders(text) if len(name) > PERSONALIZATION_KEY_MAX]
    if too_long:
        raise ValueError(f"placeholder names are at most {PERSONALIZATION_KEY_MAX} characters: {too_long[0][:80]}")
    return text


def reject_blank(name: str) -> str:
    """Refuse a name that is only whitespace: it would list and log as nothing.

    Args:
        name: The name to check.

    Returns:
        The name unchanged.

    Raises:
        ValueError: When nothing but whitespace remains.
    """
    if not name.strip():
        raise ValueError("must not be empty or only whitespace")
    return name


ServiceName = Annotated[
    str, StringConstraints(min_length=1, max_length=SERVICE_NAME_MAX), NoNul, AfterValidator(reject_blank)
]
TemplateName = Annotated[
    str, StringConstraints(min_length=1, max_length=TEMPLATE_NAME_MAX), NoNul, AfterValidator(reject_blank)
]
TemplateSubject = Annotated[
    str, StringConstraints(max_length=TEMPLATE_SUBJECT_MAX), NoNul, AfterValidator(check_placeholder_names)
]
TemplateContent = Annotated[
    str,
    StringConstraints(min_length=1, max_length=TEMPLATE_CONTENT_MAX),
    NoNul,
    AfterValidator(check_placeholder_names),
]


class ServiceCreate(BaseModel):
    """A new service."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "Tour announcements"}]})

    name: ServiceName


class Service(BaseModel):
    """A stored service."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: Timestamp
    updated_at: Timestamp


class TemplateCreate(BaseModel):
    """A new template; ``((name))`` marks a placeholder."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Concert reminder",
                    "subject": "((band)) tonight",
                    "content": "Hello ((name)), ((band)) plays tonight. Doors open at 7.",
                }
            ]
        },
    )

    name: TemplateName
    subject: TemplateSubject | None = None
    content: TemplateContent


class Template(BaseModel):
    """A stored template; ``placeholders`` are read from subject and content."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    service_id: uuid.UUID
    name: str
    subject: str | None
    content: str
    created_at: Timestamp
    updated_at: Timestamp

    @computed_field  # type: ignore[prop-decorator]
    @property
    def placeholders(self) -> list[str]:
        """Placeholder names in order of first appearance (subject first)."""
        return templating.placeholders(self.subject, self.content)
