"""Each process keeps the keys of the services that call it for AUTH_KEY_CACHE_S.

So a request costs no database round trip in the steady state, and a revoked key is
refused everywhere within that bound: no message has to reach every process and replica.
Concurrent misses of one service share one lookup (a lookup older than the bound is not
joined), and the cache is bounded: known services in one LRU, ids that name no service in a
smaller one of their own, so a stream of tokens naming random services neither grows it nor
evicts the services that really call.
"""

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi1.auth.schemas import ServiceKeys

Loader = Callable[[], Awaitable[ServiceKeys]]
CACHED_SERVICES_MAX = 10_000
CACHED_UNKNOWN_MAX = 1_000


@dataclass(frozen=True, slots=True)
class Lookup:
    """A lookup in flight and when it started (``time.monotonic()``)."""

    task: "asyncio.Future[ServiceKeys]"
    started_at: float


def bounded_put(entries: OrderedDict[uuid.UUID, ServiceKeys], key: uuid.UUID, entry: ServiceKeys, most: int) -> None:
    """Keep an entry as the most recently used, dropping the least recently used beyond ``most``.

    Args:
        entries: The LRU.
        key: The service id.
        entry: Its keys.
        most: Entries kept at most.
    """
    entries[key] = entry
    entries.move_to_end(key)
    while len(entries) > most:
        entries.popitem(last=False)


class KeyCache:
    """Service keys by service id, each entry trusted for ``ttl_s`` seconds."""

    def __init__(
        self, ttl_s: float, max_services: int = CACHED_SERVICES_MAX, max_unknown: int = CACHED_UNKNOWN_MAX
    ) -> None:
        """Start empty.

        Args:
            ttl_s: Seconds an entry is used before it is looked up again (0: every time).
            max_services: Services kept at most.
            max_unknown: Ids that name no service kept at most.
        """
        self.ttl_s = ttl_s
        self.max_services = max_services
        self.max_unknown = max_unknown
        self.entries: OrderedDict[uuid.UUID, ServiceKeys] = OrderedDict()
        self.unknown: OrderedDict[uuid.UUID, ServiceKeys] = OrderedDict()
        self.loading: dict[uuid.UUID, Lookup] = {}

    def fresh(self, service_id: uuid.UUID, max_age_s: float) -> ServiceKeys | None:
        """The entry of a service if it is younger than ``max_age_s``.

        Args:
            service_id: The service.
            max_age_s: The oldest entry accepted.
        """
        entries = self.entries if service_id in self.entries else self.unknown
        entry = entries.get(service_id)
        if entry is None or time.monotonic() - entry.fetched_at >= max_age_s:
            return None
        entries.move_to_end(service_id)
        return entry

    async def get(self, service_id: uuid.UUID, load: Loader, max_age_s: float | None = None) -> ServiceKeys:
        """The keys of a service, from the cache or loaded (once, however many ask at the same time).

        The lookup runs as a task of its own, so that a caller who goes away (a client that
        disconnects) cancels neither it nor the others waiting for it.

        Args:
            service_id: The service.
            load: Looks them up in the database.
            max_age_s: The oldest entry accepted; the TTL when omitted.
        """
        max_age = self.ttl_s if max_age_s is None else min(max_age_s, self.ttl_s)
        entry = self.fresh(service_id, max_age)
        if entry is not None:
            return entry
        lookup = self.loading.get(service_id)
        if lookup is None or time.monotonic() - lookup.started_at >= max_age:
            lookup = self.loading[service_id] = Lookup(asyncio.ensure_future(load()), time.monotonic())
            lookup.task.add_done_callback(lambda task: self.loaded(service_id, task))
        return await asyncio.shield(lookup.task)

    def loaded(self, service_id: uuid.UUID, task: "asyncio.Future[ServiceKeys]") -> None:
        """Keep what a lookup found, unless :meth:`forget` or a newer lookup overtook it.

        A failed lookup leaves nothing behind: the next request tries again.

        Args:
            service_id: The service.
            task: The finished lookup.
        """
        current = self.loading.get(service_id)
        if current is None or current.task is not task:
            return
        del self.loading[service_id]
        if task.cancelled() or task.exception() is not None:
            return
        self.forget(service_id)
        self.store(service_id, task.result())

    def store(self, service_id: uuid.UUID, entry: ServiceKeys) -> None:
        """Keep an entry as if a lookup had found it.

        Args:
            service_id: The service.
            entry: Its keys.
        """
        if entry.exists:
            bounded_put(self.entries, service_id, entry, self.max_services)
        else:
            bounded_put(self.unknown, service_id, entry, self.max_unknown)

    def forget(self, service_id: uuid.UUID) -> None:
        """Drop a service's entry, and any lookup in flight for it (its keys changed in this process).

        Args:
            service_id: The service.
        """
        self.entries.pop(service_id, None)
        self.unknown.pop(service_id, None)
        self.loading.pop(service_id, None)
