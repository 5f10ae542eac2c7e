"""Typed settings: every knob of the service, read from the environment once."""

import os
from pathlib import Path
from typing import Annotated, cast

from fastapi import Depends, Request
from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

ASYNC_DRIVER = "postgresql+asyncpg"
_ACCEPTED_SCHEMES = frozenset({"postgres", "postgresql", ASYNC_DRIVER})


def to_async_url(url: str) -> str:
    """Normalise a PostgreSQL URL to the asyncpg driver SQLAlchemy uses.

    Args:
        url: A ``postgres://``, ``postgresql://`` or ``postgresql+asyncpg://`` URL.

    Returns:
        The same URL with the ``postgresql+asyncpg`` scheme, password kept.

    Raises:
        ValueError: When the URL has another scheme.
    """
    parsed: URL = make_url(url)
    if parsed.drivername not in _ACCEPTED_SCHEMES:
        accepted = ", ".join(sorted(f"{scheme}://" for scheme in _ACCEPTED_SCHEMES))
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}; use one of {accepted}")
    return parsed.set(drivername=ASYNC_DRIVER).render_as_string(hide_password=False)


DatabaseUrl = Annotated[str, AfterValidator(to_async_url)]


class Settings(BaseSettings):
    """Configuration of fastapi1; each field is read from the environment variable of its name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    database_url: DatabaseUrl | None = Field(
        default=None, description="Primary database; unset starts the embedded PostgreSQL."
    )
    database_read_url: DatabaseUrl | None = Field(
        default=None, description="Read replica for GET routes; unset reads from the primary."
    )
    embedded_data_dir: Path = Field(
        default=Path(".data/postgres"), description="Data directory of the embedded PostgreSQL."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="Worker processes serving HTTP.")
    log_config: Path = Field(default=Path("log.ini"), description="logging.config.fileConfig file.")

    db_pool_size: int = Field(default=10, ge=1, description="Connections kept open per engine and worker.")
    db_max_overflow: int = Field(
        default=0, ge=0, description="Extra connections under load; each is closed on return, so churn."
    )
    db_pool_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a pooled connection.")
    db_connect_timeout: float = Field(default=2.0, gt=0, description="Seconds to open a new connection.")
    ready_timeout: float = Field(default=1.5, gt=0, description="Seconds /status/ready waits for the database.")
    compute_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="Processes of the addition pool."
    )


class Limits(BaseSettings):
    """Size limits of request payloads, read once at start-up (``LIMIT_*`` variables).

    They shape the request schemas, which are built when the modules are imported, so
    they are a separate, import-time settings object rather than fields of Settings.
    """

    model_config = SettingsConfigDict(env_prefix="LIMIT_", case_sensitive=False, extra="ignore")

    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="Largest request body (else 413).")
    notifications_per_request: int = Field(default=1_000, ge=1, description="Items of /notifications/v1/multiple.")
    page_size_max: int = Field(default=250, ge=1, description="Largest `limit` of the notification list.")
    add_pairs_max: int = Field(default=100_000, ge=1, description="Pairs in one /add payload.")
    add_numbers_max: int = Field(default=100_000, ge=1, description="Numbers in one /add_numbers payload.")
    rendered_chars: int = Field(
        default=100_000, ge=1, description="Longest rendered subject or body of a notification (else 422)."
    )


LIMITS = Limits()


class DeliverySettings(BaseSettings):
    """The worker's knobs: worker processes, the relay, the providers (``python -m fastapi1.worker``).

    Apart from Settings so that only the worker holds the SMTP credentials; the database
    comes from Settings in both kinds of process.
    """

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    worker_processes: int = Field(
        default=1, ge=0, description="Worker processes run_app.sh starts beside the API (0: run them separately)."
    )
    delivery_concurrency: int = Field(default=100, ge=1, description="Deliveries in flight per worker process.")
    delivery_batch_size: int = Field(default=100, ge=1, description="Most notifications claimed per statement.")
    delivery_poll_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between claims when no NOTIFY arrives (NOTIFY wakes at once)."
    )
    delivery_lease_s: float = Field(
        default=60.0, gt=0, description="Seconds a claim holds a notification before another worker may retry it."
    )
    delivery_max_attempts: int = Field(default=5, ge=1, description="Attempts before temporary-failure.")
    delivery_retry_base_s: float = Field(
        default=1.0, ge=0, description="Backoff of the first retry; doubles per attempt, full jitter."
    )
    delivery_shutdown_timeout_s: float = Field(
        default=10.0, ge=0, description="Seconds in-flight deliveries may finish after SIGTERM."
    )
    simulator_delay_ms: int = Field(default=0, ge=0, description="The simulator's delay before it delivers.")
    smtp_host: str | None = Field(
        default=None, description="SMTP server for e-mail; unset sends e-mail to the simulator."
    )
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(default=False, description="Require STARTTLS before authenticating and sending.")
    smtp_from: str = Field(default="notify@fastapi1.localhost", description="Sender address of every e-mail.")
    smtp_timeout_s: float = Field(default=10.0, gt=0, description="Seconds for each SMTP connect and command.")


def get_settings(request: Request) -> Settings:
    """Return the settings the application was created with.

    Args:
        request: The current request.

    Returns:
        The application's settings.
    """
    return cast(Settings, request.app.state.settings)


SettingsDep = Annotated[Settings, Depends(get_settings)]
