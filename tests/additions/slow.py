"""A stand-in for compute.add_pairs that takes long enough to kill its worker mid-request."""

import time
from collections.abc import Sequence


def slow_add_pairs(lefts: Sequence[int], rights: Sequence[int]) -> list[int]:
    """Sleep, then add, so a test can kill the worker while it runs."""
    time.sleep(30)
    return [left + right for left, right in zip(lefts, rights, strict=True)]
