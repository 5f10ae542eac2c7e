"""Status routes: ``/status/heartbeat``, ``/status/ready``, and ``/metrics``."""

from fastapi import APIRouter, Response

from fastapi1.config import SettingsDep
from fastapi1.db.session import DatabaseDep
from fastapi1.errors import ServiceUnavailable, responses
from fastapi1.metrics import CONTENT_TYPE
from fastapi1.status import controller
from fastapi1.status.schemas import Readiness

router = APIRouter(prefix="/status", tags=["status"])
# Prometheus text, not JSON: left out of the OpenAPI document (the README documents it).
metrics_router = APIRouter(tags=["status"], include_in_schema=False)


@router.get("/heartbeat", status_code=204, summary="Liveness: the process serves HTTP")
async def heartbeat() -> Response:
    """Answer 204 without touching any dependency."""
    return Response(status_code=204)


@router.get(
    "/ready",
    summary="Readiness: the database answers",
    responses=responses(ServiceUnavailable),
)
async def ready(database: DatabaseDep, settings: SettingsDep) -> Readiness:
    """Answer 200 when the database answers within the ready timeout, else 503 (and 503 once SIGTERM arrived).

    Args:
        database: The database handle.
        settings: The settings, for the ready timeout.

    Returns:
        The readiness report.
    """
    return await controller.check_readiness(database, settings)


@metrics_router.get("/metrics", summary="Prometheus metrics of the whole instance")
async def get_metrics() -> Response:
    """Answer every metric in Prometheus's text format, from every process of the instance."""
    return Response(await controller.scrape(), media_type=CONTENT_TYPE)
