"""What a store of the limits' state does: the Protocol both backends (PostgreSQL, Redis) implement."""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

# Connections of a store per process: two flushers per limit, a release and a pruning at once;
# more callers wait for one (bounded by the store's timeouts).
POOL_SIZE = 6


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The limits a store enforces, and the clock it reads (shifted by ``clock_offset_s`` in tests only)."""

    rate_limit: int
    daily_limit: int
    window_s: float
    clock_offset_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Taken:
    """Requests of one API key admitted for a batch, and when its window has room if some were refused."""

    granted: int
    retry_after_s: float


@dataclass(slots=True)
class Reserved:
    """One service's reservations of a batch, in arrival order: which fit, on which UTC day."""

    admitted: list[bool]
    day: date
    retry_after_s: float


class Store(Protocol):
    """Where the counts live; every method is atomic in the store, whoever else calls it at once."""

    async def take(self, wanted: Mapping[uuid.UUID, int]) -> dict[uuid.UUID, Taken]:
        """Count up to ``wanted[key]`` requests in each API key's sliding window, as many as fit.

        Args:
            wanted: Requests per API key.
        """

    async def reserve(self, asked: Mapping[uuid.UUID, Sequence[int]]) -> dict[uuid.UUID, Reserved]:
        """Add each count to its service's count of today if it fits, in order (all or nothing per count).

        Args:
            asked: Counts per service, in arrival order.
        """

    async def release(self, service_id: uuid.UUID, day: date, count: int) -> None:
        """Give back ``count`` notifications of a reservation made on ``day``.

        Args:
            service_id: The service.
            day: The UTC day the reservation counted on.
            count: How many.
        """

    async def prune(self) -> None:
        """Delete what no longer counts (old days, idle keys' windows)."""
