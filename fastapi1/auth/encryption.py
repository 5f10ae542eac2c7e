"""API-key secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under SECRET_KEY, with rotation.

A token is verified with the key's secret itself, so the secret cannot be stored as a one-way
hash; it is encrypted instead. SECRET_KEY is a list: the first key encrypts, every key decrypts,
so a new key is put first and the old one kept until every secret is re-encrypted.
"""

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

# Used when SECRET_KEY is unset, in development only (production refuses to start without it):
# secrets encrypted with a key everyone can read are not secret, and start-up says so.
DEVELOPMENT_SECRET_KEY = "fastapi1-development-only-secret-key-never-use-in-production"  # noqa: S105
_KDF_INFO = b"fastapi1 api-key secrets"


def fernet_key(secret_key: str) -> bytes:
    """A Fernet key derived from one SECRET_KEY entry (HKDF-SHA256), so any long random string serves.

    Args:
        secret_key: One entry of SECRET_KEY.

    Returns:
        The urlsafe base64 of 32 derived bytes, as Fernet takes it.
    """
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(derived)


class UndecryptableSecret(Exception):
    """A stored secret that none of the SECRET_KEY entries decrypts (a key was dropped too early)."""


class SecretBox:
    """Encrypts and decrypts API-key secrets with the SECRET_KEY entries."""

    def __init__(self, secret_keys: Sequence[SecretStr] | None) -> None:
        """Derive a Fernet key from each entry; without any, the development key.

        Args:
            secret_keys: SECRET_KEY's entries, newest first.
        """
        entries = [key.get_secret_value() for key in secret_keys or ()] or [DEVELOPMENT_SECRET_KEY]
        self.fernet = MultiFernet([Fernet(fernet_key(entry)) for entry in entries])

    def encrypt(self, secret: str) -> str:
        """Encrypt with the first key.

        Args:
            secret: The clear secret.

        Returns:
            The Fernet token, ASCII.
        """
        return self.fernet.encrypt(secret.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """Decrypt with whichever key encrypted it.

        Args:
            stored: A Fernet token from :meth:`encrypt`.

        Returns:
            The clear secret.

        Raises:
            UndecryptableSecret: When no key decrypts it.
        """
        try:
            return self.fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret("an API-key secret that no SECRET_KEY entry decrypts") from None

    def rotate(self, stored: str) -> str:
        """Re-encrypt a stored secret with the first key.

        Args:
            stored: A Fernet token made with any of the keys.

        Returns:
            The token under the first key.
        """
        return self.fernet.rotate(stored.encode()).decode()
