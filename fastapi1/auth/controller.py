"""Who a request comes from: a token checked as GOV.UK Notify checks it, with the messages Notify gives.

The order of the checks is Notify's: the header, the token's form and ``alg``, ``iss``, the
service and its keys, each key's signature, then ``iat`` and revocation of the key that signed it.
Nothing here writes to the database, and a refusal says no more than Notify's message.
"""

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.auth import tokens
from fastapi1.auth.cache import KeyCache
from fastapi1.auth.encryption import SecretBox, UndecryptableSecret
from fastapi1.auth.schemas import ANONYMOUS, Caller, ServiceKeys, StoredKey
from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.errors import Forbidden
from fastapi1.keys import dao as keys_dao
from fastapi1.logging import LogThrottle
from fastapi1.types import KeyType

logger = logging.getLogger("fastapi1")

NOT_A_SERVICE_ID = "Invalid token: service id is not the right data type"
SERVICE_NOT_FOUND = "Invalid token: service not found"
NO_KEYS = "Invalid token: service has no API keys"
KEY_NOT_FOUND = "Invalid token: API key not found"
KEY_REVOKED = "Invalid token: API key revoked"
NOT_ALLOWED = "Unauthorized: not allowed to perform this action"
# Key lookups in flight per process at most.
CONCURRENT_LOOKUPS = 4
UNDECRYPTABLE_LOG_INTERVAL_S = 60.0
# A key revoked less than this long ago is still tried, so its tokens are refused as revoked (Notify's 7 days).
REVOKED_KEYS_TRIED = timedelta(days=7)
# A token that no cached key signed looks the keys up again if they are older than this: a key
# created a moment ago works at once, and bad tokens cost at most a few lookups a second.
RECHECK_AFTER_S = 0.25


def service_id_of(issuer: Any) -> uuid.UUID:
    """The service a token names.

    Args:
        issuer: The token's ``iss``.

    Raises:
        Forbidden: When it is not a service id.
    """
    try:
        return uuid.UUID(issuer)
    except (TypeError, ValueError, AttributeError):
        raise Forbidden(NOT_A_SERVICE_ID) from None


def signing_key(token: tokens.Token, keys: tuple[StoredKey, ...]) -> StoredKey | None:
    """The key whose secret signed the token.

    Args:
        token: The token, read.
        keys: The service's keys.
    """
    for key in keys:
        if token.signed_with(key.secret):
            return key
    return None


