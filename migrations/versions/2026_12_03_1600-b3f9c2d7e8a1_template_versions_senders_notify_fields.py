"""Template types and versions, services' senders, and what GOV.UK Notify's API records of a notification.

A template keeps its name and type; its subject and content move to ``template_versions``,
version 1 being what it said until now. A template with a subject becomes ``email``, one
without ``sms``, as ``/services/v1`` infers it. A notification names the version it was
rendered from (version 1 for the existing ones) through a foreign key to that version, which
also proves the template exists, so the plain key to ``templates`` goes.

Revision ID: b3f9c2d7e8a1
Revises: e4c81b2f9d07
Create Date: 2026-12-03 16:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b3f9c2d7e8a1"
down_revision: str | None = "e4c81b2f9d07"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SENDERS = (("service_sms_senders", "sms_sender", 255), ("service_email_reply_to", "email_address", 320))


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "template_versions",
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=1000), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_template_versions_version")),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name=op.f("fk_template_versions_template_id_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("template_id", "version", name=op.f("pk_template_versions")),
    )
    op.execute(
        "INSERT INTO template_versions (template_id, version, subject, content, created_at)"
        " SELECT id, 1, subject, content, updated_at FROM templates"
    )
    op.add_column("templates", sa.Column("template_type", sa.String(length=8), nullable=True))
    op.execute("UPDATE templates SET template_type = CASE WHEN subject IS NULL THEN 'sms' ELSE 'email' END")
    op.alter_column("templates", "template_type", nullable=False)
    op.create_check_constraint(op.f("ck_templates_template_type"), "templates", "template_type IN ('email', 'sms')")
    for name in ("subject", "content", "updated_at"):
        op.drop_column("templates", name)

    for table, column, length in SENDERS:
        op.create_table(
            table,
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("service_id", sa.Uuid(), nullable=False),
            sa.Column(column, sa.String(length=length), nullable=False),
            sa.Column("is_default", sa.Boolean(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(
                ["service_id"], ["services.id"], name=op.f(f"fk_{table}_service_id_services"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
            sa.UniqueConstraint("service_id", "id", name=op.f(f"uq_{table}_service_id_id")),
        )
        op.create_index(
            f"uq_{table}_default", table, ["service_id"], unique=True, postgresql_where=sa.text("is_default")
        )

    op.add_column("notifications", sa.Column("template_version", sa.Integer(), nullable=True))
    op.add_column("notifications", sa.Column("reference", sa.String(length=1000), nullable=True))
    op.add_column("notifications", sa.Column("sms_sender_id", sa.Uuid(), nullable=True))
    op.add_column("notifications", sa.Column("email_reply_to_id", sa.Uuid(), nullable=True))
    op.add_column("notifications", sa.Column("one_click_unsubscribe_url", sa.String(length=2048), nullable=True))
    op.execute("UPDATE notifications SET template_version = 1 WHERE template_id IS NOT NULL")
    op.create_check_constraint(
        op.f("ck_notifications_template_version"), "notifications", "(template_id IS NULL) = (template_version IS NULL)"
    )
    op.drop_constraint("fk_notifications_template_id_templates", "notifications", type_="foreignkey")
    op.create_foreign_key(
        "fk_notifications_template_version",
        "notifications",
        "template_versions",
        ["template_id", "template_version"],
        ["template_id", "version"],
        ondelete="RESTRICT",
    )
    op.create_foreign_key(
        "fk_notifications_sms_sender",
        "notifications",
        "service_sms_senders",
        ["service_id", "sms_sender_id"],
        ["service_id", "id"],
        ondelete="RESTRICT",
    )
    op.create_foreign_key(
        "fk_notifications_email_reply_to",
        "notifications",
        "service_email_reply_to",
        ["service_id", "email_reply_to_id"],
        ["service_id", "id"],
        ondelete="RESTRICT",
    )
    op.create_index(
        "ix_notifications_service_id_reference_created_at_id",
        "notifications",
        ["service_id", "reference", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text("reference IS NOT NULL"),
    )


def downgrade() -> None:
    """Revert this revision: templates keep what their latest version says."""
    op.drop_index(
        "ix_notifications_service_id_reference_created_at_id",
        table_name="notifications",
        postgresql_where=sa.text("reference IS NOT NULL"),
    )
    for name in ("email_reply_to", "sms_sender", "template_version"):
        op.drop_constraint(f"fk_notifications_{name}", "notifications", type_="foreignkey")
    op.create_foreign_key(
        "fk_notifications_template_id_templates",
        "notifications",
        "templates",
        ["template_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.drop_constraint(op.f("ck_notifications_template_version"), "notifications", type_="check")
    for name in ("one_click_unsubscribe_url", "email_reply_to_id", "sms_sender_id", "reference", "template_version"):
        op.drop_column("notifications", name)
    for table, _, _ in SENDERS:
        op.drop_index(f"uq_{table}_default", table_name=table, postgresql_where=sa.text("is_default"))
        op.drop_table(table)
    op.add_column("templates", sa.Column("subject", sa.String(length=1000), nullable=True))
    op.add_column("templates", sa.Column("content", sa.Text(), nullable=True))
    op.add_column("templates", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE templates SET subject = latest.subject, content = latest.content, updated_at = latest.created_at"
        " FROM (SELECT DISTINCT ON (template_id) template_id, subject, content, created_at FROM template_versions"
        " ORDER BY template_id, version DESC) AS latest WHERE latest.template_id = templates.id"
    )
    op.alter_column("templates", "content", nullable=False)
    op.alter_column("templates", "updated_at", nullable=False)
    op.drop_constraint(op.f("ck_templates_template_type"), "templates", type_="check")
    op.drop_column("templates", "template_type")
    op.drop_table("template_versions")
