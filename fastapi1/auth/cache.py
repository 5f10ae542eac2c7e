"""Each process keeps the keys of the services that call it for AUTH_KEY_CACHE_S.

So a request costs no database round trip in the steady state, and a revoked key is
refused everywhere within that bound: no message has to reach every process and replica.
Concurrent misses of one service share one lookup, and the cache holds a bounded number
of services (least recently used first out), so tokens naming random services cannot grow it.
"""

import asyncio
import functools
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fastapi1.auth.schemas import ServiceKeys

Loader = Callable[[], Awaitable[ServiceKeys]]
CACHED_SERVICES_MAX = 10_000


class KeyCache:
    """Service keys by service id, each entry trusted for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float, max_services: int = CACHED_SERVICES_MAX) -> None:
        """Start empty.

        Args:
            ttl_s: Seconds an entry is used before it is looked up again (0: every time).
            max_services: Entries kept at most.
        """
        self.ttl_s = ttl_s
        self.max_services = max_services
        self.entries: OrderedDict[uuid.UUID, ServiceKeys] = OrderedDict()
        self.loading: dict[uuid.UUID, asyncio.Future[ServiceKeys]] = {}

    def fresh(self, service_id: uuid.UUID, max_age_s: float) -> ServiceKeys | None:
        """The entry of a service if it is younger than ``max_age_s``.

        Args:
            service_id: The service.
            max_age_s: The oldest entry accepted.
        """
        entry = self.entries.get(service_id)
        if entry is None or time.monotonic() - entry.fetched_at >= max_age_s:
            return None
        self.entries.move_to_end(service_id)
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
        entry = self.fresh(service_id, self.ttl_s if max_age_s is None else min(max_age_s, self.ttl_s))
        if entry is not None:
            return entry
        task = self.loading.get(service_id)
        if task is None:
            task = self.loading[service_id] = asyncio.ensure_future(load())
            task.add_done_callback(functools.partial(self.loaded, service_id))
        return await asyncio.shield(task)

    def loaded(self, service_id: uuid.UUID, task: "asyncio.Future[ServiceKeys]") -> None:
        """Keep what a lookup found; a failed lookup leaves nothing behind (the next request tries again).

        Args:
            service_id: The service.
            task: The finished lookup.
        """
        del self.loading[service_id]
        if not task.cancelled() and task.exception() is None:
            self.store(service_id, task.result())

    def store(self, service_id: uuid.UUID, entry: ServiceKeys) -> None:
        """Keep an entry, dropping the least recently used beyond the bound.

        Args:
            service_id: The service.
            entry: Its keys.
        """
        self.entries[service_id] = entry
        self.entries.move_to_end(service_id)
        while len(self.entries) > self.max_services:
            self.entries.popitem(last=False)

    def forget(self, service_id: uuid.UUID) -> None:
        """Drop a service's entry (its keys changed in this process).

        Args:
            service_id: The service.
        """
        self.entries.pop(service_id, None)
