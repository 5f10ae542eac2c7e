"""Status routes: ``/status/heartbeat`` and ``/status/ready``."""

from fastapi import APIRouter, Response

from fastapi1.config import SettingsDep
from fastapi1.db.session import DatabaseDep
from fastapi1.errors import ServiceUnavailable, responses
from fastapi1.status import controller
from fastapi1.status.schemas import Readiness

router = APIRouter(prefix="/status", tags=["status"])


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
