"""All SQL for addition batches, their pairs and their sums.

Statements are built once at import (see fastapi1.notifications.dao for why) and a whole
batch is written in one statement: the batch row, its pairs and its sums, each table
filled from array parameters with ``unnest ... WITH ORDINALITY``.
"""

from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    DateTime,
    Numeric,
    String,
    Table,
    Text,
    bindparam,
    exists,
    func,
    select,
    true,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.models.additions import AddBatch, AddPair, AddSum

batches = cast(Table, AddBatch.__table__)
pairs = cast(Table, AddPair.__table__)
sums = cast(Table, AddSum.__table__)

_batch = (
    insert(batches)
    .values(
        batch_id=bindparam("batch_id", type_=String()),
        started_at=bindparam("started_at", type_=DateTime(timezone=True)),
        completed_at=bindparam("completed_at", type_=DateTime(timezone=True)),
    )
    .on_conflict_do_nothing(index_elements=[batches.c.batch_id])
    .returning(batches.c.batch_id)
    .cte("new_batch")
)
_operands = (
    func.unnest(bindparam("lefts", type_=ARRAY(BigInteger)), bindparam("rights", type_=ARRAY(BigInteger)))
    .table_valued("left_operand", "right_operand", with_ordinality="position")
    .render_derived(name="operands")
)
# Sums travel as text and PostgreSQL parses them: asyncpg's binary numeric encoder is about
# five times slower than str() plus the server-side cast for 100,000 values.
_totals = (
    func.unnest(bindparam("totals", type_=ARRAY(Text)))
    .table_valued("total", with_ordinality="position")
    .render_derived(name="totals")
)
_pairs = (
    insert(pairs)
    .from_select(
        ["batch_id", "position", "left_operand", "right_operand"],
        select(
            _batch.c.batch_id, _operands.c.position - 1, _operands.c.left_operand, _operands.c.right_operand
        ).select_from(_batch.join(_operands, true())),
    )
    .cte("new_pairs")
)
_sums = (
    insert(sums)
    .from_select(
        ["batch_id", "position", "total"],
        select(_batch.c.batch_id, _totals.c.position - 1, sql_cast(_totals.c.total, Numeric(20, 0))).select_from(
            _batch.join(_totals, true())
        ),
    )
    .cte("new_sums")
)
# Pairs and sums are joined to the new batch row, so a batch id that already exists inserts
# nothing at all; the foreign keys are checked at the end of the statement. Data-modifying
# CTEs run whether or not the final SELECT reads them.
INSERT_BATCH = select(exists(select(_batch.c.batch_id))).add_cte(_batch, _pairs, _sums)

GET_BATCH = select(
    AddBatch,
    select(func.array_agg(aggregate_order_by(sums.c.total, sums.c.position)))
    .where(sums.c.batch_id == batches.c.batch_id)
    .scalar_subquery(),
).where(AddBatch.batch_id == bindparam("batch_id", type_=String()))

GET_PAIRS = select(
    func.array_agg(aggregate_order_by(pairs.c.left_operand, pairs.c.position)),
    func.array_agg(aggregate_order_by(pairs.c.right_operand, pairs.c.position)),
).where(pairs.c.batch_id == bindparam("batch_id", type_=String()))


async def insert_batch(
    session: AsyncSession,
    batch_id: str,
    started_at: datetime,
    completed_at: datetime,
    operands: tuple[list[int], list[int]],
    totals: list[int],
) -> bool:
    """Store a batch with its pairs and sums in one statement, unless the batch id is taken.

    A concurrent insert of the same id makes this wait until that transaction ends.

    Args:
        session: The write session.
        batch_id: The client's batch id.
        started_at: When processing started.
        completed_at: When the sums were ready.
        operands: First and second operands, in payload order.
        totals: The answered sums, in the same order.

    Returns:
        True when this call stored the batch, False when the id already existed (nothing written).
    """
    connection = await session.connection()
    parameters = {
        "batch_id": batch_id,
        "started_at": started_at,
        "completed_at": completed_at,
        "lefts": operands[0],
        "rights": operands[1],
        "totals": [str(total) for total in totals],
    }
    return bool((await connection.execute(INSERT_BATCH, parameters)).scalar_one())


async def get_batch(session: AsyncSession, batch_id: str) -> tuple[AddBatch, list[int]] | None:
    """Load a batch and its sums in payload order, in one statement.

    Args:
        session: Any session.
        batch_id: The batch id.

    Returns:
        The batch and its sums, or None.
    """
    row = (await session.execute(GET_BATCH, {"batch_id": batch_id})).first()
    if row is None:
        return None
    batch, stored = row
    return batch, [int(total) for total in stored or ()]


async def get_pairs(session: AsyncSession, batch_id: str) -> tuple[list[int], list[int]]:
    """Load a batch's pairs as two columns, in payload order.

    Args:
        session: Any session.
        batch_id: The batch id.

    Returns:
        First operands and second operands (empty when the batch has no pairs).
    """
    connection = await session.connection()
    lefts, rights = (await connection.execute(GET_PAIRS, {"batch_id": batch_id})).one()
    return list(lefts or ()), list(rights or ())
