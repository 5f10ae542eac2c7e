"""Rate and daily limits in PostgreSQL: an API key's slots (UNLOGGED) and a service's count per UTC day.

No foreign keys: the limiter writes these rows outside the request's transaction (see
fastapi1.models.limits).

Revision ID: 3c1f9a7e5b20
Revises: d5b2279d7e13
Create Date: 2026-12-03 08:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c1f9a7e5b20"
down_revision: str | None = "d5b2279d7e13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "rate_limit_slots",
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), server_default=sa.text("'-infinity'"), nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", "slot", name=op.f("pk_rate_limit_slots")),
        prefixes=["UNLOGGED"],
    )
    op.create_index(
        "ix_rate_limit_slots_api_key_id_used_at", "rate_limit_slots", ["api_key_id", "used_at"], unique=False
    )
    op.create_table(
        "service_daily_counts",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("service_id", "day", name=op.f("pk_service_daily_counts")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("service_daily_counts")
    op.drop_index("ix_rate_limit_slots_api_key_id_used_at", table_name="rate_limit_slots")
    op.drop_table("rate_limit_slots")
