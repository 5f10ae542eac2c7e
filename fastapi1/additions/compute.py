"""Pure functions run in the process pool's workers; they must stay picklable and cheap to import."""

import operator
from collections.abc import Sequence


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
