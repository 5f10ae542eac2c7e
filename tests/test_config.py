"""Settings: database URL schemes, defaults, and rejected values."""

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from fastapi1.config import LIMITS, Settings, available_cpus
from fastapi1.shutdown import LIFESPAN_SHUTDOWN_S, gunicorn_graceful_timeout, shutdown_timeout


class TestDatabaseUrl:
    @pytest.mark.parametrize(
        "url",
        [
            "postgresql://user:secret@db.example:5433/notify",
            "postgres://user:secret@db.example:5433/notify",
            "postgresql+asyncpg://user:secret@db.example:5433/notify",
        ],
    )
    def test_each_accepted_scheme_becomes_the_asyncpg_url(self, url: str) -> None:
        settings = Settings(database_url=url)
        assert settings.database_url == "postgresql+asyncpg://user:secret@db.example:5433/notify"

    def test_the_read_url_is_normalised_the_same_way(self) -> None:
        settings = Settings(database_url="postgres://a@h/db", database_read_url="postgres://b@replica/db")
        assert settings.database_read_url == "postgresql+asyncpg://b@replica/db"

    def test_a_unix_socket_url_keeps_its_host_query(self) -> None:
        settings = Settings(database_url="postgresql://postgres:@/postgres?host=/tmp/pg")
        assert settings.database_url == "postgresql+asyncpg://postgres:@/postgres?host=%2Ftmp%2Fpg"

    @pytest.mark.parametrize("url", ["mysql://root@localhost/db", "sqlite:///notify.db", "postgresql+psycopg://a@h/db"])
    def test_other_schemes_are_rejected(self, url: str) -> None:
        with pytest.raises(ValidationError, match="unsupported database URL scheme"):
            Settings(database_url=url)

    def test_the_environment_variable_is_read(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgres://env@h/db")
        assert Settings().database_url == "postgresql+asyncpg://env@h/db"


class TestDefaults:
    def test_defaults_serve_locally_on_the_embedded_database(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("DATABASE_URL", "DATABASE_READ_URL", "HOST", "PORT", "WORKERS"):
            monkeypatch.delenv(name, raising=False)
        settings = Settings()
        assert settings.database_url is None
        assert settings.database_read_url is None
        assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)

    @pytest.mark.parametrize(("name", "value"), [("WORKERS", "0"), ("PORT", "70000"), ("DB_POOL_SIZE", "0")])
    def test_out_of_range_values_are_rejected(self, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()


class TestPredictionSettings:
    def test_defaults_are_the_documented_ones(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("BACKEND_URL", "BATCH_MAX_SIZE", "BATCH_MAX_WAIT_MS", "BACKEND_DELAY_MIN_S", "TEXT_MODEL_NAME"):
            monkeypatch.delenv(name, raising=False)
        settings = Settings()
        assert (settings.batch_max_size, settings.batch_max_wait_ms) == (64, 20)
        assert (settings.batch_max_concurrency, settings.batch_max_queue) == (64, 100_000)
        assert (settings.backend_url, settings.backend_timeout_s) == (None, 30)
        assert (settings.backend_delay_min_s, settings.backend_delay_max_s) == (3, 7)
        assert settings.text_model_name == "text-mock"

    def test_an_empty_backend_url_means_the_in_process_mock(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BACKEND_URL", "")
        assert Settings().backend_url is None

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("BATCH_MAX_SIZE", "0"),
            ("BATCH_MAX_CONCURRENCY", "0"),
            ("BATCH_MAX_QUEUE", "0"),
            ("BATCH_MAX_WAIT_MS", "-1"),
            ("BACKEND_TIMEOUT_S", "0"),
            ("BACKEND_URL", "ftp://models"),
            ("TEXT_MODEL_NAME", "a/b"),
        ],
    )
    def test_out_of_range_values_are_rejected(self, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()

    def test_a_mock_delay_range_upside_down_is_rejected(self) -> None:
        with pytest.raises(ValidationError, match="BACKEND_DELAY_MIN_S must not exceed BACKEND_DELAY_MAX_S"):
            Settings(backend_delay_min_s=2, backend_delay_max_s=1)

    def test_a_prediction_queue_smaller_than_the_largest_request_is_rejected(self) -> None:
        with pytest.raises(ValidationError, match=rf"BATCH_MAX_QUEUE \({LIMITS.predict_agents_max - 1}\) must hold"):
            Settings(batch_max_queue=LIMITS.predict_agents_max - 1)
        assert Settings(batch_max_queue=LIMITS.predict_agents_max).batch_max_queue == LIMITS.predict_agents_max


class TestEnvironment:
    def test_development_is_the_default_and_may_use_the_embedded_database(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("ENVIRONMENT", "DATABASE_URL", "MIGRATE_ON_START"):
            monkeypatch.delenv(name, raising=False)
        settings = Settings()
        assert (settings.environment, settings.database_url, settings.migrate_on_start) == ("development", None, True)

    def test_production_without_database_url_is_an_error_naming_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.setenv("ENVIRONMENT", "production")
        with pytest.raises(ValidationError, match="DATABASE_URL must be set when ENVIRONMENT=production"):
            Settings()

    def test_production_with_database_url_is_accepted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ENVIRONMENT", "production")
        monkeypatch.setenv("DATABASE_URL", "postgres://a@h/db")
        monkeypatch.setenv("MIGRATE_ON_START", "false")
        monkeypatch.setenv("ADMIN_CLIENT_SECRET", "an-admin-secret-" + "s" * 32)
        monkeypatch.setenv("SECRET_KEY", "k" * 32)
        settings = Settings()
        assert (settings.environment, settings.migrate_on_start) == ("production", False)

    def test_an_unknown_environment_is_rejected(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ENVIRONMENT", "staging")
        with pytest.raises(ValidationError, match="environment"):
            Settings()


class TestShutdownSettings:
    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("SHUTDOWN_TIMEOUT_S", "SHUTDOWN_DRAIN_S"):
            monkeypatch.delenv(name, raising=False)
        settings = Settings()
        assert (settings.shutdown_timeout_s, settings.shutdown_drain_s) == (30.0, 0.0)

    def test_gunicorn_waits_for_the_drain_the_requests_and_the_lifespan(self) -> None:
        settings = Settings(shutdown_timeout_s=30, shutdown_drain_s=4.5)
        assert shutdown_timeout(Settings(shutdown_timeout_s=2.5)) == 3
        assert gunicorn_graceful_timeout(settings) == 5 + 30 + LIFESPAN_SHUTDOWN_S  # whole seconds, rounded up


class TestAvailableCpus:
    def test_a_cgroup_quota_caps_the_affinity_mask(self, tmp_path: Path) -> None:
        cpu_max = tmp_path / "cpu.max"
        cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: two processes can use them
        assert available_cpus(cpu_max) == min(2, len(os.sched_getaffinity(0)))
        cpu_max.write_text("50000 100000\n")
        assert available_cpus(cpu_max) == 1

    def test_without_a_quota_the_affinity_mask_counts(self, tmp_path: Path) -> None:
        cpu_max = tmp_path / "cpu.max"
        cpu_max.write_text("max 100000\n")
        assert available_cpus(cpu_max) == len(os.sched_getaffinity(0))
        assert available_cpus(tmp_path / "missing") == len(os.sched_getaffinity(0))

    def test_a_narrower_affinity_mask_is_what_counts(self, tmp_path: Path) -> None:
        allowed = os.sched_getaffinity(0)
        try:
            os.sched_setaffinity(0, {min(allowed)})
            assert available_cpus(tmp_path / "missing") == 1
            assert Settings().compute_workers == 1
        finally:
            os.sched_setaffinity(0, allowed)
