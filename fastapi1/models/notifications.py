"""Notifications and their personalization, one row per key."""

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base

RECIPIENT_MAX = 320
PERSONALIZATION_KEY_MAX = 64
PERSONALIZATION_VALUE_MAX = 10_000
NOTIFICATION_STATUSES = ("created", "sending", "delivered", "failed")


class Notification(Base):
    """One message to one recipient, optionally from a template."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(f"status IN {NOTIFICATION_STATUSES!r}", name="status"),
        # Keyset pagination newest first, unfiltered and by each filter.
        Index("ix_notifications_created_at_id", "created_at", "id"),
        Index("ix_notifications_status_created_at_id", "status", "created_at", "id"),
        Index("ix_notifications_template_id_created_at_id", "template_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    to: Mapped[str] = mapped_column(String(RECIPIENT_MAX))
    template_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("templates.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NotificationPersonalization(Base):
    """One personalization value of a notification."""

    __tablename__ = "notification_personalizations"

    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(PERSONALIZATION_KEY_MAX), primary_key=True)
    value: Mapped[str] = mapped_column(String(PERSONALIZATION_VALUE_MAX))
