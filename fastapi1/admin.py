"""``python -m fastapi1.admin``: services, keys and tokens from a shell, without hand-made JWTs.

It talks to a running fastapi1 over HTTP (``--url``, default ``http://$HOST:$PORT``) with an
admin token it signs with ADMIN_CLIENT_SECRET, so it works against any deployment whose admin
secret you hold, and goes through the same routes and checks as every other client. Without
ADMIN_CLIENT_SECRET (development) it sends no token, which the admin routes then accept.

    python -m fastapi1.admin create-service "Tour announcements"     # prints the service id
    python -m fastapi1.admin create-key SERVICE_ID normal production  # prints the combined key, once
    python -m fastapi1.admin revoke-key SERVICE_ID KEY_ID
    python -m fastapi1.admin add-guest SERVICE_ID ada@example.com
    python -m fastapi1.admin token                                   # an admin token, for curl
    printf %s "$KEY" | python -m fastapi1.admin token --key -        # a token of a service key
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from fastapi1.auth.tokens import create_token, split_combined_key
from fastapi1.config import Settings, load_settings
from fastapi1.types import KEY_TYPES


def service_token(combined: str) -> str:
    """A token of a service key, as Notify's client libraries make it from the combined key.

    Args:
        combined: ``{name}-{service_id}-{secret}``.

    Raises:
        SystemExit: When the key is not in that form.
    """
    try:
        service_id, secret = split_combined_key(combined)
    except ValueError as error:
        raise SystemExit(f"fastapi1.admin: {error}") from None
    return create_token(secret, service_id)


def read_key(argument: str) -> str:
    """The combined key ``--key`` names: ``-`` reads it from standard input (kept out of ``ps``).

    Args:
        argument: ``--key``'s value.
    """
    return sys.stdin.readline().strip() if argument == "-" else argument


class AdminClient:
    """The admin routes of one fastapi1, each request with a fresh admin token (they last 30 s)."""

    def __init__(self, settings: Settings, url: str) -> None:
        """Keep where and how to call.

        Args:
            settings: ADMIN_CLIENT_ID and ADMIN_CLIENT_SECRET.
            url: The service's base URL.
        """
        self.settings = settings
        self.http = httpx.Client(base_url=url, timeout=10)

    def headers(self) -> dict[str, str]:
        """An admin token, or nothing without ADMIN_CLIENT_SECRET."""
        secret = self.settings.admin_client_secret
        if secret is None:
            return {}
        return {"Authorization": f"Bearer {create_token(secret.get_secret_value(), self.settings.admin_client_id)}"}

    def call(self, method: str, path: str, body: dict[str, str] | None = None) -> Any:
        """Call an admin route.

        Args:
            method: The HTTP method.
            path: The route's path.
            body: The JSON body, if any.

        Returns:
            The JSON answer (None for a 204).

        Raises:
            SystemExit: With the service's message when it refuses.
        """
        try:
            response = self.http.request(method, path, json=body, headers=self.headers())
        except httpx.HTTPError as error:
            raise SystemExit(f"fastapi1.admin: {self.http.base_url} did not answer: {error}") from None
        if response.is_error:
            raise SystemExit(f"fastapi1.admin: {response.status_code} {response.text}")
        return None if response.status_code == 204 else response.json()


def run(client: AdminClient, arguments: argparse.Namespace) -> str:
    """Carry out one command.

    Args:
        client: The admin client.
        arguments: The parsed command line.

    Returns:
        What to print.
    """
    commands: dict[str, Callable[[], str]] = {
        "create-service": lambda: client.call("POST", "/services/v1/", {"name": arguments.name})["id"],
        "create-key": lambda: client.call(
            "POST", f"/services/v1/{arguments.service}/api-keys", {"name": arguments.name, "key_type": arguments.kind}
        )["key"],
        "revoke-key": lambda: (
            client.call("DELETE", f"/services/v1/{arguments.service}/api-keys/{arguments.key}")
            or f"revoked {arguments.key}"
        ),
        "add-guest": lambda: client.call(
            "POST", f"/services/v1/{arguments.service}/guest-list", {"recipient": arguments.recipient}
        )["recipient"],
        "token": lambda: service_token(read_key(arguments.key)) if arguments.key else admin_token(client.settings),
    }
    return commands[arguments.command]()


def admin_token(settings: Settings) -> str:
    """An admin token signed with ADMIN_CLIENT_SECRET.

    Args:
        settings: ADMIN_CLIENT_ID and ADMIN_CLIENT_SECRET.

    Raises:
        SystemExit: When ADMIN_CLIENT_SECRET is unset.
    """
    if settings.admin_client_secret is None:
        raise SystemExit("fastapi1.admin: set ADMIN_CLIENT_SECRET to sign admin tokens")
    return create_token(settings.admin_client_secret.get_secret_value(), settings.admin_client_id)


def parser(settings: Settings) -> argparse.ArgumentParser:
    """The command line.

    Args:
        settings: HOST and PORT give the default URL.
    """
    main = argparse.ArgumentParser(prog="python -m fastapi1.admin", description=__doc__.partition("\n")[0])
    main.add_argument("--url", default=f"http://{settings.host}:{settings.port}", help="fastapi1's base URL")
    commands = main.add_subparsers(dest="command", required=True)
    commands.add_parser("create-service", help="create a service; prints its id").add_argument("name")
    create_key = commands.add_parser("create-key", help="create an API key; prints the combined key, once")
    create_key.add_argument("service")
    create_key.add_argument("kind", choices=KEY_TYPES)
    create_key.add_argument("name")
    revoke = commands.add_parser("revoke-key", help="revoke an API key")
    revoke.add_argument("service")
    revoke.add_argument("key")
    guest = commands.add_parser("add-guest", help="add a recipient to the guest list of team keys")
    guest.add_argument("service")
    guest.add_argument("recipient")
    token = commands.add_parser("token", help="print an admin token (or, with --key, a service token) for curl")
    token.add_argument(
        "--key",
        help="a combined API key, or - to read it from standard input (a key on the command line shows in ps):"
        " print a token of it instead",
    )
    return main


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, carry the command out, print its result.

    Args:
        argv: The arguments (default: the process's).
    """
    settings = load_settings()
    arguments = parser(settings).parse_args(argv)
    print(run(AdminClient(settings, arguments.url), arguments))


if __name__ == "__main__":
    main(sys.argv[1:])
