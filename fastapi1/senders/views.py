"""Routes under ``/services/v1/{service_id}``: text message senders and e-mail reply-to addresses (admin routes)."""

import uuid

from fastapi import APIRouter

from fastapi1.auth.dependencies import ADMIN_ONLY
from fastapi1.bodies import CONTENT_TOO_LARGE, JsonBodyRoute
from fastapi1.db.session import ReadSession, WriteSession
from fastapi1.errors import Forbidden, NotFound, ServiceUnavailable, Unauthenticated, responses
from fastapi1.senders import controller
from fastapi1.senders.schemas import EmailReplyTo, EmailReplyToCreate, SmsSender, SmsSenderCreate

router = APIRouter(
    prefix="/services/v1/{service_id}",
    tags=["senders"],
    route_class=JsonBodyRoute,
    dependencies=[ADMIN_ONLY],
    responses=responses(Unauthenticated, Forbidden, NotFound, ServiceUnavailable),
)


@router.post("/sms-senders", status_code=201, summary="Add a text message sender", responses=CONTENT_TOO_LARGE)
async def create_sms_sender(service_id: uuid.UUID, new: SmsSenderCreate, session: WriteSession) -> SmsSender:
    """Add a sender; the service's first is its default, and `is_default` moves the default to the new one.

    \f
    Args:
        service_id: The service.
        new: The sender.
        session: The write session.
    """
    sender = await controller.create_sender(session, "sms_sender", service_id, new.sms_sender, new.is_default)
    return SmsSender.model_validate(sender)


@router.get("/sms-senders", summary="List a service's text message senders")
async def list_sms_senders(service_id: uuid.UUID, session: ReadSession) -> list[SmsSender]:
    """The service's senders, oldest first.

    \f
    Args:
        service_id: The service.
        session: A read session.
    """
    return [SmsSender.model_validate(row) for row in await controller.list_senders(session, "sms_sender", service_id)]


@router.post("/email-reply-to", status_code=201, summary="Add an e-mail reply-to address", responses=CONTENT_TOO_LARGE)
async def create_email_reply_to(service_id: uuid.UUID, new: EmailReplyToCreate, session: WriteSession) -> EmailReplyTo:
    """Add a reply-to address; the service's first is its default, and `is_default` moves the default to the new one.

    \f
    Args:
        service_id: The service.
        new: The address.
        session: The write session.
    """
    sender = await controller.create_sender(session, "email_reply_to", service_id, new.email_address, new.is_default)
    return EmailReplyTo.model_validate(sender)


@router.get("/email-reply-to", summary="List a service's e-mail reply-to addresses")
async def list_email_reply_to(service_id: uuid.UUID, session: ReadSession) -> list[EmailReplyTo]:
    """The service's reply-to addresses, oldest first.

    \f
    Args:
        service_id: The service.
        session: A read session.
    """
    rows = await controller.list_senders(session, "email_reply_to", service_id)
    return [EmailReplyTo.model_validate(row) for row in rows]
