"""Prediction jobs (Async-Mode: true) and their agents.

Revision ID: 5b7e2c9d4a10
Revises: 10d83bc54d22
Create Date: 2026-11-23 15:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5b7e2c9d4a10"
down_revision: str | None = "10d83bc54d22"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKS = {
    "status": "status IN ('pending', 'complete', 'failed')",
    "agents_body": "(client_id IS NULL) = (run_slug IS NULL)",
    "one_body": "(client_id IS NULL) <> (input IS NULL)",
    "completed_at": "(completed_at IS NULL) = (status = 'pending')",
    "next_attempt_at": "(next_attempt_at IS NULL) = (status <> 'pending')",
    "error": "(error IS NULL) = (status <> 'failed')",
    "result": "result IS NULL OR (status = 'complete' AND input IS NOT NULL)",
    "attempts": "attempts >= 0",
}


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "predictions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("run_slug", sa.String(length=128), nullable=True),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        *(sa.CheckConstraint(check, name=op.f(f"ck_predictions_{name}")) for name, check in CHECKS.items()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    )
    op.create_index(
        "ix_predictions_pending_next_attempt_at",
        "predictions",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "prediction_agents",
        sa.Column("prediction_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("observations", postgresql.ARRAY(sa.Float(precision=53)), nullable=False),
        sa.Column("agent_type", sa.String(length=64), nullable=True),
        sa.Column("nn_model_name", sa.String(length=128), nullable=False),
        sa.Column("action", sa.Float(precision=53), nullable=True),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_prediction_agents_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("prediction_id", "position", name=op.f("pk_prediction_agents")),
        sa.UniqueConstraint("prediction_id", "name", name=op.f("uq_prediction_agents_prediction_id_name")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("prediction_agents")
    op.drop_index(
        "ix_predictions_pending_next_attempt_at",
        table_name="predictions",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("predictions")
