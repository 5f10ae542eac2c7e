"""Addition batches, their pairs and the sums answered (4NF).

Revision ID: d9187a419195
Revises: 68eb0762fa98
Create Date: 2026-11-23 00:03:19.388321+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d9187a419195"
down_revision: str | None = "68eb0762fa98"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "add_batches",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_add_batches")),
    )
    op.create_table(
        "add_pairs",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("left_operand", sa.BigInteger(), nullable=False),
        sa.Column("right_operand", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["add_batches.batch_id"], name=op.f("fk_add_pairs_batch_id_add_batches"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("batch_id", "position", name=op.f("pk_add_pairs")),
    )
    op.create_table(
        "add_sums",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("total", sa.Numeric(precision=20, scale=0), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id", "position"],
            ["add_pairs.batch_id", "add_pairs.position"],
            name="fk_add_sums_pair",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("batch_id", "position", name=op.f("pk_add_sums")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("add_sums")
    op.drop_table("add_pairs")
    op.drop_table("add_batches")
