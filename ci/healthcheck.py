"""The image's HEALTHCHECK: liveness of whatever process the container runs (PID 1).

The API and the mock backend must answer HTTP (the API's ``/status/heartbeat``, which touches
no dependency, so a database outage never restarts it); the worker and the migration have no
HTTP port, so their container lives as long as their process does.
"""

import os
import sys
import urllib.request
from pathlib import Path

MOCK_BACKEND_PORT = 8001


def probe_url(command: list[str]) -> str | None:
    """The URL that proves the process serves, or None for a process without HTTP.

    Args:
        command: PID 1's command line.

    Returns:
        The URL to GET, or None.
    """
    if "fastapi1.serve" in command:
        return f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/status/heartbeat"
    if "fastapi1.mock_backend" in command:
        port = command[command.index("--port") + 1] if "--port" in command else str(MOCK_BACKEND_PORT)
        return f"http://127.0.0.1:{port}/openapi.json"
    return None


def main() -> int:
    """Exit 0 when the container's process is alive (and serving, where it serves HTTP).

    Returns:
        The exit status.
    """
    command = [part.decode() for part in Path("/proc/1/cmdline").read_bytes().split(b"\0") if part]
    url = probe_url(command)
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a fixed loopback URL)
            return 0 if response.status < 400 else 1
    except OSError as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
