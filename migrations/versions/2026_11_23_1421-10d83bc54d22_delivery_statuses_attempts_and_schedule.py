"""Delivery: Notify's statuses, completed_at, attempts and the claim schedule.

The old ``failed`` becomes ``technical-failure`` (nothing was ever sent through a provider),
and back again on downgrade, where the three failures fold into ``failed``.

Revision ID: 10d83bc54d22
Revises: d9187a419195
Create Date: 2026-11-23 14:21:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "10d83bc54d22"
down_revision: str | None = "d9187a419195"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "('created', 'sending')"
STATUSES = "('created', 'sending', 'delivered', 'permanent-failure', 'temporary-failure', 'technical-failure')"
OLD_STATUSES = "('created', 'sending', 'delivered', 'failed')"


def upgrade() -> None:
    """Apply this revision."""
    op.drop_constraint(op.f("ck_notifications_status"), "notifications", type_="check")
    # Growing a varchar's bound is a catalog change: no table or index rewrite.
    op.alter_column("notifications", "status", type_=sa.String(length=32), existing_type=sa.String(length=16))
    op.add_column("notifications", sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True))
    # A constant default is stored in the catalog (PostgreSQL >= 11): no rewrite either.
    op.add_column("notifications", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column("notifications", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE notifications SET status = 'technical-failure' WHERE status = 'failed'")
    op.execute("UPDATE notifications SET completed_at = updated_at WHERE status NOT IN ('created', 'sending')")
    # Rows left pending by the old code were never held by a worker: due now.
    op.execute("UPDATE notifications SET next_attempt_at = created_at WHERE status IN ('created', 'sending')")
    op.create_check_constraint(op.f("ck_notifications_status"), "notifications", f"status IN {STATUSES}")
    op.create_check_constraint(
        op.f("ck_notifications_completed_at"), "notifications", f"(completed_at IS NULL) = (status IN {PENDING})"
    )
    op.create_check_constraint(
        op.f("ck_notifications_next_attempt_at"),
        "notifications",
        f"(next_attempt_at IS NULL) = (status NOT IN {PENDING})",
    )
    op.create_check_constraint(op.f("ck_notifications_attempts"), "notifications", "attempts >= 0")
    op.create_index(
        "ix_notifications_pending_next_attempt_at",
        "notifications",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text(f"status IN {PENDING}"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(
        "ix_notifications_pending_next_attempt_at",
        table_name="notifications",
        postgresql_where=sa.text(f"status IN {PENDING}"),
    )
    for name in ("attempts", "next_attempt_at", "completed_at", "status"):
        op.drop_constraint(op.f(f"ck_notifications_{name}"), "notifications", type_="check")
    op.execute(
        "UPDATE notifications SET status = 'failed'"
        " WHERE status IN ('permanent-failure', 'temporary-failure', 'technical-failure')"
    )
    op.drop_column("notifications", "next_attempt_at")
    op.drop_column("notifications", "attempts")
    op.drop_column("notifications", "completed_at")
    op.alter_column("notifications", "status", type_=sa.String(length=16), existing_type=sa.String(length=32))
    op.create_check_constraint(op.f("ck_notifications_status"), "notifications", f"status IN {OLD_STATUSES}")
