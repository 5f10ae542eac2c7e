"""The delivery worker of the benchmark: ``python -m fastapi1.worker`` with every accepted send counted.

The benchmark cannot see a provider's sends in the database: a guarded transition stores
``delivered`` once however many times a notification went out. So this runs the real worker
(:func:`fastapi1.worker.main.run`, the configured providers, the same settings from the
environment) with each provider wrapped: every send the provider accepted appends the
notification's 16-byte id to a file with one ``write`` (O_APPEND, so the kernel has it even if
the process is killed). The benchmark then counts sends per id.

    python scripts/bench_worker.py --sends /tmp/sends.bin
"""

from __future__ import annotations

import argparse
import logging.config
import os
import sys
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi1.config import DeliverySettings, Settings  # noqa: E402
from fastapi1.delivery.providers import Message, Provider, Providers, configured_providers  # noqa: E402
from fastapi1.worker.main import run  # noqa: E402


class CountingProvider:
    """A provider that records each message it accepted, by id, in an append-only file."""

    def __init__(self, inner: Provider, fd: int) -> None:
        """Wrap ``inner``.

        Args:
            inner: The real provider.
            fd: An O_APPEND file descriptor.
        """
        self.inner = inner
        self.fd = fd

    async def send(self, message: Message) -> None:
        """Send through the real provider, then record the id (only when it accepted).

        Args:
            message: The message.
        """
        await self.inner.send(message)
        os.write(self.fd, message.id.bytes)


def counted(providers: Providers, fd: int) -> Providers:
    """The same providers, each counting its accepted sends into ``fd``.

    Args:
        providers: The configured providers.
        fd: Where ids go.
    """
    return Providers(
        email=CountingProvider(providers.email, fd),
        sms=CountingProvider(providers.sms, fd),
        simulator=CountingProvider(providers.simulator, fd),
    )


def main() -> None:
    """Run the worker until SIGTERM, counting sends into ``--sends``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sends", required=True, help="file the accepted sends' ids are appended to")
    arguments = parser.parse_args()
    settings = Settings()
    delivery = DeliverySettings()
    logging.config.fileConfig(settings.log_config, disable_existing_loggers=False)
    fd = os.open(arguments.sends, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        uvloop.run(run(settings, delivery, None, counted(configured_providers(delivery), fd)))
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
