"""Request bodies of ``/v2``, as GOV.UK Notify's API takes them, and the shapes of its answers for OpenAPI."""

import uuid
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from fastapi1.models.notifications import (
    PERSONALIZATION_KEY_MAX,
    PERSONALIZATION_VALUE_MAX,
    RECIPIENT_MAX,
    REFERENCE_MAX,
    UNSUBSCRIBE_URL_MAX,
)
from fastapi1.notifications.schemas import PERSONALIZATION_KEYS_MAX
from fastapi1.recipients import (
    DEFAULT_REGION,
    NOT_DIALLABLE,
    UK_COUNTRY_CODE,
    UK_MOBILE_DIGITS,
    checked_email_address,
    is_uk_mobile,
    parsed_phone_number,
)
from fastapi1.types import NoNul

PersonalisationScalar = str | int | float | bool | None
PLAIN_TYPES = (str, int, float, bool)


def personalisation_text(value: object) -> object:
    """A personalisation value as the text it renders to, as Notify renders it.

    Numbers render as written, nothing as an empty string, and a list of those as one bullet
    point per item; anything else is left for the string check to refuse.

    Args:
        value: The JSON value.
    """
    if isinstance(value, list) and all(isinstance(item, PLAIN_TYPES) or item is None for item in value):
        return "\n".join(f"* {personalisation_text(item)}" for item in value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def reject_oversized(value: str) -> str:
    """Refuse a personalisation value longer than a stored one may be, once rendered to text.

    Args:
        value: The rendered value.

    Returns:
        The value unchanged.

    Raises:
        ValueError: When it is too long.
    """
    if len(value) > PERSONALIZATION_VALUE_MAX:
        raise ValueError(f"is longer than {PERSONALIZATION_VALUE_MAX:,} characters")
    return value


def checked_phone_number(number: str) -> str:
    """A phone number validated as Notify validates it, refused in Notify's words.

    Args:
        number: UK or international, with any spaces, dashes or brackets.

    Returns:
        The number as sent (stored so, as Notify does; its E.164 form is derived where needed).

    Raises:
        ValueError: When it is not a valid phone number.
    """
    try:
        parsed = parsed_phone_number(number)
    except ValueError:
        raise ValueError(phone_number_problem(number)) from None
    if parsed.country_code == UK_COUNTRY_CODE and not is_uk_mobile(parsed):
        # A UK landline is a valid number, but no text message reaches it.
        raise ValueError("Not a UK mobile number")
    return number


# Notify's words for what is wrong with a phone number (its "legacy v2 API" messages).
PARSE_PROBLEMS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "Not a valid country prefix",
    phonenumbers.NumberParseException.TOO_LONG: "Too many digits",
}
LENGTH_PROBLEMS = {
    phonenumbers.ValidationResult.TOO_LONG: "Too many digits",
    phonenumbers.ValidationResult.TOO_SHORT: "Not enough digits",
    phonenumbers.ValidationResult.INVALID_LENGTH: "Not enough digits",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "Not a valid country prefix",
}


def phone_number_problem(number: str) -> str:
    """Notify's message for a number that is not valid.

    Args:
        number: The number as sent.
    """
    if NOT_DIALLABLE.search(number):
        return "Must not contain letters or symbols"
    try:
        parsed = phonenumbers.parse(number, DEFAULT_REGION)
    except phonenumbers.NumberParseException as error:
        return PARSE_PROBLEMS.get(error.error_type, "Not enough digits")
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if parsed.country_code == UK_COUNTRY_CODE and reason not in LENGTH_PROBLEMS:
        return uk_problem(str(parsed.national_number))
    return LENGTH_PROBLEMS.get(reason, "Not a valid phone number")


def uk_problem(national: str) -> str:
    """Notify's message for a UK number of a possible length that is not a mobile one.

    Args:
        national: The number without its country code.
    """
    if national.startswith("7") and len(national) != UK_MOBILE_DIGITS:
        return "Not enough digits" if len(national) < UK_MOBILE_DIGITS else "Too many digits"
    return "Not a UK mobile number"


def check_https(url: str) -> str:
    """Refuse an unsubscribe link that is not an https URL.

    Args:
        url: The link.

    Returns:
        The link unchanged.

    Raises:
        ValueError: When it is not ``https://...``.
    """
    if not url.startswith("https://") or len(url) <= len("https://") or any(char.isspace() for char in url):
        raise ValueError("is not a valid https url")
    return url


PersonalisationValue = Annotated[
    str,
    BeforeValidator(personalisation_text, json_schema_input_type=PersonalisationScalar | list[PersonalisationScalar]),
    AfterValidator(reject_oversized),
    NoNul,
]
PersonalisationKey = Annotated[str, StringConstraints(min_length=1, max_length=PERSONALIZATION_KEY_MAX), NoNul]
Personalisation = Annotated[dict[PersonalisationKey, PersonalisationValue], Field(max_length=PERSONALIZATION_KEYS_MAX)]
Reference = Annotated[str, StringConstraints(max_length=REFERENCE_MAX), NoNul]
EmailAddress = Annotated[
    str, StringConstraints(min_length=1, max_length=RECIPIENT_MAX), NoNul, AfterValidator(checked_email_address)
]
PhoneNumber = Annotated[
    str,
    StringConstraints(min_length=1, max_length=RECIPIENT_MAX),
    NoNul,
    AfterValidator(checked_phone_number),
]
UnsubscribeUrl = Annotated[str, StringConstraints(max_length=UNSUBSCRIBE_URL_MAX), NoNul, AfterValidator(check_https)]


