"""The state of the rate and daily limits when they live in PostgreSQL (``REDIS_URL`` unset).

Neither table has a foreign key to ``api_keys`` or ``services``: their rows are bookkeeping
keyed by id, written by the limiter on a connection of its own in autocommit, outside the
request's transaction. A foreign key would make each write check (and share-lock) the key's or
the service's row, and the limiter's connection cannot see rows of a transaction not yet
committed (a request that creates a service and sends at once; the tests' outer transaction).
Rows of deleted keys and services, and old days, are pruned (fastapi1.limits.postgres_store).
"""

import uuid
from datetime import date

from sqlalchemy import BigInteger, Date, Integer
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base


class RateLimitWindow(Base):
    """An API key's sliding window: a ring of request counts, one per step (a sixtieth of the window).

    One row per key whatever its limit, taken under its row lock by the ``rate_limit_take``
    function (migration e4c81b2f9d07). UNLOGGED: a PostgreSQL crash empties the table (no WAL,
    and no WAL to write per request), which forgets at most the last minute's requests. Neither
    array is in an index and half of each page is kept free, so that a take is a HOT update.
    """

    __tablename__ = "rate_limit_windows"
    __table_args__ = ({"prefixes": ["UNLOGGED"], "postgresql_with": {"fillfactor": 50}},)

    api_key_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The step each position counts (epoch seconds / step width), and its requests.
    steps: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    counts: Mapped[list[int]] = mapped_column(ARRAY(Integer))


class ServiceDailyCount(Base):
    """Notifications a service reserved on one UTC day; logged, so a crash keeps today's count."""

    __tablename__ = "service_daily_counts"

    service_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
