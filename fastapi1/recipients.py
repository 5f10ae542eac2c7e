"""Recipients in one canonical form, so that a guest list compares what a person would call equal.

An address (anything with ``@``) is compared without case; a phone number in E.164
(``07700 900 123`` and ``+44 7700 900123`` are one number; UK is assumed without a
country code, as GOV.UK Notify does), read by ``phonenumbers``.
"""

import functools
import re

import email_validator
import phonenumbers

DEFAULT_REGION = "GB"

# GOV.UK Notify's test recipients, numbers in E.164 (as /v2 stores them). Its smoke-test ones
# (delivered) are answered on /v2 without being stored or sent, as Notify does; sent another
# way they go to the simulator and are delivered there. The failing ones never reach a real
# provider either: they fail as Notify's simulator fails them.
SIMULATED_DELIVERED = frozenset(
    {
        "simulate-delivered@notifications.service.gov.uk",
        "simulate-delivered-2@notifications.service.gov.uk",
        "simulate-delivered-3@notifications.service.gov.uk",
        "+447700900000",
        "+447700900111",
        "+447700900222",
    }
)
SIMULATED_PERMANENT = frozenset({"perm-fail@simulator.notify", "+447700900002"})
SIMULATED_TRANSIENT = frozenset({"temp-fail@simulator.notify", "+447700900003"})
UK_COUNTRY_CODE = 44
UK_MOBILE_DIGITS = 10
# What a phone number may be written with besides digits: spaces, brackets, dots, dashes, a plus.
NOT_DIALLABLE = re.compile(r"[^\d\s()+.-]")


def is_email_address(recipient: str) -> bool:
    """Whether a recipient is an e-mail address rather than a phone number (the delivery rule).

    Args:
        recipient: An address or a number.
    """
    return "@" in recipient


def is_uk_mobile(number: phonenumbers.PhoneNumber) -> bool:
    """Whether a number has the shape of a UK mobile (07xxx xxxxxx), as GOV.UK Notify checks it.

    phonenumbers calls the 07700 900xxx range, reserved by Ofcom for drama and used by Notify's
    simulator numbers, invalid.

    Args:
        number: A parsed number.
    """
    national = str(number.national_number)
    return number.country_code == UK_COUNTRY_CODE and len(national) == UK_MOBILE_DIGITS and national.startswith("7")


def parsed_phone_number(number: str) -> phonenumbers.PhoneNumber:
    """A valid phone number, parsed.

    Args:
        number: A UK or international number, with any spaces, dashes or brackets.

    Raises:
        ValueError: When it is not a valid phone number.
    """
    if NOT_DIALLABLE.search(number):
        # phonenumbers reads letters as keypad digits (0770 WWW WWWW): not a number anyone sent.
        raise ValueError("Not a valid phone number")
    try:
        parsed = phonenumbers.parse(number, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise ValueError("Not a valid phone number") from None
    # The cheap shape check first: most numbers sent are UK mobiles, and is_valid_number costs more.
    if not (is_uk_mobile(parsed) or phonenumbers.is_valid_number(parsed)):
        raise ValueError("Not a valid phone number")
    return parsed


def normalised_phone_number(number: str) -> str:
    """A valid phone number in E.164.

    Args:
        number: A UK or international number, with any spaces, dashes or brackets.

    Returns:
        ``+<country code><number>``.
    """
    return phonenumbers.format_number(parsed_phone_number(number), phonenumbers.PhoneNumberFormat.E164)


def normalised_recipient(recipient: str) -> str:
    """The canonical form of an address or a number.

    Args:
        recipient: The address or number as given.

    Raises:
        ValueError: When a number is not a valid phone number.
    """
    stripped = recipient.strip()
    return stripped.lower() if is_email_address(stripped) else normalised_phone_number(stripped)


def is_simulated_delivered(recipient: str) -> bool:
    """Whether a recipient, as sent, is one of Notify's smoke-test recipients.

    Args:
        recipient: An address or a number.
    """
    return guest_list_key(recipient) in SIMULATED_DELIVERED


@functools.lru_cache(maxsize=4_096)
def guest_list_key(recipient: str) -> str | None:
    """The form a recipient is looked up in the guest list by; None when it can match no entry.

    Args:
        recipient: A notification's recipient, as sent.
    """
    try:
        return normalised_recipient(recipient)
    except ValueError:
        return None


def checked_email_address(address: str) -> str:
    """An e-mail address as given, once ``email-validator`` found it well formed (its domain is not looked up).

    Args:
        address: The address.

    Returns:
        The address, surrounding whitespace removed.

    Raises:
        ValueError: When it is not a valid e-mail address (Notify's message).
    """
    stripped = address.strip()
    try:
        email_validator.validate_email(stripped, check_deliverability=False)
    except email_validator.EmailNotValidError:
        raise ValueError("Not a valid email address") from None
    return stripped


# Notify's alphanumeric sender: 3 to 11 letters, digits and spaces (a number is checked as one).
ALPHANUMERIC_SENDER = re.compile(r"[A-Za-z0-9 ]{3,11}")


def checked_sms_sender(sender: str) -> str:
    """A text message sender: a phone number (in E.164) or 3 to 11 letters, digits and spaces.

    Args:
        sender: The sender.

    Returns:
        The sender, a number normalised.

    Raises:
        ValueError: When it is neither.
    """
    if ALPHANUMERIC_SENDER.fullmatch(sender) and not sender.strip().lstrip("+").isdigit():
        return sender
    try:
        return normalised_phone_number(sender)
    except ValueError:
        raise ValueError("must be a phone number or 3 to 11 letters, digits and spaces") from None
