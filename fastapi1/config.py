"""Typed settings: every knob of the service, read from the environment once."""

import math
import os
from pathlib import Path
from typing import Annotated, Literal, cast

from fastapi import Depends, Request
from pydantic import AfterValidator, BeforeValidator, Field, HttpUrl, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from fastapi1.types import ModelName

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


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota.

    ``os.cpu_count()`` is the host's count: in a container limited to 2 CPUs on a 64-core
    host it would start 64 pool workers that share 2 CPUs.

    Args:
        cpu_max: The cgroup v2 ``cpu.max`` file (``"max 100000"`` or ``"<quota> <period>"``).

    Returns:
        At least 1.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity mask is the bound
    return max(1, cpus)


def comma_separated(value: object) -> object:
    """Read ``SECRET_KEY=new,old`` as a list; an empty variable as unset.

    Args:
        value: The raw value.
    """
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()] or None
    return value


def long_enough(secret: SecretStr) -> SecretStr:
    """Refuse a secret too short to be random enough (HS256 asks for 32 bytes, RFC 7518 3.2).

    Args:
        secret: The secret.

    Raises:
        ValueError: When it has fewer than SECRET_MIN_CHARS characters.
    """
    if len(secret.get_secret_value()) < SECRET_MIN_CHARS:
        raise ValueError(f"must have at least {SECRET_MIN_CHARS} characters")
    return secret


# 32 characters of secrets.token_urlsafe carry 192 bits.
SECRET_MIN_CHARS = 32
LongSecret = Annotated[SecretStr, AfterValidator(long_enough)]
SecretKeys = Annotated[list[LongSecret] | None, NoDecode, BeforeValidator(comma_separated)]


def empty_as_none(value: object) -> object:
    """Read an empty variable (``BACKEND_URL=`` in a compose file) as unset.

    Args:
        value: The raw value.
    """
    return None if value == "" else value