class NotificationRequest(BaseModel):
    """What both kinds of notification take."""

    model_config = ConfigDict(extra="forbid")

    template_id: uuid.UUID
    personalisation: Personalisation | None = Field(
        default=None,
        description="Up to 100 keys of 1-64 characters; values are strings, numbers or lists (bullet points).",
    )
    reference: Reference | None = Field(default=None, description="Your own identifier, up to 1,000 characters.")


class EmailNotificationRequest(NotificationRequest):
    """``POST /v2/notifications/email``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email_address": "amala@example.com",
                    "template_id": "f33517ff-2a88-4f6e-b855-c550268ce08a",
                    "personalisation": {"name": "Amala"},
                }
            ]
        },
    )

    email_address: EmailAddress
    email_reply_to_id: uuid.UUID | None = Field(
        default=None, description="One of the service's reply-to addresses; its default when omitted."
    )
    one_click_unsubscribe_url: UnsubscribeUrl | None = Field(
        default=None, description="An https link, sent as RFC 8058 List-Unsubscribe headers."
    )
    sanitise_content_for: list[PersonalisationKey] | None = Field(
        default=None,
        max_length=PERSONALIZATION_KEYS_MAX,
        description="Personalisation keys whose values have their Markdown escaped, so they show as written.",
    )

    @model_validator(mode="after")
    def sanitised_keys_exist(self) -> "EmailNotificationRequest":
        """Refuse a key to sanitise that the personalisation does not have.

        Returns:
            The request.

        Raises:
            ValueError: When a named key is absent.
        """
        absent = [key for key in self.sanitise_content_for or () if key not in (self.personalisation or {})]
        if absent:
            raise ValueError(f"sanitise_content_for names keys not in personalisation: {', '.join(absent[:5])}")
        return self


class SmsNotificationRequest(NotificationRequest):
    """``POST /v2/notifications/sms``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"phone_number": "07700 900123", "template_id": "f33517ff-2a88-4f6e-b855-c550268ce08a"}]
        },
    )

    phone_number: PhoneNumber
    sms_sender_id: uuid.UUID | None = Field(
        default=None, description="One of the service's text message senders; its default when omitted."
    )


class LetterRequest(BaseModel):
    """``POST /v2/notifications/letter``: accepted as any object, and always refused (no letters here)."""

    model_config = ConfigDict(extra="allow")


class PreviewRequest(BaseModel):
    """``POST /v2/template/{id}/preview``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"personalisation": {"name": "Amala"}}]})

    personalisation: Personalisation


# The answers, documented for OpenAPI (the routes build them as plain dicts).
NotificationType = Literal["email", "sms"]


class TemplateReference(BaseModel):
    """The template and version a notification was rendered from."""

    id: uuid.UUID
    version: int
    uri: str


class NotifyError(BaseModel):
    """One error of a refused request."""

    error: str = Field(description="Notify's error class: ValidationError, BadRequestError, AuthError, ...")
    message: str


class NotifyErrorBody(BaseModel):
    """Every ``/v2`` refusal: the status again, and the errors."""

    status_code: int
    errors: list[NotifyError]


class EmailContent(BaseModel):
    """The e-mail as sent."""

    body: str
    subject: str
    from_email: str
    one_click_unsubscribe_url: str | None


class SmsContent(BaseModel):
    """The text message as sent."""

    body: str
    from_number: str | None


class CreatedNotification(BaseModel):
    """What ``POST /v2/notifications/{email,sms}`` answers."""

    id: uuid.UUID
    reference: str | None
    content: EmailContent | SmsContent
    uri: str
    template: TemplateReference
    scheduled_for: None = None


class NotifyNotification(BaseModel):
    """A notification as ``GET /v2/notifications`` shows it (letter fields always null)."""

    model_config = ConfigDict(extra="allow")

    id: uuid.UUID
    reference: str | None
    email_address: str | None
    phone_number: str | None
    type: NotificationType
    status: str
    template: TemplateReference | None = Field(description="Null for a notification sent without a template (v1).")
    body: str
    subject: str | None
    created_at: str
    created_by_name: str | None
    sent_at: str | None
    completed_at: str | None


class NotificationList(BaseModel):
    """A page of notifications, newest first; ``links.next`` is there whenever the page is not empty."""

    notifications: list[NotifyNotification]
    links: dict[str, str]


class NotifyTemplate(BaseModel):
    """A template at one version."""

    model_config = ConfigDict(extra="allow")

    id: uuid.UUID
    name: str
    type: NotificationType
    created_at: str
    updated_at: str | None
    created_by: str | None
    version: int
    body: str
    subject: str | None


class TemplateList(BaseModel):
    """A service's templates."""

    templates: list[NotifyTemplate]


class TemplatePreview(BaseModel):
    """A template rendered with a personalisation."""

    model_config = ConfigDict(extra="allow")

    id: uuid.UUID
    type: NotificationType
    version: int
    body: str
    subject: str | None


class ReceivedTexts(BaseModel):
    """Text messages received: fastapi1 has no inbound numbers, so none ever are."""

    received_text_messages: list[dict[str, Any]]
    links: dict[str, str]
