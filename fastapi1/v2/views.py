"""Routes of GOV.UK Notify's public API, ``/v2``: thin, HTTP only; every refusal in Notify's shape."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from fastapi1.auth.dependencies import LimiterDep, NotifyClient
from fastapi1.bodies import CONTENT_TOO_LARGE
from fastapi1.db.session import ReadSession, WriteSession
from fastapi1.notifications.schemas import PAGE_LIMIT_MAX
from fastapi1.responses import OrjsonResponse
from fastapi1.v2 import controller
from fastapi1.v2.errors import NotifyBadRequest, NotifyRoute
from fastapi1.v2.schemas import (
    CreatedNotification,
    EmailNotificationRequest,
    LetterRequest,
    NotificationList,
    NotifyErrorBody,
    NotifyNotification,
    NotifyTemplate,
    PreviewRequest,
    ReceivedTexts,
    SmsNotificationRequest,
    TemplateList,
    TemplatePreview,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": NotifyErrorBody, "description": description}
    for status, description in (
        (400, "ValidationError or BadRequestError"),
        (401, "AuthError: no token"),
        (403, "AuthError: a token that is not valid"),
        (404, "NoResultFound"),
        (429, "RateLimitError or TooManyRequestsError, with Retry-After"),
        (503, "A dependency does not answer"),
    )
}
router = APIRouter(tags=["GOV.UK Notify API"], route_class=NotifyRoute, responses=ERRORS)
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]


def urls(request: Request) -> controller.Urls:
    """The request's base URL, for the ``uri`` fields.

    Args:
        request: The request.
    """
    return controller.Urls(str(request.base_url))


@router.post(
    "/v2/notifications/email",
    status_code=201,
    summary="Send an e-mail",
    response_model=CreatedNotification,
    responses=CONTENT_TOO_LARGE,
)
async def send_email(
    body: EmailNotificationRequest, request: Request, session: WriteSession, caller: NotifyClient, limiter: LimiterDep
) -> OrjsonResponse:
    """Send an e-mail from one of the service's e-mail templates.

    \f
    Args:
        body: The notification.
        request: The request.
        session: The write session.
        caller: The sending service.
        limiter: Its limits.
    """
    from_email: str = request.app.state.from_email
    answer = await controller.send_email(session, caller, limiter, body, urls(request), from_email)
    return OrjsonResponse(answer, status_code=201)


@router.post(
    "/v2/notifications/sms",
    status_code=201,
    summary="Send a text message",
    response_model=CreatedNotification,
    responses=CONTENT_TOO_LARGE,
)
async def send_sms(
    body: SmsNotificationRequest, request: Request, session: WriteSession, caller: NotifyClient, limiter: LimiterDep
) -> OrjsonResponse:
    """Send a text message from one of the service's text message templates.

    \f
    Args:
        body: The notification.
        request: The request.
        session: The write session.
        caller: The sending service.
        limiter: Its limits.
    """
    answer = await controller.send_sms(session, caller, limiter, body, urls(request))
    return OrjsonResponse(answer, status_code=201)


@router.post(
    "/v2/notifications/letter", status_code=201, summary="Send a letter (refused)", responses=CONTENT_TOO_LARGE
)
async def send_letter(body: LetterRequest, caller: NotifyClient) -> OrjsonResponse:
    """fastapi1 sends e-mails and text messages only: a letter, precompiled or not, is a 400 BadRequestError.

    \f
    Args:
        body: The letter, unread.
        caller: The sending service.

    Raises:
        NotifyBadRequest: Always.
    """
    raise NotifyBadRequest(controller.LETTERS_REFUSED)


@router.get("/v2/notifications/{notification_id}", summary="Get a notification", response_model=NotifyNotification)
async def get_notification(
    notification_id: uuid.UUID, request: Request, session: ReadSession, caller: NotifyClient
) -> OrjsonResponse:
    """Return one of the service's notifications, 404 NoResultFound if it has no such notification.

    \f
    Args:
        notification_id: The id.
        request: The request.
        session: A read session.
        caller: The service.
    """
    return OrjsonResponse(await controller.get_notification(session, caller, notification_id, urls(request)))


@router.get("/v2/notifications/{notification_id}/pdf", summary="Get a letter's PDF (no letters here)")
async def get_letter_pdf(
    notification_id: uuid.UUID, request: Request, session: ReadSession, caller: NotifyClient
) -> OrjsonResponse:
    """No notification of fastapi1 is a letter: 404 for an unknown id, otherwise 400 BadRequestError.

    \f
    Args:
        notification_id: The id.
        request: The request.
        session: A read session.
        caller: The service.

    Raises:
        NotifyBadRequest: For every notification that exists.
    """
    await controller.get_notification(session, caller, notification_id, urls(request))
    raise NotifyBadRequest("Notification is not a letter")


@router.get("/v2/notifications", summary="List notifications, newest first", response_model=NotificationList)
async def list_notifications(
    request: Request,
    session: ReadSession,
    caller: NotifyClient,
    status: Annotated[
        list[str] | None,
        Query(description="Only these statuses (repeatable); `failed` is the three failure statuses."),
    ] = None,
    template_type: Annotated[
        list[str] | None, Query(description="Only these types (repeatable): `email`, `sms` (`letter` finds none).")
    ] = None,
    reference: Annotated[str | None, Query(max_length=1000, description="Only this reference.")] = None,
    older_than: Annotated[uuid.UUID | None, Query(description="The last id of the previous page.")] = None,
    include_jobs: Annotated[
        bool | None, Query(description="Accepted for Notify's clients; fastapi1 has no jobs.")
    ] = None,
) -> OrjsonResponse:
    """Keyset pagination, 250 a page: follow `links.next` (there whenever the page is not empty).

    \f
    Args:
        request: The request.
        session: A read session.
        caller: The service.
        status: Status filter.
        template_type: Type filter.
        reference: Reference filter.
        older_than: Cursor.
        include_jobs: Ignored.
    """
    controller.checked_list_query(list(request.query_params))
    filters = controller.NotificationFilters(
        statuses=controller.one_of("status", status or [], controller.STATUS_FILTERS),
        template_types=controller.one_of("template_type", template_type or [], controller.NOTIFY_TYPES),
        reference=reference,
        older_than=older_than,
    )
    query = {key: request.query_params.getlist(key) for key in request.query_params}
    answer = await controller.list_notifications(session, caller, filters, PAGE_LIMIT_MAX, urls(request), query)
    return OrjsonResponse(answer)


@router.get("/v2/template/{template_id}", summary="Get a template", response_model=NotifyTemplate)
async def get_template(template_id: uuid.UUID, session: ReadSession, caller: NotifyClient) -> OrjsonResponse:
    """Return one of the service's templates at its current version.

    \f
    Args:
        template_id: The template.
        session: A read session.
        caller: The service.
    """
    return OrjsonResponse(await controller.get_template(session, caller, template_id))


@router.get(
    "/v2/template/{template_id}/version/{version}", summary="Get a version of a template", response_model=NotifyTemplate
)
async def get_template_version(
    template_id: uuid.UUID, version: Version, session: ReadSession, caller: NotifyClient
) -> OrjsonResponse:
    """Return one of the service's templates as it was at that version.

    \f
    Args:
        template_id: The template.
        version: The version, from 1.
        session: A read session.
        caller: The service.
    """
    return OrjsonResponse(await controller.get_template(session, caller, template_id, version))


@router.post(
    "/v2/template/{template_id}/preview",
    summary="Preview a template with a personalisation",
    response_model=TemplatePreview,
    responses=CONTENT_TOO_LARGE,
)
async def preview_template(
    template_id: uuid.UUID, body: PreviewRequest, session: ReadSession, caller: NotifyClient
) -> OrjsonResponse:
    """Render the template's current version; a missing placeholder is a 400 BadRequestError.

    \f
    Args:
        template_id: The template.
        body: The personalisation.
        session: A read session.
        caller: The service.
    """
    personalisation = dict(body.personalisation or {})
    return OrjsonResponse(await controller.preview_template(session, caller, template_id, personalisation))


@router.get("/v2/templates", summary="List templates", response_model=TemplateList)
async def list_templates(
    session: ReadSession,
    caller: NotifyClient,
    template_type: Annotated[
        str | None, Query(alias="type", description="Only this type: `email`, `sms` (`letter` finds none).")
    ] = None,
) -> OrjsonResponse:
    """The service's templates at their current versions, by name.

    \f
    Args:
        session: A read session.
        caller: The service.
        template_type: Type filter.
    """
    return OrjsonResponse(await controller.list_templates(session, caller, template_type))


@router.get("/v2/received-text-messages", summary="List received text messages", response_model=ReceivedTexts)
async def list_received_texts(
    request: Request,
    caller: NotifyClient,
    older_than: Annotated[uuid.UUID | None, Query(description="The last id of the previous page.")] = None,
) -> OrjsonResponse:
    """fastapi1 has no inbound numbers, so a service never has received text messages: the list is empty.

    \f
    Args:
        request: The request.
        caller: The service.
        older_than: Cursor.
    """
    current = f"{urls(request).base}v2/received-text-messages"
    return OrjsonResponse({"received_text_messages": [], "links": {"current": current}})


@router.get(
    "/service/{service_id}/template/{template_id}/versions", summary="List every version of a template (Notify client)"
)
async def list_template_versions(
    service_id: uuid.UUID, template_id: uuid.UUID, session: ReadSession, caller: NotifyClient
) -> OrjsonResponse:
    """Every version of one of the caller's templates, oldest first, as `{"data": [...]}`.

    Notify's client calls this route for `get_all_template_versions`.

    \f
    Args:
        service_id: The caller's service.
        template_id: The template.
        session: A read session.
        caller: The service.
    """
    return OrjsonResponse(await controller.list_template_versions(session, caller, service_id, template_id))
