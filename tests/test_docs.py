"""/docs and /redoc work without internet: their assets come from the application itself.

The HTML checks run everywhere. The browser checks open the pages in headless chromium
against a real server, whose machine may have no route to any CDN, and look for the
rendered operations; they are skipped when chromium is not installed (scripts/run_tests.sh
installs it when it can).
"""

import contextlib
import html
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import AsyncClient

from tests.test_end_to_end import SERVE, RunningServer, free_port

PAGES = ["/docs", "/redoc"]
# Operations that must show up on both pages (the original service's and an addition's).
EXPECTED_OPERATIONS = [("post", "/notifications/v1/multiple"), ("post", "/add")]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Virtual time runs ahead while the page is idle, so a rendered page is dumped at once.
    "--virtual-time-budget=10000",
]
CHROMIUM_TIMEOUT = 60


class TestDocsHtml:
    @pytest.mark.parametrize("page", PAGES)
    async def test_the_page_references_only_same_origin_urls_that_are_served(
        self, client: AsyncClient, page: str
    ) -> None:
        response = await client.get(page)
        assert response.status_code == 200
        assert "https://" not in response.text
        assert "http://" not in response.text
        references = re.findall(r'(?:src|href)="([^"]*)"', response.text)
        assert references
        for url in references:
            assert url.startswith("/"), url
            assert not url.startswith("//"), url
            assert (await client.get(url)).status_code == 200, url

    async def test_the_oauth2_redirect_page_is_served(self, client: AsyncClient) -> None:
        response = await client.get("/docs/oauth2-redirect")
        assert response.status_code == 200
        assert "oauth2" in response.text


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of Debian's chromium; the browser tests are skipped without it."""
    found = shutil.which("chromium")
    if found is None:
        pytest.skip(
            "chromium not installed: scripts/run_tests.sh installs it when run as root with apt-get "
            "(unless FASTAPI1_INSTALL_BROWSER=0); else `apt-get install chromium`"
        )
    return found


@pytest.fixture(scope="module")
def docs_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server (``python -m fastapi1.serve``) on this run's database for the module."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_READ_URL"}
    env.update(HOST="127.0.0.1", PORT=str(free_port()), WORKERS="1", DATABASE_URL=database_url)
    server = RunningServer(env, tmp_path_factory.mktemp("docs_server") / "server.log", SERVE)
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def openapi(docs_server: RunningServer) -> dict[str, Any]:
    """The server's OpenAPI document, what the pages should render."""
    return dict(httpx.get(f"{docs_server.base_url}/openapi.json").json())


def dump_dom(chromium: str, url: str, profile: Path) -> tuple[str, str]:
    """Load a page in headless chromium and return the DOM after its scripts ran, and the browser's log.

    Args:
        chromium: Path of the chromium executable.
        url: The page to load.
        profile: An empty directory for the browser profile.

    Returns:
        The serialised DOM and what chromium wrote to stderr, without its D-Bus complaints.
    """
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
    # A session of its own, so the zygote, GPU and renderer processes chromium forks are
    # killed with it even when it hangs: no browser outlives the test.
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            dom, log = process.communicate(timeout=CHROMIUM_TIMEOUT)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    # Without a D-Bus (containers, CI) chromium complains on every start; that says nothing about the page.
    return dom, "\n".join(line for line in log.splitlines() if "dbus" not in line)


def all_operations(openapi: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(method, operation) for every operation of the document.

    Args:
        openapi: The OpenAPI document.

    Returns:
        The operations, in the document's order.
    """
    return [(method, operation) for operations in openapi["paths"].values() for method, operation in operations.items()]


def swagger_block_ids(openapi: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, element id) of the block Swagger UI renders for each operation.

    Args:
        openapi: The OpenAPI document; untagged operations go to Swagger UI's "default" tag,
            whitespace in a tag becomes "_" in the id and any other character that is not a
            letter, digit, "_" or "-" is backslash-escaped (Swagger UI's escapeDeepLinkPath: CSS.escape).

    Returns:
        One pair per operation.
    """
    blocks = set()
    for method, operation in all_operations(openapi):
        tag = re.sub(r"([^\w-])", r"\\\1", re.sub(r"\s", "_", operation.get("tags", ["default"])[0]))
        blocks.add((method, f"operations-{tag}-{operation['operationId']}"))
    return blocks


class TestDocsInBrowser:
    def test_swagger_ui_renders_every_operation(
        self, chromium: str, docs_server: RunningServer, openapi: dict[str, Any], tmp_path: Path
    ) -> None:
        dom, log = dump_dom(chromium, f"{docs_server.base_url}/docs", tmp_path)
        # Swagger UI renders each operation as an "opblock" whose summary line carries the path.
        blocks = set(re.findall(r'class="opblock opblock-(\w+)[^"]*" id="([^"]+)"', dom))
        assert blocks == swagger_block_ids(openapi), f"DOM: {dom[-2000:]}\nchromium: {log[-2000:]}"
        for _, path in EXPECTED_OPERATIONS:
            assert f'class="opblock-summary-path" data-path="{path}"' in dom

    def test_redoc_renders_the_operation_headings(
        self, chromium: str, docs_server: RunningServer, openapi: dict[str, Any], tmp_path: Path
    ) -> None:
        dom, log = dump_dom(chromium, f"{docs_server.base_url}/redoc", tmp_path)
        # ReDoc gives each operation an <h2> with an anchor to "#tag/<tag>/operation/<operationId>".
        headings = dict(re.findall(r'<h2[^>]*><a[^>]*href="#[^"]*operation/([^"]+)"[^>]*></a>([^<]*)</h2>', dom))
        assert set(headings) == {operation["operationId"] for _, operation in all_operations(openapi)}, (
            f"DOM: {dom[-2000:]}\nchromium: {log[-2000:]}"
        )
        for method, path in EXPECTED_OPERATIONS:
            operation = openapi["paths"][path][method]
            assert html.unescape(headings[operation["operationId"]]).strip() == operation["summary"]
