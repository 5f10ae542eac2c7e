"""Routes of batch addition: ``/add`` (alias ``/process_batch``), ``/add/{batchid}``, ``/add_numbers``."""

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Path, Request

from fastapi1.additions import controller
from fastapi1.additions.pool import ComputePool
from fastapi1.additions.schemas import (
    BATCH_ID_PATTERN,
    AddNumbersRequest,
    AddNumbersResponse,
    AddRequest,
    AddResponse,
)
from fastapi1.auth.dependencies import authenticate_service
from fastapi1.bodies import CONTENT_TOO_LARGE, JsonBodyRoute
from fastapi1.db.session import ReadSession, WriteSession
from fastapi1.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Overloaded,
    ProcessingError,
    RateLimitExceeded,
    ServiceUnavailable,
    Unauthenticated,
    responses,
)
from fastapi1.models.additions import BATCH_ID_MAX

# Checked for the token (and its rate limit) only: batches are not owned by a service (see README).
router = APIRouter(
    tags=["additions"],
    route_class=JsonBodyRoute,
    dependencies=[Depends(authenticate_service)],
    responses=responses(Unauthenticated, Forbidden, RateLimitExceeded),
)

ADD_ERRORS = responses(Conflict, ProcessingError, ServiceUnavailable) | CONTENT_TOO_LARGE


def get_compute_pool(request: Request) -> ComputePool:
    """Return the process pool the lifespan created.

    Args:
        request: The current request.

    Returns:
        The application's process pool.
    """
    return cast(ComputePool, request.app.state.compute_pool)


ComputePoolDep = Annotated[ComputePool, Depends(get_compute_pool)]
BatchIdPath = Annotated[str, Path(min_length=1, max_length=BATCH_ID_MAX, pattern=BATCH_ID_PATTERN)]


@router.post(
    "/add",
    summary="Add pairs of integers on the process pool",
    responses=ADD_ERRORS,
)
async def add(request: AddRequest, session: WriteSession, pool: ComputePoolDep) -> AddResponse:
    """Add each pair; the result is stored under `batchid`. Sending the same `batchid` and payload
    again returns the stored result unchanged; the same `batchid` with another payload is 409.

    \f
    Args:
        request: The batch.
        session: The write session.
        pool: The process pool.

    Returns:
        The sums in payload order.
    """
    return await controller.add_batch(session, pool, request)


router.add_api_route(
    "/process_batch",
    add,
    methods=["POST"],
    summary="Add pairs of integers (the original assignment's name for POST /add)",
    responses=ADD_ERRORS,
    operation_id="process_batch",
)


@router.get("/add/{batchid}", summary="Get a stored batch", responses=responses(NotFound, ServiceUnavailable))
async def get_batch(batchid: BatchIdPath, session: ReadSession) -> AddResponse:
    """Return a stored batch, or 404.

    \f
    Args:
        batchid: The batch id.
        session: A read session.

    Returns:
        The stored response.
    """
    return await controller.get_batch(session, batchid)


@router.post(
    "/add_numbers",
    summary="Sum a list of integers",
    responses=responses(ProcessingError, Overloaded) | CONTENT_TOO_LARGE,
)
async def add_numbers(request: AddNumbersRequest, pool: ComputePoolDep) -> AddNumbersResponse:
    """Sum 1 to 100,000 signed 64-bit integers on the process pool.

    \f
    Args:
        request: The numbers.
        pool: The process pool.

    Returns:
        The sum.
    """
    return await controller.add_numbers(pool, request.numbers)
