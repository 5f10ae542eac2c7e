"""Count the SQL statements an application sends, to prove a route's round trips are constant."""

import contextlib
from collections.abc import Iterator

from fastapi import FastAPI
from sqlalchemy import event


@contextlib.contextmanager
def recorded_statements(app: FastAPI) -> Iterator[list[str]]:
    """Collect every statement the app's write engine executes inside the block."""
    statements: list[str] = []
    engine = app.state.database.write_engine.sync_engine

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
