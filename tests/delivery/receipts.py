"""What the receipt tests share: a real HTTP receiver on loopback, a service with a callback, the receipt relay."""

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from httpx import AsyncClient
from sqlalchemy import text

from fastapi1.callbacks.relay import ReceiptRelay
from fastapi1.config import Settings
from fastapi1.db.engine import Database
from fastapi1.worker.main import send_receipts_until_stopped
from tests.delivery.conftest import fast_settings

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """An HTTP server that records what it receives and answers as a test tells it to.

    ``mode`` is ``ok`` (200), ``fail`` (500), ``hang`` (never answers), ``endless`` (200 with a
    body that takes 10 s and 12 MiB) or ``redirect`` (302 to ``/elsewhere``); ``fail_first``
    answers 500 to that many requests before following ``mode``.
    """

    port: int
    mode: str = "ok"
    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    attempts: int = 0

    @property
    def url(self) -> str:
        """The receipts' URL."""
        return f"http://127.0.0.1:{self.port}/receipts"

    def by_id(self) -> dict[str, Received]:
        """The receipts received, by notification id (the last one of each)."""
        return {item.body["id"]: item for item in self.received}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """The ASGI application."""
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.attempts += 1
        headers = {key.decode(): value.decode() for key, value in scope["headers"]}
        mode = "fail" if self.attempts <= self.fail_first else self.mode
        if mode == "hang":
            await asyncio.sleep(3600)
        self.received.append(Received(scope["path"], headers, orjson.loads(body) if body else {}))
        await self.answer(mode, send)

    async def answer(self, mode: str, send: Send) -> None:
        """Answer as ``mode`` says."""
        if mode == "redirect":
            await send({"type": "http.response.start", "status": 302, "headers": [(b"location", b"/elsewhere")]})
            await send({"type": "http.response.body", "body": b""})
            return
        status = 500 if mode == "fail" else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        if mode == "endless":
            # Endless for a client: 10 s of 64 KiB chunks, far past any bound and timeout it keeps.
            with contextlib.suppress(Exception):
                for _ in range(200):
                    await send({"type": "http.response.body", "body": b"x" * 65_536, "more_body": True})
                    await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": b"ok"})


async def read_body(receive: Receive) -> bytes:
    """The whole body of a request."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serve the receiver on its port until the block ends."""
    config = uvicorn.Config(receiver, host="127.0.0.1", port=receiver.port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the receiver did not start"
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, 10)


@dataclass(frozen=True)
class CallingService:
    """A service with a key and a callback to a receiver: its notifications send receipts."""

    id: str
    headers: dict[str, str]


async def service_with_callback(api: AsyncClient, url: str, token: str = "a-bearer-token") -> CallingService:
    """A service (development API: no admin token needed), a normal key and a callback to ``url``."""
    from tests.auth.conftest import Key

    service = await api.post("/services/v1/", json={"name": f"calling-{uuid.uuid4()}"})
    service_id = service.json()["id"]
    created = await api.post(f"/services/v1/{service_id}/api-keys", json={"name": "k", "key_type": "normal"})
    assert created.status_code == 201, created.text
    key = Key(uuid.UUID(created.json()["id"]), uuid.UUID(service_id), created.json()["key"])
    callback = await api.post(f"/services/v1/{service_id}/callbacks", json={"url": url, "bearer_token": token})
    assert callback.status_code == 201, callback.text
    return CallingService(service_id, key.headers())


async def send_to(api: AsyncClient, service: CallingService, recipients: list[str]) -> list[str]:
    """One notification per recipient from the service; their ids."""
    body = [{"to": to} for to in recipients]
    response = await api.post("/notifications/v1/multiple", json=body, headers=service.headers)
    assert response.status_code == 201, response.text
    return [item["id"] for item in response.json()]


async def receipt_states(database: Database, ids: list[str]) -> dict[str, tuple[str, int]]:
    """``(state, attempts)`` of the receipts of ``ids`` that exist, by notification id."""
    query = "SELECT notification_id::text AS id, state, attempts FROM delivery_receipts"
    async with database.write_engine.connect() as connection:
        rows = (await connection.execute(text(query))).mappings().all()
    return {row["id"]: (row["state"], row["attempts"]) for row in rows if row["id"] in ids}


@contextlib.asynccontextmanager
async def running_receipts(
    database_url: str, settings: Settings, deliveries: Any = None, **overrides: Any
) -> AsyncIterator[ReceiptRelay]:
    """A receipt relay with its listener, as a worker process runs it, stopped and awaited on exit."""
    database = Database.connect(database_url, None, settings)
    defaults = {"callback_retry_base_s": 0.05, "callback_timeout_s": 1.0, "callback_poll_interval_s": 0.2}
    relay = ReceiptRelay(database, settings, fast_settings(**(defaults | overrides)), deliveries=deliveries)
    task = asyncio.create_task(send_receipts_until_stopped(relay, database_url))
    try:
        yield relay
    finally:
        relay.stop()
        await task
        await database.dispose()


RunReceipts = Callable[..., contextlib.AbstractAsyncContextManager[ReceiptRelay]]
