"""scripts/install.sh works against a package index that serves nothing but PEP 503 HTML.

The index is built here from files downloaded with pip (Poetry and its plugins, and the
runtime part of poetry.lock) and served on loopback by a server that answers every index
page as ``text/html`` whatever the client asks for (no PEP 691 JSON) and has no per-release
JSON API. install.sh then builds its tools and a runtime environment from that index alone,
with pip's configuration and cache isolated from the machine's.
"""

import html
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.utils import parse_sdist_filename, parse_wheel_filename

from tests.conftest import PROJECT_ROOT

POETRY = PROJECT_ROOT / ".tools" / "poetry" / "bin" / "poetry"
RUNTIME_MODULES = "fastapi, fastapi_offline, uvicorn, uvloop, httptools, gunicorn, sqlalchemy, asyncpg, alembic"
RUNTIME_MODULES += ", pydantic_settings, orjson, pgserver, fastapi1.app"


def project_of(filename: str) -> str:
    """The normalised project name of a wheel or sdist file."""
    if filename.endswith(".whl"):
        return str(parse_wheel_filename(filename)[0])
    return str(parse_sdist_filename(filename)[0])


def simple_index(files: Path) -> dict[str, bytes]:
    """PEP 503 pages by URL path: the project list and one page of links per project."""
    projects: dict[str, list[str]] = {}
    for path in sorted(files.iterdir()):
        projects.setdefault(project_of(path.name), []).append(path.name)
    pages = {"/simple/": "".join(f'<a href="/simple/{name}/">{name}</a>\n' for name in projects)}
    for name, filenames in projects.items():
        links = "".join(f'<a href="/files/{html.escape(file)}">{html.escape(file)}</a>\n' for file in filenames)
        pages[f"/simple/{name}/"] = links
    return {path: f"<!DOCTYPE html><html><body>\n{body}</body></html>".encode() for path, body in pages.items()}


class Pep503Server(ThreadingHTTPServer):
    """Serves the pages and files of a PEP 503 index, nothing else, and records every request."""

    def __init__(self, pages: dict[str, bytes], files: Path) -> None:
        super().__init__(("127.0.0.1", 0), Pep503Handler)
        self.pages, self.files = pages, files
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/simple/"


class Pep503Handler(BaseHTTPRequestHandler):
    server: Pep503Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Accept", "")))
        path = self.path.split("#")[0]
        if path in self.server.pages:
            self.answer(self.server.pages[path], "text/html")  # whatever the Accept header says
        elif path.startswith("/files/") and (self.server.files / path.removeprefix("/files/")).is_file():
            self.answer((self.server.files / path.removeprefix("/files/")).read_bytes(), "application/octet-stream")
        else:
            self.send_error(404)

    def answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


def run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pep503Server]:
    """A loopback PEP 503 index holding exactly what a runtime install needs."""
    scratch = tmp_path_factory.mktemp("pep503")
    files = scratch / "files"
    requirements = scratch / "runtime.txt"
    run([POETRY, "--directory", PROJECT_ROOT, "export", "--format=requirements.txt", "--output", requirements])
    pip_download = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", files]
    run([*pip_download, "--no-deps", "--require-hashes", "--requirement", requirements])
    run([*pip_download, "--requirement", PROJECT_ROOT / "scripts" / "poetry-tools.txt"])
    server = Pep503Server(simple_index(files), files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def isolated_environment(index_url: str, scratch: Path) -> dict[str, str]:
    """The environment of a fresh machine whose only package index is ``index_url``."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("PIP_", "POETRY_"))}
    return environment | {
        "HOME": str(scratch / "home"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": index_url,
        "PIP_CACHE_DIR": str(scratch / "pip-cache"),
        "POETRY_CACHE_DIR": str(scratch / "poetry-cache"),
        "VENV_DIR": str(scratch / "venv"),
        "TOOLS_DIR": str(scratch / "tools"),
        "INSTALL_GROUPS": "",
    }


class TestInstallFromAPep503OnlyIndex:
    def test_install_sh_builds_tools_and_runtime_from_simple_html_alone_then_reuses_them(
        self, index: Pep503Server, tmp_path: Path
    ) -> None:
        environment = isolated_environment(index.url, tmp_path)
        run(["bash", PROJECT_ROOT / "scripts" / "install.sh"], env=environment, cwd=tmp_path)

        venv_python = tmp_path / "venv" / "bin" / "python"
        run([venv_python, "-c", f"import {RUNTIME_MODULES}"], cwd=PROJECT_ROOT, env=environment)
        paths = [path for path, _ in index.requests]
        assert all(re.match(r"/(simple|files)/", path) for path in paths), paths
        assert any(path.startswith("/files/poetry-2") for path in paths)
        assert any(path.startswith("/files/asyncpg-") for path in paths)
        # pip asked for PEP 691 JSON first and coped with the HTML it got.
        assert any("application/vnd.pypi.simple.v1+json" in accept for _, accept in index.requests)

        index.requests.clear()
        again = run(["bash", PROJECT_ROOT / "scripts" / "install.sh"], env=environment, cwd=tmp_path)
        assert index.requests == []
        assert "installing" not in again.stdout
