"""Real starts: production refuses to run without its secrets; a production server and the admin command."""

import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests import test_end_to_end
from tests.auth.conftest import bearer
from tests.conftest import PROJECT_ROOT, throwaway_database
from tests.test_end_to_end import RunningServer, StartServer

server_env = test_end_to_end.server_env
start_server = test_end_to_end.start_server
ADMIN_SECRET = secrets.token_urlsafe(32)
SECRET_KEY = secrets.token_urlsafe(32)


def start(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", module], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=60, check=False
    )


def admin(server: RunningServer, env: dict[str, str], *arguments: str, stdin: str = "") -> str:
    """Run ``python -m fastapi1.admin`` against the server, ``stdin`` on its standard input; what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "fastapi1.admin", "--url", server.base_url, *arguments],
        cwd=PROJECT_ROOT,
        env=env,
        input=stdin.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


@pytest.fixture
def production_env(server_env: dict[str, str]) -> dict[str, str]:
    return {
        **server_env,
        "ENVIRONMENT": "production",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "ADMIN_CLIENT_SECRET": ADMIN_SECRET,
        "SECRET_KEY": SECRET_KEY,
        "MIGRATE_ON_START": "false",
    }


class TestProductionRefusesToStart:
    @pytest.mark.parametrize("module", ["fastapi1.serve", "fastapi1.worker"])
    @pytest.mark.parametrize(
        ("missing", "message"),
        [
            ("ADMIN_CLIENT_SECRET", "ADMIN_CLIENT_SECRET must be set when AUTH_REQUIRED"),
            ("SECRET_KEY", "SECRET_KEY must be set when ENVIRONMENT=production"),
        ],
    )
    def test_without_a_secret_naming_it(
        self, production_env: dict[str, str], module: str, missing: str, message: str
    ) -> None:
        started = start(module, {key: value for key, value in production_env.items() if key != missing})
        assert started.returncode == 1
        stderr = started.stderr.decode()
        assert message in stderr
        assert ADMIN_SECRET not in stderr
        assert SECRET_KEY not in stderr

    def test_with_auth_required_false(self, production_env: dict[str, str]) -> None:
        started = start("fastapi1.serve", {**production_env, "AUTH_REQUIRED": "false"})
        assert started.returncode == 1
        assert "AUTH_REQUIRED cannot be false when ENVIRONMENT=production" in started.stderr.decode()

    @pytest.mark.parametrize("variable", ["ADMIN_CLIENT_SECRET", "SECRET_KEY"])
    def test_with_a_short_secret(self, production_env: dict[str, str], variable: str) -> None:
        started = start("fastapi1.serve", {**production_env, variable: "too-short"})
        assert started.returncode == 1
        assert f"{variable}" in started.stderr.decode()
        assert "at least 32 characters" in started.stderr.decode()
        assert "too-short" not in started.stderr.decode()


class TestAProductionServer:
    def test_needs_a_token_and_the_admin_command_makes_one(
        self, admin_url: str, production_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        with throwaway_database(admin_url) as url:
            env = {**production_env, "DATABASE_URL": url, "WORKER_PROCESSES": "0"}
            server = start_server(env, tmp_path / "server.log")
            server.wait_until_serving()
            notification = {"to": "ada@example.com"}
            refused = httpx.post(f"{server.base_url}/notifications/v1/", json=notification)
            assert (refused.status_code, refused.headers["www-authenticate"]) == (401, "Bearer")
            assert httpx.post(f"{server.base_url}/services/v1/", json={"name": "x"}).status_code == 401

            service_id = admin(server, env, "create-service", f"service {uuid.uuid4()}")
            key = admin(server, env, "create-key", service_id, "normal", "production")
            assert key.startswith("production-")
            assert key[-73:-37] == service_id
            token = admin(server, env, "token", "--key", key)
            piped = admin(server, env, "token", "--key", "-", stdin=f"{key}\n")  # the key kept out of ps
            assert httpx.get(f"{server.base_url}/notifications/v1/", headers=bearer(piped)).status_code == 200
            created = httpx.post(f"{server.base_url}/notifications/v1/", json=notification, headers=bearer(token))
            assert created.status_code == 201, created.text
            service = httpx.get(
                f"{server.base_url}/services/v1/{service_id}", headers=bearer(admin(server, env, "token"))
            )
            assert service.status_code == 200

            key_id = httpx.get(
                f"{server.base_url}/services/v1/{service_id}/api-keys", headers=bearer(admin(server, env, "token"))
            ).json()[0]["id"]
            assert admin(server, env, "revoke-key", service_id, key_id) == f"revoked {key_id}"
            revoked = httpx.post(f"{server.base_url}/notifications/v1/", json=notification, headers=bearer(token))
            assert (revoked.status_code, revoked.json()) == (403, {"detail": "Invalid token: API key revoked"})
            assert admin(server, env, "add-guest", service_id, "Ada@Example.com") == "ada@example.com"
            assert server.stop() == 0
            log = server.log()
            assert key[-36:] not in log
            assert "AUTH_REQUIRED is off" not in log

    def test_development_warns_that_it_is_open(
        self, admin_url: str, server_env: dict[str, str], start_server: StartServer, tmp_path: Path
    ) -> None:
        with throwaway_database(admin_url) as url:
            server = start_server({**server_env, "DATABASE_URL": url, "WORKER_PROCESSES": "0"}, tmp_path / "dev.log")
            server.wait_until_serving()
            assert httpx.post(f"{server.base_url}/services/v1/", json={"name": "open"}).status_code == 201
            assert server.stop() == 0
            log = server.log()
            assert "AUTH_REQUIRED is off (development)" in log
            assert "SECRET_KEY is unset (development)" in log
