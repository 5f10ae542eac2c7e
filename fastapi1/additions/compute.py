"""Functions run in the process pool's workers; they must stay picklable and cheap to import.

The additions are pure. :func:`exit_with_owner` is each worker's initializer: it ties the
worker's life to the process that owns the pool.
"""

import contextlib
import operator
import os
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection


def add_pairs(lefts: Sequence[int], rights: Sequence[int]) -> list[int]:
    """Add two equally long columns of integers element-wise.

    Args:
        lefts: First operands.
        rights: Second operands.

    Returns:
        ``lefts[i] + rights[i]`` for every i, in order.
    """
    return list(map(operator.add, lefts, rights))


def add_numbers(numbers: Sequence[int]) -> int:
    """Sum a list of integers.

    Args:
        numbers: The integers.

    Returns:
        Their sum (exact, however large).
    """
    return sum(numbers)


def warm_up() -> None:
    """Do nothing: submitted once per worker at start-up so the first request finds them running."""


def exit_with_owner(owner_alive: Connection) -> None:
    """End this worker as soon as the process that owns the pool is gone, however it died.

    A worker's parent is the forkserver, not the owner, and neither of them notices the
    owner's death: the worker holds the write ends of its own task queue and of the
    forkserver's "alive" pipe, so it would wait for tasks forever and keep the forkserver
    alive with it. The owner holds the only write end of ``owner_alive``; the kernel
    closes it when the owner exits, SIGKILL and OOM kill included, and the blocked read
    then returns end-of-file. Once every worker is gone the forkserver and the resource
    tracker see end-of-file on their own pipes and exit too.

    Args:
        owner_alive: Read end of the owner's pipe; nothing is ever written to it.
    """
    threading.Thread(target=exit_at_eof, args=(owner_alive,), name="owner-watchdog", daemon=True).start()


def exit_at_eof(owner_alive: Connection) -> None:
    """Wait for end-of-file on ``owner_alive``, then exit the process at once.

    ``os._exit`` skips the executor's clean-up, which would only wait on queues nobody reads.

    Args:
        owner_alive: Read end of the owner's pipe.
    """
    with contextlib.suppress(EOFError, OSError):
        owner_alive.recv_bytes()
    os._exit(1)
