"""Routes under ``/notifications/v1``."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from fastapi1.auth.dependencies import LimiterDep, ServiceCaller
from fastapi1.bodies import CONTENT_TOO_LARGE, JsonBodyRoute
from fastapi1.db.session import ReadSession, WriteSession
from fastapi1.errors import (
    BadRequest,
    DailyLimitExceeded,
    Forbidden,
    NotFound,
    RateLimitExceeded,
    ServiceUnavailable,
    Unauthenticated,
    responses,
)
from fastapi1.notifications import controller
from fastapi1.notifications.schemas import (
    MULTIPLE_EXAMPLE,
    MULTIPLE_MAX,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    SINGLE_EXAMPLE,
    Notification,
    NotificationCreate,
    NotificationPage,
    StatusFilter,
)
from fastapi1.responses import OrjsonResponse

router = APIRouter(
    prefix="/notifications/v1",
    tags=["notifications"],
    route_class=JsonBodyRoute,
    responses=responses(Unauthenticated, Forbidden, RateLimitExceeded),
)

UNPROCESSABLE: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid payload, or a personalization that lacks some placeholder of its template"}
}
CREATE_ERRORS = (
    responses(BadRequest, NotFound, DailyLimitExceeded, ServiceUnavailable) | UNPROCESSABLE | CONTENT_TOO_LARGE
)
READ_ERRORS = responses(NotFound, ServiceUnavailable)
TEMPLATED_EXAMPLE: dict[str, Any] = {
    "to": "example@gmail.com",
    "personalization": {"band": "Incubus", "name": "Ada"},
    "template_id": "0b9e5a9e-3f5c-4c8a-9a57-2f0f5d1c1e11",
}


@router.post(
    "/",
    status_code=201,
    summary="Create a notification",
    response_model=Notification,
    responses=CREATE_ERRORS,
)
async def create_notification(
    item: Annotated[
        NotificationCreate,
        Body(
            openapi_examples={
                "plain": {"summary": "Without a template", "value": SINGLE_EXAMPLE},
                "templated": {"summary": "From a template", "value": TEMPLATED_EXAMPLE},
            }
        ),
    ],
    session: WriteSession,
    caller: ServiceCaller,
    limiter: LimiterDep,
) -> OrjsonResponse:
    """Create one notification. With a `template_id` the template must exist (404) and the
    personalization must supply all its placeholders (422).

    \f
    Args:
        item: The notification to create.
        session: The write session.
        caller: The sending service.
        limiter: Its daily limit.

    Returns:
        The stored notification.
    """
    (created,) = await controller.create_notifications(session, [item], caller, limiter, in_list=False)
    return OrjsonResponse(created, status_code=201)


@router.post(
    "/multiple",
    status_code=201,
    summary="Create 1 to 1,000 notifications at once",
    response_model=list[Notification],
    responses=CREATE_ERRORS,
)
async def create_notifications(
    items: Annotated[
        list[NotificationCreate],
        Body(
            min_length=1,
            max_length=MULTIPLE_MAX,
            openapi_examples={"bands": {"summary": "Two notifications", "value": MULTIPLE_EXAMPLE}},
        ),
    ],
    session: WriteSession,
    caller: ServiceCaller,
    limiter: LimiterDep,
) -> OrjsonResponse:
    """Create all the notifications or none: one bad item rejects the list with a 422 naming its index.
    The response keeps the order of the request.

    \f
    Args:
        items: The notifications to create.
        session: The write session.
        caller: The sending service.
        limiter: Its daily limit.

    Returns:
        The stored notifications, in request order.
    """
    return OrjsonResponse(await controller.create_notifications(session, items, caller, limiter), status_code=201)


@router.get("/{notification_id}", summary="Get a notification", response_model=Notification, responses=READ_ERRORS)
async def get_notification(notification_id: uuid.UUID, session: ReadSession, caller: ServiceCaller) -> OrjsonResponse:
    """Return one notification, 404 if absent, 422 if the id is not a UUID.

    \f
    Args:
        notification_id: The id.
        session: A read session.
        caller: The service whose notification it must be.

    Returns:
        The notification.
    """
    return OrjsonResponse(await controller.get_notification(session, notification_id, caller))


@router.get("/", summary="List notifications, newest first", response_model=NotificationPage, responses=READ_ERRORS)
async def list_notifications(
    session: ReadSession,
    caller: ServiceCaller,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX, description="Page size, 1-250.")] = PAGE_LIMIT_DEFAULT,
    older_than: Annotated[
        uuid.UUID | None, Query(description="The `next` of the previous page: list what is older than it.")
    ] = None,
    status: Annotated[
        StatusFilter | None,
        Query(description="Only notifications in this status; `failed` keeps the three failure statuses."),
    ] = None,
    template_id: Annotated[uuid.UUID | None, Query(description="Only notifications from this template.")] = None,
) -> OrjsonResponse:
    """Keyset pagination: follow `next` until it is null. 404 when `older_than` names no notification.

    \f
    Args:
        session: A read session.
        caller: The service whose notifications to list.
        limit: Page size.
        older_than: Cursor from the previous page.
        status: Status filter.
        template_id: Template filter.

    Returns:
        The page.
    """
    return OrjsonResponse(await controller.list_notifications(session, caller, limit, older_than, status, template_id))
