"""Addition logic: compute on the pool, store once, replay by batch id."""

import itertools
import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.additions import compute, dao
from fastapi1.additions.pool import ComputePool
from fastapi1.additions.schemas import AddNumbersResponse, AddRequest, AddResponse
from fastapi1.errors import Conflict, NotFound

logger = logging.getLogger(__name__)


async def replay(session: AsyncSession, batch_id: str, lefts: list[int], rights: list[int]) -> AddResponse:
    """Answer a batch id that is already stored: the stored result if the payload matches.

    Args:
        session: The session.
        batch_id: The stored batch id.
        lefts: First operands of the new request.
        rights: Second operands of the new request.

    Returns:
        The stored response, unchanged (same sums and timestamps).

    Raises:
        Conflict: When the stored batch has a different payload.
    """
    if await dao.get_pairs(session, batch_id) != (lefts, rights):
        logger.info("Batch %s refused: already stored with a different payload", batch_id)
        raise Conflict(f"Batch {batch_id} already exists with a different payload")
    logger.info("Batch %s replayed from storage: same payload, the sums just computed were discarded", batch_id)
    return await get_batch(session, batch_id)


async def add_on_pool(pool: ComputePool, lefts: list[int], rights: list[int]) -> tuple[list[int], int, float]:
    """Add the pairs on the process pool.

    Args:
        pool: The process pool.
        lefts: First operands.
        rights: Second operands.

    Returns:
        The sums in order, the number of chunks sent to the pool, and seconds spent waiting on it.
    """
    if not lefts:
        # An empty batch is valid; there is nothing to send, and the pool cannot cut zero items into chunks.
        return [], 0, 0.0
    chunks, chunk_count, pool_seconds = await pool.map_chunks(compute.add_pairs, lefts, rights)
    return list(itertools.chain.from_iterable(chunks)), chunk_count, pool_seconds


async def add_batch(session: AsyncSession, pool: ComputePool, request: AddRequest) -> AddResponse:
    """Add every pair on the process pool and store the batch, once per batch id.

    The sums are computed before the database is touched, so no connection is held while
    the pool works. A concurrent request with the same new id waits on the primary key
    and then replays what the first one stored.

    Args:
        session: The write session.
        pool: The process pool.
        request: The batch.

    Returns:
        The sums with their timestamps.
    """
    lefts = [left for left, _ in request.payload]
    rights = [right for _, right in request.payload]
    started_at = datetime.now(UTC)
    sums, chunk_count, pool_seconds = await add_on_pool(pool, lefts, rights)
    completed_at = datetime.now(UTC)
    if not await dao.insert_batch(session, request.batchid, started_at, completed_at, (lefts, rights), sums):
        return await replay(session, request.batchid, lefts, rights)
    logger.info(
        "Batch %s stored: %d pairs added in %d chunks, %.6fs in the pool",
        request.batchid,
        len(sums),
        chunk_count,
        pool_seconds,
    )
    return AddResponse(
        batchid=request.batchid, response=sums, status="complete", started_at=started_at, completed_at=completed_at
    )


async def get_batch(session: AsyncSession, batch_id: str) -> AddResponse:
    """Load a stored batch.

    Args:
        session: Any session.
        batch_id: The batch id.

    Returns:
        The stored response.

    Raises:
        NotFound: When there is no such batch.
    """
    stored = await dao.get_batch(session, batch_id)
    if stored is None:
        raise NotFound(f"Batch {batch_id} not found")
    batch, sums = stored
    return AddResponse(
        batchid=batch.batch_id,
        response=sums,
        status="complete",
        started_at=batch.started_at,
        completed_at=batch.completed_at,
    )


async def add_numbers(pool: ComputePool, numbers: list[int]) -> AddNumbersResponse:
    """Sum integers on the process pool.

    Args:
        pool: The process pool.
        numbers: The integers.

    Returns:
        Their sum.
    """
    partial_sums, chunk_count, pool_seconds = await pool.map_chunks(compute.add_numbers, numbers)
    logger.info("Summed %d numbers in %d chunks, %.6fs in the pool", len(numbers), chunk_count, pool_seconds)
    return AddNumbersResponse(sum=sum(partial_sums))
