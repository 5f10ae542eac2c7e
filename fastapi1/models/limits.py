"""The state of the rate and daily limits when they live in PostgreSQL (``REDIS_URL`` unset).

Neither table has a foreign key to ``api_keys`` or ``services``: their rows are bookkeeping
keyed by id, written by the limiter on a connection of its own in autocommit, outside the
request's transaction. A foreign key would make each write check (and share-lock) the key's or
the service's row, and the limiter's connection cannot see rows of a transaction not yet
committed (a request that creates a service and sends at once; the tests' outer transaction).
Rows of deleted keys and services, and old days, are pruned (fastapi1.limits.postgres_store).
"""

import uuid
from datetime import date, datetime

from sqlalchemy import Date, DateTime, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base


class RateLimitSlot(Base):
    """One of an API key's slots (at most RATE_LIMIT_PER_MINUTE); free once ``used_at`` left the window.

    UNLOGGED: a PostgreSQL crash empties the table (no WAL, and no WAL to write per request),
    which frees every slot, that is forgets at most the last minute's requests.
    """

    __tablename__ = "rate_limit_slots"
    __table_args__ = (
        # Free slots are the oldest: taking one reads the head of this index, whatever the load.
        Index("ix_rate_limit_slots_api_key_id_used_at", "api_key_id", "used_at"),
        {"prefixes": ["UNLOGGED"]},
    )

    api_key_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("'-infinity'"))


class ServiceDailyCount(Base):
    """Notifications a service reserved on one UTC day; logged, so a crash keeps today's count."""

    __tablename__ = "service_daily_counts"

    service_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
