"""Services, the templates they own with every version of each, and their senders."""

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base
from fastapi1.models.notifications import quoted
from fastapi1.types import TEMPLATE_TYPES

SERVICE_NAME_MAX = 255
TEMPLATE_NAME_MAX = 255
TEMPLATE_SUBJECT_MAX = 1_000
TEMPLATE_CONTENT_MAX = 100_000
# Notify's bounds: an SMS sender is a number or up to 11 characters; a reply-to is an address.
SMS_SENDER_MAX = 255
EMAIL_ADDRESS_MAX = 320


class Service(Base):
    """A team sending notifications; its name is unique."""

    __tablename__ = "services"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(SERVICE_NAME_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Template(Base):
    """A message owned by one service: its name and type; what it says is in its versions.

    The current version is the highest one; when it was made is when the template was last
    changed. Neither is stored here, so neither can disagree with the versions.
    """

    __tablename__ = "templates"
    __table_args__ = (
        UniqueConstraint("service_id", "name"),
        CheckConstraint(f"template_type IN {quoted(TEMPLATE_TYPES)}", name="template_type"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Templates go with their service; notifications keep a template from being deleted.
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(TEMPLATE_NAME_MAX))
    template_type: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TemplateVersion(Base):
    """One version of a template's subject and content; ``((name))`` placeholders are read from them.

    Versions are numbered from 1 and never change: a change to a template adds the next one,
    and a notification names the version it was rendered from.
    """

    __tablename__ = "template_versions"
    __table_args__ = (CheckConstraint("version >= 1", name="version"),)

    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str | None] = mapped_column(String(TEMPLATE_SUBJECT_MAX))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SmsSender(Base):
    """A name or number a service's text messages may come from; at most one is its default."""

    __tablename__ = "service_sms_senders"
    __table_args__ = (
        # The target of the notifications' (service_id, sms_sender_id) key: a sender of the same service.
        UniqueConstraint("service_id", "id"),
        Index("uq_service_sms_senders_default", "service_id", unique=True, postgresql_where=text("is_default")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    sms_sender: Mapped[str] = mapped_column(String(SMS_SENDER_MAX))
    is_default: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EmailReplyTo(Base):
    """An address replies to a service's e-mails may go to; at most one is its default."""

    __tablename__ = "service_email_reply_to"
    __table_args__ = (
        UniqueConstraint("service_id", "id"),
        Index("uq_service_email_reply_to_default", "service_id", unique=True, postgresql_where=text("is_default")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    email_address: Mapped[str] = mapped_column(String(EMAIL_ADDRESS_MAX))
    is_default: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
