"""Delivery receipts (GOV.UK Notify's callbacks): where a service wants them, and the outbox of those owed.

A receipt is owed once a notification of a service with a callback reaches a final status: the
statement that records that status also inserts its receipt row (fastapi1.delivery.dao), so the
two commit together and a worker that dies between them loses nothing. The worker's receipt
relay claims due rows as the delivery relay claims notifications.
"""

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base
from fastapi1.models.notifications import quoted

CALLBACK_URL_MAX = 2_048
RECEIPT_PENDING = "pending"
RECEIPT_STATES = (RECEIPT_PENDING, "sent", "failed")


class ServiceCallback(Base):
    """A service's delivery-status callback: one per service, its bearer token encrypted (SECRET_KEY)."""

    __tablename__ = "service_callbacks"

    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(String(CALLBACK_URL_MAX))
    # A Fernet token of the bearer token, as API-key secrets are kept: the receiver checks it in clear.
    bearer_token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeliveryReceipt(Base):
    """The receipt owed for one notification's final status; what it says is read from the notification."""

    __tablename__ = "delivery_receipts"
    __table_args__ = (
        CheckConstraint(f"state IN {quoted(RECEIPT_STATES)}", name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        # Scheduled exactly while pending; done exactly once it is not.
        CheckConstraint(f"(next_attempt_at IS NULL) = (state <> '{RECEIPT_PENDING}')", name="next_attempt_at"),
        CheckConstraint(f"(completed_at IS NULL) = (state = '{RECEIPT_PENDING}')", name="completed_at"),
        # The relay's claim: the pending receipts that are due, earliest first; the index holds the backlog only.
        Index(
            "ix_delivery_receipts_pending_next_attempt_at",
            "next_attempt_at",
            postgresql_where=text(f"state = '{RECEIPT_PENDING}'"),
        ),
    )

    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(8))
    # Sends started (claims); also the fencing token of the current claim.
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # When the relay may next claim it: due, its lease's end, or its backoff's; null once done.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Sent, or given up on.
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
