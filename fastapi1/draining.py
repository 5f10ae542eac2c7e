"""The process-wide "draining" flag: set by SIGTERM, read by ``/status/ready``.

Once set, readiness answers 503 so that load balancers (a Kubernetes Service) stop sending
new requests, while the server finishes what it has (see ``fastapi1.shutdown``). A plain
flag, not an asyncio object: the signal handler that sets it runs outside any coroutine.
"""

import threading

_DRAINING = threading.Event()


def start_draining() -> None:
    """Mark this process as shutting down, for good."""
    _DRAINING.set()


def is_draining() -> bool:
    """Whether this process is shutting down.

    Returns:
        True once :func:`start_draining` has been called.
    """
    return _DRAINING.is_set()


def reset_draining() -> None:
    """Clear the flag (tests only: a real process never stops draining)."""
    _DRAINING.clear()
