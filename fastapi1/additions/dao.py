"""All SQL for addition batches, their pairs and their sums."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import BigInteger, Numeric, Text, bindparam, cast, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.models.additions import AddBatch, AddPair, AddSum


async def insert_batch(session: AsyncSession, batch_id: str, started_at: datetime, completed_at: datetime) -> bool:
    """Insert a batch unless its id is taken; waits for a concurrent insert of the same id to settle.

    Args:
        session: The write session.
        batch_id: The client's batch id.
        started_at: When processing started.
        completed_at: When the sums were ready.

    Returns:
        True when this call inserted the batch, False when it already existed.
    """
    statement = (
        insert(AddBatch)
        .values(batch_id=batch_id, started_at=started_at, completed_at=completed_at)
        .on_conflict_do_nothing(index_elements=[AddBatch.batch_id])
        .returning(AddBatch.batch_id)
    )
    return (await session.execute(statement)).first() is not None


async def insert_pairs_and_sums(
    session: AsyncSession, batch_id: str, lefts: Sequence[int], rights: Sequence[int], sums: Sequence[int]
) -> None:
    """Store a batch's pairs and sums: one statement per table, whatever the size.

    Args:
        session: The write session.
        batch_id: The batch, already inserted.
        lefts: First operands, in payload order.
        rights: Second operands.
        sums: The answered sums.
    """
    pairs = (
        func.unnest(
            bindparam("lefts", lefts, type_=ARRAY(BigInteger)), bindparam("rights", rights, type_=ARRAY(BigInteger))
        )
        .table_valued("left_operand", "right_operand", with_ordinality="position")
        .render_derived(name="pairs")
    )
    await session.execute(
        insert(AddPair).from_select(
            ["batch_id", "position", "left_operand", "right_operand"],
            select(literal(batch_id), pairs.c.position - 1, pairs.c.left_operand, pairs.c.right_operand),
        )
    )
    # Sums travel as text and PostgreSQL parses them: asyncpg's binary numeric encoder
    # is about five times slower than str() plus the server-side cast for 100,000 values.
    totals = (
        func.unnest(bindparam("sums", [str(total) for total in sums], type_=ARRAY(Text)))
        .table_valued("total", with_ordinality="position")
        .render_derived(name="totals")
    )
    await session.execute(
        insert(AddSum).from_select(
            ["batch_id", "position", "total"],
            select(literal(batch_id), totals.c.position - 1, cast(totals.c.total, Numeric(20, 0))),
        )
    )


async def get_batch(session: AsyncSession, batch_id: str) -> tuple[AddBatch, list[int]] | None:
    """Load a batch and its sums in payload order, in one statement.

    Args:
        session: Any session.
        batch_id: The batch id.

    Returns:
        The batch and its sums, or None.
    """
    sums = (
        select(func.array_agg(aggregate_order_by(AddSum.total, AddSum.position)))
        .where(AddSum.batch_id == AddBatch.batch_id)
        .scalar_subquery()
    )
    row = (await session.execute(select(AddBatch, sums).where(AddBatch.batch_id == batch_id))).first()
    if row is None:
        return None
    batch, totals = row
    return batch, [int(total) for total in totals or ()]


async def get_pairs(session: AsyncSession, batch_id: str) -> tuple[list[int], list[int]]:
    """Load a batch's pairs as two columns, in payload order.

    Args:
        session: Any session.
        batch_id: The batch id.

    Returns:
        First operands and second operands (empty when the batch has no pairs).
    """
    order = AddPair.position
    statement = select(
        func.array_agg(aggregate_order_by(AddPair.left_operand, order)),
        func.array_agg(aggregate_order_by(AddPair.right_operand, order)),
    ).where(AddPair.batch_id == batch_id)
    lefts, rights = (await session.execute(statement)).one()
    return list(lefts or ()), list(rights or ())
