"""Services and the templates they own."""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fastapi1.db.base import Base

SERVICE_NAME_MAX = 255
TEMPLATE_NAME_MAX = 255
TEMPLATE_SUBJECT_MAX = 1_000
TEMPLATE_CONTENT_MAX = 100_000


class Service(Base):
    """A team sending notifications; its name is unique."""

    __tablename__ = "services"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(SERVICE_NAME_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Template(Base):
    """A message owned by one service; ``((name))`` placeholders are read from subject and content."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("service_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Templates go with their service; notifications keep a template from being deleted.
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(TEMPLATE_NAME_MAX))
    subject: Mapped[str | None] = mapped_column(String(TEMPLATE_SUBJECT_MAX))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
