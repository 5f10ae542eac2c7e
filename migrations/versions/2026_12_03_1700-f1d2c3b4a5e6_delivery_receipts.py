"""Delivery receipts: a service's callback, and the outbox of the receipts owed.

Revision ID: f1d2c3b4a5e6
Revises: b3f9c2d7e8a1
Create Date: 2026-12-03 17:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f1d2c3b4a5e6"
down_revision: str | None = "b3f9c2d7e8a1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "service_callbacks",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("bearer_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_service_callbacks_service_id_services"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("service_id", name=op.f("pk_service_callbacks")),
    )
    op.create_table(
        "delivery_receipts",
        sa.Column("notification_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name=op.f("ck_delivery_receipts_state")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_delivery_receipts_attempts")),
        sa.CheckConstraint(
            "(next_attempt_at IS NULL) = (state <> 'pending')", name=op.f("ck_delivery_receipts_next_attempt_at")
        ),
        sa.CheckConstraint(
            "(completed_at IS NULL) = (state = 'pending')", name=op.f("ck_delivery_receipts_completed_at")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_delivery_receipts_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("notification_id", name=op.f("pk_delivery_receipts")),
    )
    op.create_index(
        "ix_delivery_receipts_pending_next_attempt_at",
        "delivery_receipts",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(
        "ix_delivery_receipts_pending_next_attempt_at",
        table_name="delivery_receipts",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_table("delivery_receipts")
    op.drop_table("service_callbacks")
