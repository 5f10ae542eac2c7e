"""Constrained types shared by the request and response schemas."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, PlainSerializer, StringConstraints


def reject_nul(value: str) -> str:
    """Refuse NUL characters, which PostgreSQL text cannot store (JSON may carry ``"\\u0000"``).

    Args:
        value: The string to check.

    Returns:
        The string unchanged.

    Raises:
        ValueError: When the string contains NUL.
    """
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


NoNul = AfterValidator(reject_nul)

# ISO 8601 with a numeric UTC offset and microseconds, e.g. 2026-11-22T23:06:52.123456+00:00
# (pydantic's default writes "Z" and drops zero microseconds).
Timestamp = Annotated[
    datetime, PlainSerializer(lambda value: value.isoformat(timespec="microseconds"), return_type=str, when_used="json")
]

# Model names go into backend URL paths (/models/{name}/predict): characters that need no escaping.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9._:-]+$"
MODEL_NAME_MAX = 128
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=MODEL_NAME_MAX, pattern=MODEL_NAME_PATTERN)]

KeyType = Literal["normal", "team", "test"]
# Notify's key types: normal sends to anyone, team only to the guest list, test to no provider.
KEY_TYPES: tuple[KeyType, ...] = ("normal", "team", "test")

TemplateType = Literal["email", "sms"]
# The channels of a template (and of the notifications sent from it); letters are not sent.
TEMPLATE_TYPES: tuple[TemplateType, ...] = ("email", "sms")