class Authenticator:
    """Checks service and admin tokens; one per process, holding the key cache."""

    def __init__(self, settings: Settings, database: Database) -> None:
        """Read what tokens are checked against.

        Args:
            settings: AUTH_REQUIRED, ADMIN_CLIENT_ID/SECRET, SECRET_KEY and AUTH_KEY_CACHE_S.
            database: Where keys are looked up: the primary (a replica could lag behind a revocation).
        """
        self.database = database
        self.required = settings.requires_auth
        self.admin_id = settings.admin_client_id
        secret = settings.admin_client_secret
        self.admin_secret = None if secret is None else tokens.prepared_secret(secret.get_secret_value())
        self.box = SecretBox(settings.secret_key)
        self.cache = KeyCache(settings.auth_key_cache_s)
        self.lookups = asyncio.Semaphore(CONCURRENT_LOOKUPS)
        self.undecryptable = LogThrottle(UNDECRYPTABLE_LOG_INTERVAL_S)

    def anonymous(self, authorization: str | None) -> bool:
        """Whether a request is served without a token: it has none, and none is required.

        Args:
            authorization: The ``Authorization`` header, if any.
        """
        return authorization is None and not self.required

    async def service_caller(self, authorization: str | None) -> Caller:
        """The caller of a service route.

        Args:
            authorization: The ``Authorization`` header, if any.

        Returns:
            The service and key that signed the token; anonymous without a token when auth is not required.

        Raises:
            Unauthenticated: Without a bearer token where one is needed.
            Forbidden: When the token is not a valid token of a service key.
        """
        if self.anonymous(authorization):
            return ANONYMOUS
        token = tokens.read_token(tokens.bearer_token(authorization))
        service_id = service_id_of(token.issuer())
        keys = await self.cache.get(service_id, lambda: self.lookup(service_id))
        key = signing_key(token, keys.keys)
        if key is None and time.monotonic() - keys.fetched_at > RECHECK_AFTER_S:
            keys = await self.cache.get(service_id, lambda: self.lookup(service_id), RECHECK_AFTER_S)
            key = signing_key(token, keys.keys)
        if key is None:
            raise Forbidden(KEY_NOT_FOUND if keys.keys else NO_KEYS if keys.exists else SERVICE_NOT_FOUND)
        tokens.check_issued_at(token.claims)
        if key.revoked:
            raise Forbidden(KEY_REVOKED)
        return Caller(service_id, key.id, key.key_type)

    async def lookup(self, service_id: uuid.UUID) -> ServiceKeys:
        """Look a service's keys up on the primary, a few lookups at a time per process.

        The key cache needs a session of its own (one lookup serves every request waiting for
        it), and the bound keeps a stream of tokens naming unknown services from holding the
        pool's connections.

        Args:
            service_id: The service.
        """
        async with self.lookups, self.database.write_sessions() as session:
            return await self.load_keys(session, service_id)

    def encrypt(self, secret: str) -> str:
        """Encrypt a new key's secret with the first SECRET_KEY.

        Args:
            secret: The clear secret.
        """
        return self.box.encrypt(secret)

    def forget(self, service_id: uuid.UUID) -> None:
        """Look a service's keys up again on its next request (they changed in this process).

        Args:
            service_id: The service.
        """
        self.cache.forget(service_id)

    async def load_keys(self, session: AsyncSession, service_id: uuid.UUID) -> ServiceKeys:
        """Look a service's keys up and decrypt their secrets.

        Args:
            session: A session on the primary.
            service_id: The service.
        """
        fetched_at = time.monotonic()
        rows = await keys_dao.service_keys(session, service_id, datetime.now(UTC) - REVOKED_KEYS_TRIED)
        if rows is None:
            return ServiceKeys(exists=False, keys=(), fetched_at=fetched_at)
        stored = (self.stored_key(service_id, row) for row in rows if row.id is not None)
        keys = [key for key in stored if key is not None]
        return ServiceKeys(exists=True, keys=tuple(keys), fetched_at=fetched_at)

    def stored_key(
        self, service_id: uuid.UUID, row: Row[uuid.UUID, uuid.UUID, str, str, datetime | None]
    ) -> StoredKey | None:
        """A key of a lookup, its secret decrypted; None when no SECRET_KEY decrypts it.

        Args:
            service_id: Its service.
            row: The key's row of :func:`keys_dao.service_keys`.
        """
        try:
            secret = self.box.decrypt(row.secret)
        except UndecryptableSecret:
            # A SECRET_KEY entry was dropped before this key was re-encrypted: the key cannot be used.
            if (held_back := self.undecryptable.admit()) is not None:
                logger.error(
                    "API key %s of service %s: its secret decrypts with no SECRET_KEY (%d more since)",
                    row.id,
                    service_id,
                    held_back,
                )
            return None
        return StoredKey(
            row.id, cast(KeyType, row.key_type), tokens.prepared_secret(secret), row.revoked_at is not None
        )

    def check_admin(self, authorization: str | None) -> None:
        """Let an admin route's request through, or refuse it.

        Args:
            authorization: The ``Authorization`` header, if any.

        Raises:
            Unauthenticated: Without a bearer token where one is needed.
            Forbidden: When the token is not a valid admin token.
        """
        if self.anonymous(authorization):
            return
        token = tokens.read_token(tokens.bearer_token(authorization))
        if token.issuer() != self.admin_id:
            raise Forbidden(NOT_ALLOWED)
        if self.admin_secret is None or not token.signed_with(self.admin_secret):
            raise Forbidden(KEY_NOT_FOUND)
        tokens.check_issued_at(token.claims)
