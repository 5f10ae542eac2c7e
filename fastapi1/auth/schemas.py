"""Who is calling: the service and key a token was verified against, or nobody."""

import uuid
from dataclasses import dataclass

from fastapi1.types import KeyType


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller of a service route: a service's key, or anonymous (development without a token)."""

    service_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None
    key_type: KeyType | None = None

    @property
    def counts_against_limits(self) -> bool:
        """Whether what it sends counts against the service's daily limit (test keys do not)."""
        return self.service_id is not None and self.key_type != "test"


ANONYMOUS = Caller()


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An API key as authentication holds it: its secret decrypted and prepared for HS256."""

    id: uuid.UUID
    key_type: KeyType
    secret: bytes
    revoked: bool


@dataclass(frozen=True, slots=True)
class ServiceKeys:
    """What a process knows of one service's keys, and since when (``time.monotonic()``)."""

    exists: bool
    keys: tuple[StoredKey, ...]
    fetched_at: float