class Settings(BaseSettings):
    """Configuration of fastapi1; each field is read from the environment variable of its name."""

    # A configuration error never prints the values: some are secrets.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", hide_input_in_errors=True)

    database_url: DatabaseUrl | None = Field(
        default=None, description="Primary database; unset starts the embedded PostgreSQL."
    )
    database_read_url: DatabaseUrl | None = Field(
        default=None, description="Read replica for GET routes; unset reads from the primary."
    )
    embedded_data_dir: Path = Field(
        default=Path(".data/postgres"), description="Data directory of the embedded PostgreSQL."
    )
    environment: Literal["development", "production"] = Field(
        default="development",
        description="development or production; production refuses to start without DATABASE_URL.",
    )
    migrate_on_start: bool = Field(
        default=True, description="Migrate to head at start-up; false where a release job migrates."
    )
    shutdown_timeout_s: float = Field(
        default=30.0, ge=0, description="Seconds in-flight requests may finish after SIGTERM before they are cut."
    )
    shutdown_drain_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds after SIGTERM that the server keeps accepting while /status/ready answers 503.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="Worker processes serving HTTP.")
    log_config: Path = Field(default=Path("log.ini"), description="logging.config.fileConfig file.")
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        description="Directory the instance's processes share their metrics in; emptied at start."
        " Unset: a fresh temporary directory, removed at exit.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="text: the log.ini lines; json: one JSON object per line."
    )
    log_outage_interval_s: float = Field(
        default=10.0, ge=0, description="Seconds between two logged tracebacks of database-outage 503s."
    )

    db_pool_size: int = Field(default=10, ge=1, description="Connections kept open per engine and worker.")
    db_max_overflow: int = Field(
        default=0, ge=0, description="Extra connections under load; each is closed on return, so churn."
    )
    db_pool_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a pooled connection.")
    db_connect_timeout: float = Field(default=2.0, gt=0, description="Seconds to open a new connection.")
    db_statement_timeout_s: float = Field(
        default=10.0, ge=0, description="PostgreSQL statement_timeout of every connection (0: none)."
    )
    db_idle_in_transaction_timeout_s: float = Field(
        default=30.0, ge=0, description="PostgreSQL idle_in_transaction_session_timeout of every connection (0: none)."
    )
    db_command_timeout_s: float = Field(
        default=12.0,
        gt=0,
        description="Client-side bound on each statement (asyncpg command_timeout), for a hung server.",
    )
    db_application_name: str = Field(
        default="fastapi1", max_length=63, description="application_name of every connection (pg_stat_activity)."
    )
    ready_timeout: float = Field(default=1.5, gt=0, description="Seconds /status/ready waits for the database.")
    compute_workers: int = Field(
        default_factory=available_cpus, ge=1, description="Processes of the addition pool (default: usable CPUs)."
    )
    compute_queue_max: int = Field(
        default=64, ge=0, description="Pool requests waiting for a slot at most; beyond, 503 with Retry-After."
    )
    compute_queue_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds a pool request may wait for a slot before its 503."
    )

    http_limit_concurrency: int = Field(
        default=1_000, ge=1, description="Connections or requests per HTTP worker beyond which requests get 503."
    )
    http_keep_alive_s: float = Field(default=5.0, gt=0, description="Seconds an idle keep-alive connection stays open.")
    http_header_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds a client has to send a request's headers once it has begun."
    )
    http_body_timeout_s: float = Field(default=30.0, gt=0, description="Seconds a client has to send a request body.")
    http_max_requests_per_connection: int = Field(
        default=1_000, ge=1, description="Requests on one connection before it is closed (Connection: close)."
    )
    http_max_connection_age_s: float = Field(
        default=60.0, gt=0, description="Seconds after which a connection is closed after its current request."
    )

    batch_max_size: int = Field(default=64, ge=1, description="Rows per backend call; a full group is sent at once.")
    batch_max_wait_ms: float = Field(
        default=20, ge=0, description="Longest wait of a group's oldest row before its batch is sent."
    )
    batch_max_concurrency: int = Field(default=64, ge=1, description="Backend calls in flight at most, per process.")
    batch_max_queue: int = Field(
        default=100_000, ge=1, description="Rows waiting for a batch at most; beyond, requests get 503."
    )
    backend_url: Annotated[HttpUrl | None, BeforeValidator(empty_as_none)] = Field(
        default=None, description="Model server for POST {url}/models/{name}/predict; unset uses the in-process mock."
    )
    backend_timeout_s: float = Field(default=30.0, gt=0, description="Seconds a backend call may take.")
    backend_delay_min_s: float = Field(default=3.0, ge=0, description="Shortest delay of a mock backend call.")
    backend_delay_max_s: float = Field(default=7.0, ge=0, description="Longest delay of a mock backend call.")
    text_model_name: ModelName = Field(default="text-mock", description="Model that answers the text body.")

    broker_url: Annotated[SecretStr | None, BeforeValidator(empty_as_none)] = Field(
        default=None, description="RabbitMQ (amqp://user:password@host:5672/vhost); unset: no broker, PostgreSQL only."
    )
    broker_prefix: str = Field(
        default="fastapi1",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Prefix of every queue and exchange name, so deployments can share a vhost.",
    )
    broker_prefetch: int = Field(default=64, ge=1, description="Unacknowledged messages a consumer holds at most.")
    broker_delivery_limit: int = Field(
        default=5, ge=1, description="Deliveries of one message before it goes to the dead-letter queue."
    )
    broker_publish_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds a publish waits for the broker's confirm (else 503)."
    )
    broker_connect_timeout_s: float = Field(default=5.0, gt=0, description="Seconds to reach the broker at start-up.")
    broker_reply_margin_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds beyond BACKEND_TIMEOUT_S an API process waits for a worker's answer (else 504).",
    )

    auth_required: bool | None = Field(
        default=None,
        description="Refuse requests without a token; unset: true in production, false in development.",
    )
    admin_client_id: str = Field(
        default="fastapi1-admin", min_length=1, max_length=255, description="The `iss` of admin tokens."
    )
    admin_client_secret: Annotated[LongSecret | None, BeforeValidator(empty_as_none)] = Field(
        default=None, description="Signs admin tokens (HS256); required when AUTH_REQUIRED."
    )
    secret_key: SecretKeys = Field(
        default=None,
        description="Encrypts API-key secrets at rest: comma-separated keys, the first encrypts, all decrypt"
        " (rotation); required in production.",
    )
    auth_key_cache_s: float = Field(
        default=2.0, ge=0, description="Seconds a process keeps a service's API keys; a revoked key stops within it."
    )
    callback_allow_private: bool = Field(
        default=False,
        description="In production, let a callback URL resolve to a loopback, private or link-local address (tests).",
    )
    rate_limit_per_minute: int = Field(default=3_000, ge=1, description="Requests per API key per sliding 60 s.")
    service_daily_limit: int = Field(
        default=250_000, ge=1, description="Notifications per service per UTC day (test keys do not count)."
    )
    redis_url: Annotated[SecretStr | None, BeforeValidator(empty_as_none)] = Field(
        default=None, description="Redis for the limits (redis://host:6379/0); unset keeps them in PostgreSQL."
    )
    redis_prefix: str = Field(
        default="fastapi1",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Prefix of every Redis key, so deployments and test runs can share a Redis.",
    )
    redis_timeout_s: float = Field(
        default=1.0, gt=0, description="Seconds a limits call to Redis may take, connecting included (else 503)."
    )

    @property
    def requires_auth(self) -> bool:
        """Whether every request needs a token: AUTH_REQUIRED, or by default ENVIRONMENT=production."""
        return self.environment == "production" if self.auth_required is None else self.auth_required

    @model_validator(mode="after")
    def check_production_database(self) -> "Settings":
        """Refuse to fall back to the embedded database in production.

        Raises:
            ValueError: When ENVIRONMENT=production and DATABASE_URL is unset.
        """
        if self.environment == "production" and self.database_url is None:
            raise ValueError(
                "DATABASE_URL must be set when ENVIRONMENT=production (the embedded PostgreSQL is for development only)"
            )
        return self

    @model_validator(mode="after")
    def check_mock_delays(self) -> "Settings":
        """Refuse a mock delay range whose minimum exceeds its maximum.

        Raises:
            ValueError: When BACKEND_DELAY_MIN_S > BACKEND_DELAY_MAX_S.
        """
        if self.backend_delay_min_s > self.backend_delay_max_s:
            raise ValueError("BACKEND_DELAY_MIN_S must not exceed BACKEND_DELAY_MAX_S")
        return self

    @model_validator(mode="after")
    def check_queue_holds_a_request(self) -> "Settings":
        """Refuse a prediction queue smaller than the largest request, which could never be admitted.

        Raises:
            ValueError: When BATCH_MAX_QUEUE < LIMIT_PREDICT_AGENTS_MAX.
        """
        if self.batch_max_queue < LIMITS.predict_agents_max:
            raise ValueError(
                f"BATCH_MAX_QUEUE ({self.batch_max_queue}) must hold the largest request"
                f" (LIMIT_PREDICT_AGENTS_MAX = {LIMITS.predict_agents_max} rows), or such a request gets 503 for ever"
            )
        return self

    @model_validator(mode="after")
    def check_production_secrets(self) -> "Settings":
        """Refuse to run in production without authentication and its two secrets.

        Raises:
            ValueError: When ENVIRONMENT=production turns AUTH_REQUIRED off or lacks a secret,
                or AUTH_REQUIRED is on without ADMIN_CLIENT_SECRET.
        """
        production = self.environment == "production"
        if production and self.auth_required is False:
            raise ValueError("AUTH_REQUIRED cannot be false when ENVIRONMENT=production")
        if self.requires_auth and self.admin_client_secret is None:
            raise ValueError("ADMIN_CLIENT_SECRET must be set when AUTH_REQUIRED (always in production)")
        if production and self.secret_key is None:
            raise ValueError("SECRET_KEY must be set when ENVIRONMENT=production (it encrypts the API keys)")
        return self


