"""Notifications and their personalization, one row per key.

The notifications table is also the delivery outbox: a row is committed ``created`` with the
request and the worker claims it from here (see :mod:`fastapi1.delivery`).
"""

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, ForeignKeyConstraint, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base
from fastapi1.types import KEY_TYPES

RECIPIENT_MAX = 320
# GOV.UK Notify's bounds of a client's reference and of an unsubscribe link.
REFERENCE_MAX = 1_000
UNSUBSCRIBE_URL_MAX = 2_048
PERSONALIZATION_KEY_MAX = 64
PERSONALIZATION_VALUE_MAX = 10_000

# GOV.UK Notify's statuses. Pending ones are waiting for (created) or inside (sending) a
# delivery attempt; final ones never change again.
PENDING_STATUSES = ("created", "sending")
FAILURE_STATUSES = ("permanent-failure", "temporary-failure", "technical-failure")
FINAL_STATUSES = ("delivered", *FAILURE_STATUSES)
NOTIFICATION_STATUSES = (*PENDING_STATUSES, *FINAL_STATUSES)
# Every allowed status change, written once: the DAO builds its guards from this table, so a
# status never moves backwards and a final one never changes. ``sending -> sending`` is a new
# attempt (a retry after backoff, or a reclaim after a lease ran out).
TRANSITIONS: tuple[tuple[str, str], ...] = (
    ("created", "sending"),
    ("sending", "sending"),
    *(("sending", final) for final in FINAL_STATUSES),
)


def quoted(values: tuple[str, ...]) -> str:
    """A SQL list literal of ``values``: ``('a', 'b')``.

    Args:
        values: Plain identifiers-like strings (no quotes inside).
    """
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


class Notification(Base):
    """One message to one recipient, optionally from a template."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(f"status IN {quoted(NOTIFICATION_STATUSES)}", name="status"),
        # Final exactly when completed; only pending rows are scheduled.
        CheckConstraint(f"(completed_at IS NULL) = (status IN {quoted(PENDING_STATUSES)})", name="completed_at"),
        CheckConstraint(
            f"(next_attempt_at IS NULL) = (status NOT IN {quoted(PENDING_STATUSES)})", name="next_attempt_at"
        ),
        CheckConstraint("attempts >= 0", name="attempts"),
        # A notification sent with a key belongs to the key's service and records its type.
        CheckConstraint("(service_id IS NULL) = (key_type IS NULL)", name="service_key_type"),
        CheckConstraint(f"key_type IN {quoted(KEY_TYPES)}", name="key_type"),
        # A templated notification names the version it was rendered from, which must exist.
        CheckConstraint("(template_id IS NULL) = (template_version IS NULL)", name="template_version"),
        ForeignKeyConstraint(
            ["template_id", "template_version"],
            ["template_versions.template_id", "template_versions.version"],
            name="fk_notifications_template_version",
            ondelete="RESTRICT",
        ),
        # A sender is one of the sending service's own.
        ForeignKeyConstraint(
            ["service_id", "sms_sender_id"],
            ["service_sms_senders.service_id", "service_sms_senders.id"],
            name="fk_notifications_sms_sender",
            ondelete="RESTRICT",
        ),
        ForeignKeyConstraint(
            ["service_id", "email_reply_to_id"],
            ["service_email_reply_to.service_id", "service_email_reply_to.id"],
            name="fk_notifications_email_reply_to",
            ondelete="RESTRICT",
        ),
        # Keyset pagination newest first within one service (or among the rows of none), unfiltered
        # and by each filter; a template belongs to one service, so its index needs no service column.
        Index("ix_notifications_service_id_created_at_id", "service_id", "created_at", "id"),
        Index("ix_notifications_service_id_status_created_at_id", "service_id", "status", "created_at", "id"),
        Index("ix_notifications_template_id_created_at_id", "template_id", "created_at", "id"),
        # Notify's ``reference`` filter, within one service, newest first.
        Index(
            "ix_notifications_service_id_reference_created_at_id",
            "service_id",
            "reference",
            "created_at",
            "id",
            postgresql_where=text("reference IS NOT NULL"),
        ),
        # The worker's claim: pending rows that are due, earliest first. Final rows (nearly all
        # of a table of millions) are not in it, so the index stays the size of the backlog.
        Index(
            "ix_notifications_pending_next_attempt_at",
            "next_attempt_at",
            postgresql_where=text(f"status IN {quoted(PENDING_STATUSES)}"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The service whose key sent it; null for rows sent without a token (development only)
    # and for rows from before keys existed.
    service_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("services.id", ondelete="RESTRICT"))
    # The sending key's type: test notifications never reach a provider, nor count against limits.
    key_type: Mapped[str | None] = mapped_column(String(8))
    to: Mapped[str] = mapped_column(String(RECIPIENT_MAX))
    template_id: Mapped[uuid.UUID | None] = mapped_column()
    template_version: Mapped[int | None] = mapped_column(Integer)
    # The client's own identifier of the notification (Notify's ``reference``), not unique.
    reference: Mapped[str | None] = mapped_column(String(REFERENCE_MAX))
    # Where a text message comes from and where replies to an e-mail go: the one asked for, else
    # the service's default when the notification was made; null when the service had none.
    sms_sender_id: Mapped[uuid.UUID | None] = mapped_column()
    email_reply_to_id: Mapped[uuid.UUID | None] = mapped_column()
    # Sent as RFC 8058 List-Unsubscribe headers.
    one_click_unsubscribe_url: Mapped[str | None] = mapped_column(String(UNSUBSCRIBE_URL_MAX))
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Handed to a provider for the first time.
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The status became final.
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Delivery attempts started (claims); also the fencing token of the current claim.
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # When a worker may next claim the row: for ``created`` when it became due, for ``sending``
    # when the claimant's lease runs out (or its retry backoff ends); null once final.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NotificationPersonalization(Base):
    """One personalization value of a notification."""

    __tablename__ = "notification_personalizations"

    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(PERSONALIZATION_KEY_MAX), primary_key=True)
    value: Mapped[str] = mapped_column(String(PERSONALIZATION_VALUE_MAX))
