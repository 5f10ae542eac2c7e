"""Fixtures of the senders' tests: the auth tests' application, with AUTH_REQUIRED on and requests that commit."""

from tests.auth.conftest import (  # noqa: F401 (fixtures)
    auth_app,
    auth_client,
    auth_database_url,
    auth_settings,
)
