"""The application factory: lifespan resources, routers and error handlers."""

import asyncio
import contextlib
import gc
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from fastapi1.additions.pool import ComputePool
from fastapi1.additions.views import router as additions_router
from fastapi1.bodies import BodyLimitMiddleware
from fastapi1.config import LIMITS, Settings
from fastapi1.db.embedded import embedded_postgres_async
from fastapi1.db.engine import Database
from fastapi1.docs import install_docs
from fastapi1.errors import install_error_handlers
from fastapi1.logging import RequestLogMiddleware
from fastapi1.notifications.views import router as notifications_router
from fastapi1.services.views import router as services_router
from fastapi1.status.views import router as status_router


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database engines (and the embedded server if needed) and the process pool.

    Everything is closed in reverse order when the application stops.

    Args:
        app: The application whose state receives the resources.

    Yields:
        Control while the application serves.
    """
    settings: Settings = app.state.settings
    async with contextlib.AsyncExitStack() as stack:
        write_url = settings.database_url
        if write_url is None:
            write_url = await stack.enter_async_context(embedded_postgres_async(settings.embedded_data_dir))
        database = Database.connect(write_url, settings.database_read_url, settings)
        stack.push_async_callback(database.dispose)
        app.state.database = database
        pool = ComputePool(settings.compute_workers)
        stack.push_async_callback(asyncio.to_thread, pool.shutdown)
        await pool.warm_up()
        app.state.compute_pool = pool
        # Everything alive now (modules, routes, compiled statements, pools) lives until exit:
        # frozen, the cyclic garbage collector stops re-scanning it on every collection, which
        # under load showed up as latency spikes (p99 of GET by id 130 ms -> 35 ms, same run).
        gc.collect()
        gc.freeze()
        yield


# JSON Schema keywords that FastAPI's OpenAPI models (fastapi/openapi/models.py, Schema) type
# as float: validating the finished document through them turns every integer bound under
# components/schemas into a float, and beyond 2**53 into another number: 2**63 - 1 comes out
# as 9.223372036854776e18, which is 2**63, so a generated client accepts what the server
# rejects. Paths are typed Any there and keep pydantic's exact integers.
# See fastapi/fastapi#3355 and #9517.
NUMERIC_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
# The formats' own ranges: the float FastAPI made of a bound at an end of its format's range
# can only have been that end.
INTEGER_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def exact_integer_bounds(schema: dict[str, Any]) -> None:
    """Give an integer schema's numeric keywords back their integer values, in place.

    Args:
        schema: A JSON schema of ``"type": "integer"``.
    """
    # Without a format there is no range, and nothing to clamp to.
    low, high = INTEGER_RANGES.get(schema.get("format", ""), (-math.inf, math.inf))
    for keyword in NUMERIC_KEYWORDS:
        value = schema.get(keyword)
        if isinstance(value, float) and value.is_integer():
            schema[keyword] = min(max(int(value), low), high)


def exact_integers(node: object) -> None:
    """Apply :func:`exact_integer_bounds` to every integer schema under ``node``.

    Args:
        node: Part of the OpenAPI document.
    """
    if isinstance(node, dict):
        if node.get("type") == "integer":
            exact_integer_bounds(node)
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            exact_integers(item)


class Fastapi1(FastAPI):
    """FastAPI, with an OpenAPI document whose integer bounds are integers."""

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document (built once by FastAPI; corrected in place, which is idempotent).

        Returns:
            The document.
        """
        document = super().openapi()
        exact_integers(document.get("components"))
        return document


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application.

    Args:
        settings: Configuration; read from the environment when omitted.

    Returns:
        The FastAPI application, resources opened by its lifespan.
    """
    app = Fastapi1(
        title="fastapi1",
        summary="Asynchronous notification service on FastAPI and PostgreSQL.",
        version="0.1.0",
        lifespan=lifespan,
        # fastapi1.docs serves these pages with their assets, not from a CDN
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings or Settings()
    # Added first, so it runs inside the request log and every 413 is logged.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=LIMITS.max_body_bytes)
    app.add_middleware(RequestLogMiddleware)
    install_error_handlers(app)
    install_docs(app)
    app.include_router(status_router)
    app.include_router(notifications_router)
    app.include_router(services_router)
    app.include_router(additions_router)
    return app


app = create_app()
