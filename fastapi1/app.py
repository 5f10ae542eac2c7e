"""The application factory: lifespan resources, routers and error handlers."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from fastapi1.additions.pool import ComputePool
from fastapi1.additions.views import router as additions_router
from fastapi1.auth.controller import Authenticator
from fastapi1.bodies import BodyLimitMiddleware
from fastapi1.broker.connection import open_broker
from fastapi1.callbacks.views import router as callbacks_router
from fastapi1.config import LIMITS, DeliverySettings, Settings
from fastapi1.db.embedded import embedded_postgres_async
from fastapi1.db.engine import Database
from fastapi1.docs import install_docs
from fastapi1.errors import install_error_handlers
from fastapi1.http_metrics import HttpMetricsMiddleware
from fastapi1.keys.views import router as keys_router
from fastapi1.limits.limiter import open_limiter
from fastapi1.logging import RequestLogMiddleware, configure_log_format
from fastapi1.notifications.views import router as notifications_router
from fastapi1.openapi import Fastapi1
from fastapi1.predictions.controller import open_gateway
from fastapi1.predictions.views import router as predictions_router
from fastapi1.senders.views import router as senders_router
from fastapi1.services.views import router as services_router
from fastapi1.status.views import metrics_router
from fastapi1.status.views import router as status_router
from fastapi1.v2.views import router as notify_router

logger = logging.getLogger("fastapi1")


def warn_of_open_access(settings: Settings) -> None:
    """Say at start-up what a development configuration leaves open.

    Args:
        settings: The configuration.
    """
    if not settings.requires_auth:
        logger.warning(
            "AUTH_REQUIRED is off (development): requests without a token are served, unscoped by service;"
            " ENVIRONMENT=production turns it on"
        )
    if settings.secret_key is None:
        logger.warning("SECRET_KEY is unset (development): API-key secrets are encrypted with a public key")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database engines (and the embedded server if needed), the process pool, the broker, the gateway.

    Everything is closed in reverse order when the application stops.

    Args:
        app: The application whose state receives the resources.

    Yields:
        Control while the application serves.
    """
    settings: Settings = app.state.settings
    warn_of_open_access(settings)
    async with contextlib.AsyncExitStack() as stack:
        write_url = settings.database_url
        if write_url is None:
            write_url = await stack.enter_async_context(embedded_postgres_async(settings.embedded_data_dir))
        database = Database.connect(write_url, settings.database_read_url, settings)
        stack.push_async_callback(database.dispose)
        app.state.database = database
        app.state.authenticator = Authenticator(settings, database)
        app.state.limiter = await stack.enter_async_context(open_limiter(settings, database))
        pool = ComputePool(settings.compute_workers, settings.compute_queue_max, settings.compute_queue_timeout_s)
        stack.push_async_callback(asyncio.to_thread, pool.shutdown)
        await pool.warm_up()
        app.state.compute_pool = pool
        # With a broker the API does not batch: the worker processes do, with every API process's rows.
        broker = await stack.enter_async_context(open_broker(settings)) if settings.broker_url is not None else None
        app.state.gateway = await stack.enter_async_context(open_gateway(settings, broker))
        # Everything alive now (modules, routes, compiled statements, pools) lives until exit:
        # frozen, the cyclic garbage collector stops re-scanning it on every collection, which
        # under load showed up as latency spikes (p99 of GET by id 130 ms -> 35 ms, same run).
        gc.collect()
        gc.freeze()
        yield


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
    settings = app.state.settings = settings or Settings()
    # The address /v2 says e-mails come from (the worker's SMTP_FROM).
    app.state.from_email = DeliverySettings().smtp_from
    configure_log_format(settings.log_format)
    # Added first, so it runs inside the request log and every 413 is logged with its request id.
    app.add_middleware(
        BodyLimitMiddleware,
        routes=app.router.routes,
        max_body_bytes=LIMITS.max_body_bytes,
        body_timeout_s=settings.http_body_timeout_s,
    )
    app.add_middleware(RequestLogMiddleware)
    # Outermost: its durations include the request log's, and every 413 and 500 is counted.
    app.add_middleware(HttpMetricsMiddleware, routes=app.router.routes)
    install_error_handlers(app, settings.log_outage_interval_s)
    install_docs(app)
    app.include_router(status_router)
    app.include_router(metrics_router)
    app.include_router(notifications_router)
    app.include_router(notify_router)
    app.include_router(services_router)
    app.include_router(keys_router)
    app.include_router(senders_router)
    app.include_router(callbacks_router)
    app.include_router(additions_router)
    app.include_router(predictions_router)
    return app


app = create_app()
