"""SQL building blocks shared by the DAOs: array parameters as rows, literals a partial index can see."""

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, String, TableValuedAlias, bindparam, func, literal_column
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine

ONE_SECOND: ColumnElement[timedelta] = literal_column("interval '1 second'", Interval())


def unnest(name: str, **columns: TypeEngine[Any]) -> TableValuedAlias:
    """Rows from parallel array parameters: ``unnest(:a, :b) AS name(a, b)``.

    Args:
        name: Alias of the derived table.
        columns: Column (and parameter) name to the SQL type of one element.

    Returns:
        The derived table; bind each column's values as a list under the column's name.
    """
    arrays = (bindparam(column, type_=ARRAY(item_type)) for column, item_type in columns.items())
    return func.unnest(*arrays).table_valued(*columns).render_derived(name=name)


def constants(*texts: str) -> list[ColumnElement[str]]:
    """SQL string literals, written into the statement rather than bound.

    A partial index serves a query only when the planner can prove the query's WHERE implies
    the index's predicate; bound parameters would hide the statuses from it in a generic plan.

    Args:
        texts: Plain strings without quotes.
    """
    return [literal_column(f"'{text}'", String()) for text in texts]