def load_settings() -> Settings:
    """Read the settings, turning a configuration error into a one-line exit.

    Returns:
        The settings.

    Raises:
        SystemExit: With the validation message (status 1) when the configuration is invalid,
            for example ENVIRONMENT=production without DATABASE_URL.
    """
    try:
        return Settings()
    except ValidationError as error:
        raise SystemExit(f"fastapi1: invalid configuration: {configuration_problems(error)}") from None


def configuration_problems(error: ValidationError) -> str:
    """The problems of a configuration, one per line, without the values (they may be secrets).

    Args:
        error: What validating the settings raised.
    """
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    return "; ".join(
        f"{'.'.join(map(str, problem['loc'])).upper() or 'settings'}: {problem['msg']}" for problem in problems
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
    predict_agents_max: int = Field(default=1_000, ge=1, description="Agents in one /predict request.")
    predict_observations_max: int = Field(default=4_096, ge=1, description="Numbers in one agent's observations.")
    predict_input_max: int = Field(default=10_000, ge=1, description="Characters of a text /predict input.")


LIMITS = Limits()


class DeliverySettings(BaseSettings):
    """The worker's knobs: worker processes, the relay, the providers (``python -m fastapi1.worker``).

    Apart from Settings so that only the worker holds the SMTP credentials; the database
    comes from Settings in both kinds of process.
    """

    # A configuration error never prints the values: some are secrets.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", hide_input_in_errors=True)

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
        default=10.0, ge=0, description="Seconds in-flight deliveries and prediction jobs may finish after SIGTERM."
    )
    prediction_concurrency: int = Field(default=1_000, ge=1, description="Prediction jobs in flight per worker.")
    prediction_claim_size: int = Field(default=100, ge=1, description="Most prediction jobs claimed per statement.")
    prediction_prefetch: int = Field(
        default=10_000,
        ge=1,
        le=65_535,
        description="Synchronous prediction requests a worker takes from the broker at once, to fill its batches.",
    )
    prediction_poll_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between job claims when no NOTIFY arrives (NOTIFY wakes at once)."
    )
    prediction_lease_s: float = Field(
        default=120.0, gt=0, description="Seconds a claim holds a prediction job before another worker may run it."
    )
    prediction_max_attempts: int = Field(
        default=5, ge=1, description="Claims of a job whose workers all stopped mid-job before it fails."
    )
    simulator_delay_ms: int = Field(default=0, ge=0, description="The simulator's delay before it delivers.")
    callback_concurrency: int = Field(default=10, ge=1, description="Delivery receipts being sent per worker at once.")
    callback_batch_size: int = Field(default=100, ge=1, description="Most delivery receipts claimed per statement.")
    callback_max_attempts: int = Field(
        default=5, ge=1, description="Attempts to send a delivery receipt before it is given up (logged)."
    )
    callback_retry_base_s: float = Field(
        default=1.0, ge=0, description="Backoff of a receipt's first retry; doubles per attempt, full jitter."
    )
    callback_retry_max_s: float = Field(
        default=600.0, gt=0, description="Longest wait between two sends of a receipt, whatever the attempt."
    )
    callback_timeout_s: float = Field(
        default=5.0, gt=0, description="Seconds a receiver has to connect, answer and send its whole answer."
    )
    callback_max_response_bytes: int = Field(
        default=65_536, ge=0, description="Bytes of a receiver's answer read at most; the rest is not read."
    )
    callback_lease_s: float = Field(
        default=60.0, gt=0, description="Seconds a claim holds a receipt before another worker may send it."
    )
    callback_poll_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between receipt claims when no NOTIFY arrives (NOTIFY wakes at once)."
    )
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
