"""API keys of services, and the guest list their team keys may send to."""

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base
from fastapi1.models.notifications import RECIPIENT_MAX, quoted
from fastapi1.types import KEY_TYPES

KEY_NAME_MAX = 255


class ApiKey(Base):
    """One API key of a service: its secret signs the service's tokens (HS256).

    The secret is stored encrypted (Fernet, ``SECRET_KEY``), never in clear: tokens are
    verified with the secret itself, so it cannot be a one-way hash. A revoked key keeps its
    row, so that a token signed with it is refused as revoked rather than unknown.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(f"key_type IN {quoted(KEY_TYPES)}", name="key_type"),
        # Names tell a service's live keys apart; a revoked key's name may be used again.
        Index(
            "uq_api_keys_service_id_name_live",
            "service_id",
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
        Index("ix_api_keys_service_id", "service_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(KEY_NAME_MAX))
    key_type: Mapped[str] = mapped_column(String(8))
    # A Fernet token of the secret (itself a uuid4 in text).
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GuestListRecipient(Base):
    """An address or number a service's team keys may send to, normalised (see fastapi1.recipients)."""

    __tablename__ = "service_guest_list"
    __table_args__ = (UniqueConstraint("service_id", "recipient"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    recipient: Mapped[str] = mapped_column(String(RECIPIENT_MAX))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
