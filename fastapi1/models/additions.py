"""Addition batches: the batch, its pairs, and the sums that were answered."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, ForeignKey, ForeignKeyConstraint, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base

BATCH_ID_MAX = 64


class AddBatch(Base):
    """One ``POST /add`` request, keyed by the client's batch id (its idempotency key)."""

    __tablename__ = "add_batches"

    batch_id: Mapped[str] = mapped_column(String(BATCH_ID_MAX), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AddPair(Base):
    """One pair of a batch, at its position in the payload."""

    __tablename__ = "add_pairs"

    batch_id: Mapped[str] = mapped_column(ForeignKey("add_batches.batch_id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    left_operand: Mapped[int] = mapped_column(BigInteger)
    right_operand: Mapped[int] = mapped_column(BigInteger)


class AddSum(Base):
    """The sum answered for one pair (it may exceed 64 bits, hence numeric)."""

    __tablename__ = "add_sums"
    __table_args__ = (
        ForeignKeyConstraint(
            ["batch_id", "position"],
            ["add_pairs.batch_id", "add_pairs.position"],
            ondelete="CASCADE",
            name="fk_add_sums_pair",
        ),
    )

    batch_id: Mapped[str] = mapped_column(String(BATCH_ID_MAX), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    total: Mapped[Decimal] = mapped_column(Numeric(20, 0))
