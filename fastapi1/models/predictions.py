"""Async prediction jobs (``Async-Mode: true``) and their agents, one row per agent.

The predictions table is also the job queue: a job is committed ``pending`` with the request
and a worker claims it from here (see :mod:`fastapi1.predictions.jobs`).
"""

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base
from fastapi1.models.notifications import quoted

PENDING = "pending"
COMPLETE = "complete"
FAILED = "failed"
# No "running": a claimed job stays pending, its lease being next_attempt_at (see the column).
PREDICTION_STATUSES = (PENDING, COMPLETE, FAILED)


class Prediction(Base):
    """One job: the agents body (client_id, run_slug and its agents) or the text body (input)."""

    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint(f"status IN {quoted(PREDICTION_STATUSES)}", name="status"),
        # Exactly one of the two bodies: an agents job has client_id and run_slug, a text job an input.
        CheckConstraint("(client_id IS NULL) = (run_slug IS NULL)", name="agents_body"),
        CheckConstraint("(client_id IS NULL) <> (input IS NULL)", name="one_body"),
        CheckConstraint(f"(completed_at IS NULL) = (status = '{PENDING}')", name="completed_at"),
        CheckConstraint(f"(next_attempt_at IS NULL) = (status <> '{PENDING}')", name="next_attempt_at"),
        CheckConstraint(f"(error IS NULL) = (status <> '{FAILED}')", name="error"),
        CheckConstraint(f"result IS NULL OR (status = '{COMPLETE}' AND input IS NOT NULL)", name="result"),
        CheckConstraint("attempts >= 0", name="attempts"),
        # The worker's claim: pending jobs that are due, earliest first; finished jobs stay out.
        Index(
            "ix_predictions_pending_next_attempt_at", "next_attempt_at", postgresql_where=text(f"status = '{PENDING}'")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[str | None] = mapped_column(String(128))
    run_slug: Mapped[str | None] = mapped_column(String(128))
    input: Mapped[str | None] = mapped_column(Text)
    # The text model's answer, for a complete text job.
    result: Mapped[str | None] = mapped_column(Text)
    # Why a failed job failed ("Backend failed: ...").
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Claims so far; a job claimed past PREDICTION_MAX_ATTEMPTS fails instead of running again.
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # When a worker may claim the job: at creation, due at once; once claimed, the end of the
    # claimant's lease; null once final.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PredictionAgent(Base):
    """One agent of an agents job, in the request's order, with its action once complete."""

    __tablename__ = "prediction_agents"
    __table_args__ = (UniqueConstraint("prediction_id", "name"),)

    prediction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True)
    # Position of the agent in the request's object: the answer lists the agents in this order.
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    observations: Mapped[list[float]] = mapped_column(ARRAY(Float(precision=53)))
    agent_type: Mapped[str | None] = mapped_column(String(64))
    nn_model_name: Mapped[str] = mapped_column(String(128))
    action: Mapped[float | None] = mapped_column(Float(precision=53))
