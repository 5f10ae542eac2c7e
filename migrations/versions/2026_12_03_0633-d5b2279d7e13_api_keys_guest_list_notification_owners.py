"""API keys, the guest list of team keys, and notifications owned by a service.

Rows from before keys existed belong to no service (``service_id`` and ``key_type`` null).
The list indexes gain the service as their first column: every list is now one service's
(or that of the rows without one), and the unscoped indexes would only cost writes.

Revision ID: d5b2279d7e13
Revises: 5b7e2c9d4a10
Create Date: 2026-12-03 06:33:47.631287+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d5b2279d7e13"
down_revision: str | None = "5b7e2c9d4a10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("key_type", sa.String(length=8), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("key_type IN ('normal', 'team', 'test')", name=op.f("ck_api_keys_key_type")),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_api_keys_service_id_services"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index("ix_api_keys_service_id", "api_keys", ["service_id"], unique=False)
    op.create_index(
        "uq_api_keys_service_id_name_live",
        "api_keys",
        ["service_id", "name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_table(
        "service_guest_list",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_service_guest_list_service_id_services"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_guest_list")),
        sa.UniqueConstraint("service_id", "recipient", name=op.f("uq_service_guest_list_service_id_recipient")),
    )
    op.add_column("notifications", sa.Column("service_id", sa.Uuid(), nullable=True))
    op.add_column("notifications", sa.Column("key_type", sa.String(length=8), nullable=True))
    op.drop_index(op.f("ix_notifications_created_at_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_status_created_at_id"), table_name="notifications")
    op.create_index(
        "ix_notifications_service_id_created_at_id", "notifications", ["service_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_notifications_service_id_status_created_at_id",
        "notifications",
        ["service_id", "status", "created_at", "id"],
        unique=False,
    )
    op.create_foreign_key(
        op.f("fk_notifications_service_id_services"),
        "notifications",
        "services",
        ["service_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_check_constraint(
        op.f("ck_notifications_service_key_type"), "notifications", "(service_id IS NULL) = (key_type IS NULL)"
    )
    op.create_check_constraint(
        op.f("ck_notifications_key_type"), "notifications", "key_type IN ('normal', 'team', 'test')"
    )


def downgrade() -> None:
    """Revert this revision."""
    for name in ("key_type", "service_key_type"):
        op.drop_constraint(op.f(f"ck_notifications_{name}"), "notifications", type_="check")
    op.drop_constraint(op.f("fk_notifications_service_id_services"), "notifications", type_="foreignkey")
    op.drop_index("ix_notifications_service_id_status_created_at_id", table_name="notifications")
    op.drop_index("ix_notifications_service_id_created_at_id", table_name="notifications")
    op.create_index(
        op.f("ix_notifications_status_created_at_id"), "notifications", ["status", "created_at", "id"], unique=False
    )
    op.create_index(op.f("ix_notifications_created_at_id"), "notifications", ["created_at", "id"], unique=False)
    op.drop_column("notifications", "key_type")
    op.drop_column("notifications", "service_id")
    op.drop_table("service_guest_list")
    op.drop_index(
        "uq_api_keys_service_id_name_live", table_name="api_keys", postgresql_where=sa.text("revoked_at IS NULL")
    )
    op.drop_index("ix_api_keys_service_id", table_name="api_keys")
    op.drop_table("api_keys")
