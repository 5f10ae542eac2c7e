"""Where a receipt may be sent: the SSRF rules of a callback URL, checked when it is set and at every send.

In production a URL must be ``https`` and its host must resolve only to public addresses: a
loopback, private, link-local (the cloud metadata address 169.254.169.254 among them),
multicast, reserved or unspecified address is refused (``CALLBACK_ALLOW_PRIVATE=true`` lifts
the address rule, for tests). The send then connects to an address it checked, never to a
second resolution of the name, so a name that resolves differently the next time (DNS
rebinding) cannot send it elsewhere.
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedUrl(ValueError):
    """A callback URL the rules refuse."""


@dataclass(frozen=True, slots=True)
class UrlRules:
    """What a callback URL must be: ``https`` in production, and public unless private addresses are allowed."""

    https_only: bool
    public_only: bool


@dataclass(frozen=True, slots=True)
class Target:
    """Where a send connects: the URL's host and port, and the addresses it resolved to (checked)."""

    host: str
    port: int
    addresses: tuple[str, ...]


def forbidden(address: IpAddress) -> bool:
    """Whether an address is one a callback may not reach in production.

    Args:
        address: A resolved address (an IPv4-mapped IPv6 address is judged as its IPv4 one).
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def split(url: str, rules: UrlRules) -> tuple[str, int]:
    """The host and port of a callback URL whose form the rules accept.

    Args:
        url: The URL.
        rules: The rules.

    Returns:
        ``(host, port)``.

    Raises:
        RefusedUrl: When it is not an absolute http(s) URL, or not https where that is required.
    """
    parts = urlsplit(url)
    allowed = ("https",) if rules.https_only else ("https", "http")
    if parts.scheme not in allowed:
        raise RefusedUrl("must be an https URL" if rules.https_only else "must be an http or https URL")
    if not parts.hostname:
        raise RefusedUrl("must name a host")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedUrl("has an invalid port") from None
    return parts.hostname, port


async def addresses_of(host: str, port: int) -> tuple[str, ...]:
    """The addresses a host resolves to: itself when it is an address (no lookup), else the resolver's answer.

    Args:
        host: A name or an address.
        port: The port.

    Raises:
        RefusedUrl: When the name does not resolve.
    """
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise RefusedUrl(f"host {host[:100]} does not resolve: {error}") from None
    return tuple(dict.fromkeys(str(info[4][0]) for info in found))


async def resolve(url: str, rules: UrlRules) -> Target:
    """Resolve a callback URL's host, and check every address it resolves to.

    Args:
        url: The URL.
        rules: The rules.

    Returns:
        Where to connect.

    Raises:
        RefusedUrl: When the URL or one of its addresses is refused, or the host does not resolve.
    """
    host, port = split(url, rules)
    addresses = await addresses_of(host, port)
    if rules.public_only:
        for address in addresses:
            if forbidden(ipaddress.ip_address(address.split("%")[0])):
                raise RefusedUrl(f"resolves to {address}, which is not a public address")
    return Target(host, port, addresses)
