"""GOV.UK Notify's tokens: HS256 JWTs with ``iss`` and ``iat``, at most 30 s from the server's clock.

PyJWT checks the signature (``hmac.compare_digest``, constant time) with ``alg`` pinned to
HS256, so ``none`` and RS256 are refused before any key is tried. The ``iat`` bound is checked
here, in whole seconds as Notify's own check does, so that the edge falls where Notify's does.
"""

import json
import math
import time
from typing import Any

import jwt
from jwt.types import Options

from fastapi1.errors import Forbidden, Unauthenticated

ALGORITHM = "HS256"
CLOCK_BOUND_S = 30
# Notify's tokens are about 150 characters; a longer one is refused before it is parsed.
TOKEN_MAX_CHARS = 1_024

NO_TOKEN = "Unauthorized: authentication token must be provided"  # noqa: S105 (a message)
NOT_BEARER = "Unauthorized: authentication bearer scheme must be used"
GENERAL_TOKEN_ERROR = (
    "Invalid token: make sure your API token matches the example at "  # noqa: S105 (a message)
    "https://docs.notifications.service.gov.uk/rest-api.html#authorisation-header"
)
NOT_HS256 = "Invalid token: algorithm used is not HS256"
NO_ISSUER = "Invalid token: iss field not provided"
CLOCK_SKEW = "Error: Your system clock must be accurate to within 30 seconds"

_jws = jwt.PyJWS()
_UNVERIFIED: Options = {"verify_signature": False}
# The signature only: iat is checked by check_issued_at, and the token carries no exp, nbf or aud.
_SIGNATURE_ONLY: Options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False}


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    Args:
        authorization: The header's value, if any.

    Returns:
        The token, possibly empty.

    Raises:
        Unauthenticated: Without the header, or with another scheme.
    """
    if not authorization:
        raise Unauthenticated(NO_TOKEN)
    if authorization[:7].title() != "Bearer ":
        raise Unauthenticated(NOT_BEARER)
    return authorization[7:].strip()


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of an HS256 token, read as JSON before its signature is checked.

    PyJWT's own reading would refuse a non-string ``iss`` with a TypeError; its type is for
    the caller to judge.

    Args:
        token: The bearer token.

    Raises:
        Forbidden: When the token is too long, is not a JWT, or is not HS256.
    """
    if len(token) > TOKEN_MAX_CHARS:
        raise Forbidden(GENERAL_TOKEN_ERROR)
    try:
        unverified = _jws.decode_complete(token, options=_UNVERIFIED)
        claims = json.loads(unverified["payload"])
    except (jwt.PyJWTError, ValueError):
        raise Forbidden(GENERAL_TOKEN_ERROR) from None
    if unverified["header"].get("alg") != ALGORITHM:
        raise Forbidden(NOT_HS256)
    if not isinstance(claims, dict):
        raise Forbidden(GENERAL_TOKEN_ERROR)
    return claims


def unverified_issuer(token: str) -> Any:
    """The ``iss`` of a token, read before its signature is checked (it names the key to check it with).

    Args:
        token: The bearer token.

    Returns:
        The claim's value, of whatever JSON type the token gives it.

    Raises:
        Forbidden: When the token is not an HS256 JWT or has no ``iss``.
    """
    claims = unverified_claims(token)
    if "iss" not in claims:
        raise Forbidden(NO_ISSUER)
    return claims["iss"]


def signed_claims(token: str, secret: str) -> dict[str, Any] | None:
    """The claims of a token if ``secret`` signed it.

    Args:
        token: A token that :func:`unverified_issuer` accepted.
        secret: A candidate key's secret.

    Returns:
        The claims, or None when the signature is not this secret's.

    Raises:
        Forbidden: When the token is malformed in a way the unverified read let through.
    """
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=[ALGORITHM], options=_SIGNATURE_ONLY)
    except jwt.InvalidSignatureError:
        return None
    except (jwt.PyJWTError, TypeError, ValueError):
        raise Forbidden(GENERAL_TOKEN_ERROR) from None
    return claims


def check_issued_at(claims: dict[str, Any], now: float | None = None) -> None:
    """Refuse a token issued more than 30 s before or after the server's clock, or without ``iat``.

    Args:
        claims: The verified claims.
        now: The server's clock (epoch seconds); the current time when omitted.

    Raises:
        Forbidden: When ``iat`` is missing, not a number, or out of bounds.
    """
    issued_at = claims.get("iat")
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | float) or not math.isfinite(issued_at):
        raise Forbidden(GENERAL_TOKEN_ERROR)
    seconds = int(time.time() if now is None else now)
    if abs(seconds - int(issued_at)) > CLOCK_BOUND_S:
        raise Forbidden(CLOCK_SKEW)


def create_token(secret: str, issuer: str, now: float | None = None) -> str:
    """A token as Notify's client libraries make it, for the admin command and the tests.

    Args:
        secret: The signing secret (an API key's, or ADMIN_CLIENT_SECRET).
        issuer: The ``iss``: a service id, or ADMIN_CLIENT_ID.
        now: The ``iat`` (epoch seconds); the current time when omitted.

    Returns:
        The JWT.
    """
    issued_at = int(time.time() if now is None else now)
    return jwt.encode({"iss": issuer, "iat": issued_at}, secret, algorithm=ALGORITHM, headers={"typ": "JWT"})
