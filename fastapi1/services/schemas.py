"""Request and response bodies of the services and templates routes."""

import uuid
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from fastapi1.models.notifications import PERSONALIZATION_KEY_MAX
from fastapi1.models.services import SERVICE_NAME_MAX, TEMPLATE_CONTENT_MAX, TEMPLATE_NAME_MAX, TEMPLATE_SUBJECT_MAX
from fastapi1.services import templating
from fastapi1.types import NoNul, TemplateType, Timestamp


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


def check_subject(template_type: TemplateType, subject: str | None) -> None:
    """Refuse a subject on a text message template, and an e-mail template without one.

    Args:
        template_type: The template's type.
        subject: Its subject.

    Raises:
        ValueError: When the two do not go together.
    """
    if template_type == "email" and not subject:
        raise ValueError("an email template needs a subject")
    if template_type == "sms" and subject is not None:
        raise ValueError("an sms template has no subject")


def inferred_type(subject: str | None) -> TemplateType:
    """The type of a template created without one: ``email`` with a subject, ``sms`` without.

    Args:
        subject: The subject, or None.
    """
    return "email" if subject is not None else "sms"


class TemplateCreate(BaseModel):
    """A new template; ``((name))`` marks a placeholder.

    Without ``template_type`` a template is ``email`` when it has a subject and ``sms`` otherwise,
    so that clients from before types existed keep working.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Concert reminder",
                    "template_type": "email",
                    "subject": "((band)) tonight",
                    "content": "Hello ((name)), ((band)) plays tonight. Doors open at 7.",
                }
            ]
        },
    )

    name: TemplateName
    template_type: TemplateType | None = Field(
        default=None, description="`email` (a subject is required) or `sms` (no subject); inferred from the subject."
    )
    # Validated when absent too: an e-mail template without a subject is refused naming the subject.
    subject: TemplateSubject | None = Field(default=None, validate_default=True)
    content: TemplateContent

    @field_validator("subject")
    @classmethod
    def fits_the_type(cls, subject: str | None, info: ValidationInfo) -> str | None:
        """Check the subject goes with the type given, or with the one it implies.

        Args:
            subject: The subject.
            info: The fields validated before it; ``template_type`` is absent when it was refused.
        """
        if "template_type" in info.data:
            check_subject(info.data["template_type"] or inferred_type(subject), subject)
        return subject

    @model_validator(mode="after")
    def typed(self) -> "TemplateCreate":
        """Infer the type from the subject when it is not given.

        Returns:
            The template, typed.
        """
        if self.template_type is None:
            self.template_type = inferred_type(self.subject)
        return self


class TemplateUpdate(BaseModel):
    """A change to a template: the fields given replace the current version's, and make the next version."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"content": "Hello ((name)), doors now open at 8."}]}
    )

    name: TemplateName | None = None
    subject: TemplateSubject | None = None
    content: TemplateContent | None = None

    @model_validator(mode="after")
    def changes_something(self) -> "TemplateUpdate":
        """Refuse a change that names no field.

        Returns:
            The change.

        Raises:
            ValueError: When no field is given.
        """
        if not self.model_fields_set:
            raise ValueError("give at least one of name, subject, content")
        return self


class Template(BaseModel):
    """A template at one version; ``placeholders`` are read from that version's subject and content."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    service_id: uuid.UUID
    name: str
    template_type: TemplateType
    version: int = Field(description="The version shown: the current one unless another was asked for.")
    subject: str | None
    content: str
    created_at: Timestamp
    updated_at: Timestamp = Field(description="When this version was made.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def placeholders(self) -> list[str]:
        """Placeholder names in order of first appearance (subject first)."""
        return templating.placeholders(self.subject, self.content)
