"""GOV.UK Notify's tokens: HS256 JWTs with ``iss`` and ``iat``, at most 30 s from the server's clock.

A token is read once: its header and claims parsed, ``alg`` pinned to HS256 (so ``none`` and
RS256 are refused before any key is tried), then its signature checked against each candidate
key with PyJWT's HS256 (``hmac.compare_digest``, constant time) over the exact bytes that were
parsed. ``jwt.decode`` would parse the token again for every key it tries and cost several times
as much (79 us against 3 us per key, measured); what it checks beyond the signature, this token
does not carry (``exp``, ``nbf``, ``aud``). ``iat`` is checked in whole seconds, as Notify's own
check does, so that the edge falls where Notify's does.
"""

import binascii
import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from jwt.algorithms import HMACAlgorithm
from jwt.utils import base64url_decode, base64url_encode

from fastapi1.errors import Forbidden, Unauthenticated

ALGORITHM = "HS256"
CLOCK_BOUND_S = 30
# Notify's tokens are about 150 characters; a longer one is refused before it is parsed.
TOKEN_MAX_CHARS = 1_024
HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)
# Three segments of the base64url alphabet, so that nothing outside it reaches the decoder.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")

NO_TOKEN = "Unauthorized: authentication token must be provided"  # noqa: S105 (a message)
NOT_BEARER = "Unauthorized: authentication bearer scheme must be used"
GENERAL_TOKEN_ERROR = (
    "Invalid token: make sure your API token matches the example at "  # noqa: S105 (a message)
    "https://docs.notifications.service.gov.uk/rest-api.html#authorisation-header"
)
NOT_HS256 = "Invalid token: algorithm used is not HS256"
NO_ISSUER = "Invalid token: iss field not provided"
CLOCK_SKEW = "Error: Your system clock must be accurate to within 30 seconds"


@dataclass(frozen=True, slots=True)
class Token:
    """A token read but not yet verified: what its signature covers, the signature, its claims."""

    signing_input: bytes
    signature: bytes
    claims: dict[str, Any]

    def issuer(self) -> Any:
        """The ``iss``, of whatever JSON type the token gives it (it names the key to check it with).

        Raises:
            Forbidden: When there is none.
        """
        if "iss" not in self.claims:
            raise Forbidden(NO_ISSUER)
        return self.claims["iss"]

    def signed_with(self, key: bytes) -> bool:
        """Whether the key's secret made the signature.

        Args:
            key: A secret as :func:`prepared_secret` gives it.
        """
        return HS256.verify(self.signing_input, key, self.signature)


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


def canonical_base64url(segment: bytes) -> bytes:
    """Decode a JWT segment, refusing every spelling but the canonical one (RFC 7515: no padding).

    The standard decoder ignores stray characters and the unused trailing bits, so one token
    would verify in many spellings (GHSA-hxm8-2xgr-2p9m); here it verifies in one.

    Args:
        segment: Characters of the base64url alphabet only (the caller has checked).

    Raises:
        ValueError: When the segment is not the canonical encoding of its bytes.
    """
    decoded = base64url_decode(segment)
    if base64url_encode(decoded) != segment:
        raise ValueError("not canonical base64url")
    return decoded


def read_token(token: str) -> Token:
    """Parse a JWT without trusting it.

    Args:
        token: The bearer token.

    Raises:
        Forbidden: When it is too long, not a JWT, not HS256, or its claims are not an object.
    """
    if len(token) > TOKEN_MAX_CHARS or not TOKEN_SHAPE.fullmatch(token):
        raise Forbidden(GENERAL_TOKEN_ERROR)
    header_part, payload_part, signature_part = token.encode().split(b".")
    try:
        header = orjson.loads(canonical_base64url(header_part))
        claims = orjson.loads(canonical_base64url(payload_part))
        signature = canonical_base64url(signature_part)
    except (binascii.Error, ValueError):
        raise Forbidden(GENERAL_TOKEN_ERROR) from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Forbidden(GENERAL_TOKEN_ERROR)
    if header.get("alg") != ALGORITHM:
        raise Forbidden(NOT_HS256)
    return Token(header_part + b"." + payload_part, signature, claims)


def prepared_secret(secret: str) -> bytes:
    """A key's secret as the HS256 check takes it, prepared once per cached key.

    Args:
        secret: The clear secret.
    """
    return HS256.prepare_key(secret)


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


# A combined key ends with the service id and the secret, both uuids: Notify's clients slice it so.
UUID_CHARS = 36


def combined_key(name: str, service_id: uuid.UUID, secret: str) -> str:
    """The form of an API key that Notify's client libraries take: ``{name}-{service_id}-{secret}``.

    Args:
        name: The key's name.
        service_id: Its service.
        secret: Its secret (a uuid4).
    """
    return f"{name}-{service_id}-{secret}"


def split_combined_key(combined: str) -> tuple[str, str]:
    """The service id and the secret of a combined key, sliced from its end as Notify's clients do.

    Args:
        combined: ``{name}-{service_id}-{secret}``.

    Raises:
        ValueError: When it is too short to be one.
    """
    if len(combined) < 2 * UUID_CHARS + 1:
        raise ValueError("a key is {name}-{service_id}-{secret}")
    return combined[-2 * UUID_CHARS - 1 : -UUID_CHARS - 1], combined[-UUID_CHARS:]


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
