"""All SQL of prediction jobs: store a job, read it, claim due jobs, record outcomes, release leases.

Statements are built once, at import, and run as Core on the session's connection (see
:mod:`fastapi1.notifications.dao`). Every timestamp is the database's ``now()``: the lease means
the same on every worker, and ``response_time`` (``completed_at - created_at``) is measured on
one clock.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from sqlalchemy import (
    Float,
    Integer,
    Interval,
    Row,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    extract,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import Grouping

from fastapi1.db.sql import ONE_SECOND, constants, unnest
from fastapi1.models.predictions import PENDING, Prediction, PredictionAgent

predictions = cast(Table, Prediction.__table__)
agents = cast(Table, PredictionAgent.__table__)

# Committing a job sends a NOTIFY on this channel, which wakes the workers' prediction relays.
CREATED_CHANNEL = "predictions_created"
DOUBLE = Float(precision=53)


@dataclass(slots=True)
class NewJob:
    """A job to insert: the text body's ``input``, or the agents body, its agents column by column.

    The observation vectors are of any lengths, so they travel as one flat array (``values``)
    that each agent slices between ``starts`` and ``ends`` (1-based, inclusive).
    """

    id: uuid.UUID
    client_id: str | None = None
    run_slug: str | None = None
    input: str | None = None
    names: list[str] = field(default_factory=list)
    agent_types: list[str | None] = field(default_factory=list)
    nn_model_names: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add_agent(self, name: str, observations: list[float], agent_type: str | None, nn_model_name: str) -> None:
        """Append one agent.

        Args:
            name: Its name in the request.
            observations: Its observation vector.
            agent_type: Its type.
            nn_model_name: Its model.
        """
        self.names.append(name)
        self.agent_types.append(agent_type)
        self.nn_model_names.append(nn_model_name)
        self.starts.append(len(self.values) + 1)
        self.values.extend(observations)
        self.ends.append(len(self.values))


_insert_job = insert(predictions).values(
    id=bindparam("id", type_=Uuid()),
    status=PENDING,
    client_id=bindparam("client_id", type_=String()),
    run_slug=bindparam("run_slug", type_=String()),
    input=bindparam("input", type_=Text()),
    created_at=func.now(),
    updated_at=func.now(),
    next_attempt_at=func.now(),
)
_new_agents = (
    func.unnest(
        bindparam("names", type_=ARRAY(String())),
        bindparam("agent_types", type_=ARRAY(String())),
        bindparam("nn_model_names", type_=ARRAY(String())),
        bindparam("starts", type_=ARRAY(Integer())),
        bindparam("ends", type_=ARRAY(Integer())),
    )
    .table_valued("names", "agent_types", "nn_model_names", "starts", "ends", with_ordinality="positions")
    .render_derived(name="new_agents")
)
# Parenthesized: PostgreSQL subscripts a cast parameter only inside parentheses.
_values = type_coerce(Grouping(bindparam("values", type_=ARRAY(DOUBLE))), ARRAY(DOUBLE))
# The job and its agents in one statement (one round trip), as notifications do; the agents'
# positions are their order in the request (ordinality), so the answer lists them as sent.
INSERT_JOB = (
    insert(agents)
    .from_select(
        ["prediction_id", "position", "name", "observations", "agent_type", "nn_model_name"],
        select(
            bindparam("id", type_=Uuid()),
            _new_agents.c.positions,
            _new_agents.c.names,
            _values[_new_agents.c.starts : _new_agents.c.ends],
            _new_agents.c.agent_types,
            _new_agents.c.nn_model_names,
        ),
    )
    .add_cte(_insert_job.cte("inserted_job"))
)
# NOTIFY is transactional: delivered at COMMIT, so a worker never wakes for a job it cannot see.
WAKE_WORKERS = select(func.pg_notify(literal(CREATED_CHANNEL), literal("")))

_answers = (
    select(
        func.array_agg(aggregate_order_by(agents.c.name, agents.c.position)).label("names"),
        func.array_agg(aggregate_order_by(agents.c.action, agents.c.position)).label("actions"),
    )
    .where(agents.c.prediction_id == predictions.c.id)
    .lateral("answers")
)
# A job with its agents' names and actions, in the request's order.
SELECT_JOB = (
    select(
        predictions.c.id,
        predictions.c.status,
        predictions.c.input,
        predictions.c.result,
        predictions.c.error,
        extract("epoch", predictions.c.completed_at - predictions.c.created_at).label("response_time"),
        _answers.c.names,
        _answers.c.actions,
    )
    .select_from(predictions)
    .join(_answers, literal_column("true"))
    .where(predictions.c.id == bindparam("id", type_=Uuid()))
)

_claimable = (
    select(predictions.c.id)
    .where(predictions.c.status.in_(constants(PENDING)), predictions.c.next_attempt_at <= func.now())
    .order_by(predictions.c.next_attempt_at)
    .limit(bindparam("limit", type_=Integer()))
    .with_for_update(skip_locked=True)
    .cte("claimable")
)
_claimed = (
    update(predictions)
    .where(predictions.c.id == _claimable.c.id)
    .values(
        attempts=predictions.c.attempts + 1,
        updated_at=func.now(),
        next_attempt_at=func.now() + bindparam("lease", type_=Interval()),
    )
    .returning(predictions.c.id, predictions.c.input, predictions.c.attempts)
    .cte("claimed")
)
# One round trip: claim due jobs (the delivery relay's claim: SKIP LOCKED, a lease in
# next_attempt_at, attempts as the claim's number) and read their agents, one row per agent
# (a text job is one row without agent columns).
CLAIM = (
    select(
        _claimed.c.id,
        _claimed.c.input,
        _claimed.c.attempts,
        agents.c.observations,
        agents.c.agent_type,
        agents.c.nn_model_name,
    )
    .select_from(_claimed)
    .outerjoin(agents, agents.c.prediction_id == _claimed.c.id)
    .order_by(_claimed.c.id, agents.c.position)
)

_done = (
    update(predictions)
    .where(predictions.c.id == bindparam("job_id", type_=Uuid()), predictions.c.status.in_(constants(PENDING)))
    .values(
        status=bindparam("status", type_=String()),
        result=bindparam("result", type_=Text()),
        error=bindparam("error", type_=Text()),
        updated_at=func.now(),
        completed_at=func.now(),
        next_attempt_at=null(),
    )
    .returning(predictions.c.id)
    .cte("done")
)
_actions = unnest("outcome", positions=Integer(), actions=DOUBLE)
_acted = (
    update(agents)
    .where(
        agents.c.prediction_id == _done.c.id,
        agents.c.position == _actions.c.positions,
    )
    .values(action=_actions.c.actions)
    .cte("acted")
)
# A job's outcome and its agents' actions in one statement, applied only while the job is
# pending: whichever claim finishes first wins, wholly, and a late duplicate changes nothing.
# (Parameters are not named after a column of either table: SQLAlchemy would add it to the SET.)
RECORD = select(_done.c.id).add_cte(_acted)

_released = unnest("released", ids=Uuid(), claimed_attempts=Integer(), delays=Float())
# Make held jobs due again (after ``delays`` seconds), only while the claim is still this
# worker's: the attempt number fences off a worker whose lease already ran out.
RELEASE = (
    update(predictions)
    .where(
        predictions.c.id == _released.c.ids,
        predictions.c.status.in_(constants(PENDING)),
        predictions.c.attempts == _released.c.claimed_attempts,
    )
    .values(updated_at=func.now(), next_attempt_at=func.now() + _released.c.delays * ONE_SECOND)
    .returning(predictions.c.id)
)

# Seconds until the earliest pending job is due; one step into the claim's partial index.
NEXT_DUE = select(extract("epoch", func.min(predictions.c.next_attempt_at) - func.now())).where(
    predictions.c.status.in_(constants(PENDING))
)


async def insert_job(session: AsyncSession, job: NewJob) -> None:
    """Insert a pending job and its agents, and wake the workers at commit.

    Args:
        session: The write session.
        job: The job.
    """
    connection = await session.connection()
    parameters = {
        "id": job.id,
        "client_id": job.client_id,
        "run_slug": job.run_slug,
        "input": job.input,
        "names": job.names,
        "agent_types": job.agent_types,
        "nn_model_names": job.nn_model_names,
        "starts": job.starts,
        "ends": job.ends,
        "values": job.values,
    }
    await connection.execute(INSERT_JOB, parameters)
    await connection.execute(WAKE_WORKERS)


async def select_job(session: AsyncSession, prediction_id: uuid.UUID) -> Row[tuple[object, ...]] | None:
    """A job with its answer columns, or None.

    Args:
        session: Any session.
        prediction_id: The job.

    Returns:
        A row of ``id``, ``status``, ``input``, ``result``, ``error``, ``response_time`` (seconds),
        and ``names`` / ``actions`` (null for a text job).
    """
    connection = await session.connection()
    return (await connection.execute(SELECT_JOB, {"id": prediction_id})).one_or_none()


async def claim(session: AsyncSession, limit: int, lease: timedelta) -> Sequence[Row[tuple[object, ...]]]:
    """Claim up to ``limit`` due jobs, leased for ``lease``.

    Args:
        session: A write session; the claim holds once its transaction commits.
        limit: Most jobs to claim.
        lease: How long the claim holds before another worker may take the jobs again.

    Returns:
        One row per agent (one per text job) of ``id``, ``input``, ``attempts`` (this claim's
        number), ``observations``, ``agent_type``, ``nn_model_name``, grouped by job in agent order.
    """
    connection = await session.connection()
    rows = (await connection.execute(CLAIM, {"limit": limit, "lease": lease})).all()
    return cast(Sequence[Row[tuple[object, ...]]], rows)


async def record(
    session: AsyncSession,
    prediction_id: uuid.UUID,
    status: str,
    *,
    result: str | None = None,
    error: str | None = None,
    actions: Sequence[float] = (),
) -> bool:
    """Finish a pending job.

    Args:
        session: A write session.
        prediction_id: The job.
        status: ``complete`` or ``failed``.
        result: The text model's result.
        error: Why the job failed.
        actions: The agents' actions, in their order.

    Returns:
        Whether the job changed; False when another claim had finished it.
    """
    connection = await session.connection()
    parameters = {"job_id": prediction_id, "status": status, "result": result, "error": error}
    outcome = {"positions": list(range(1, len(actions) + 1)), "actions": list(actions)}
    return (await connection.execute(RECORD, parameters | outcome)).first() is not None


async def release(session: AsyncSession, held: dict[uuid.UUID, int], delay_s: float) -> set[uuid.UUID]:
    """Make held jobs due again after ``delay_s``, where the claim is still the held one.

    Args:
        session: A write session.
        held: Job id to the attempt this worker holds.
        delay_s: Seconds until they are due.

    Returns:
        The ids released.
    """
    connection = await session.connection()
    parameters = {"ids": list(held), "claimed_attempts": list(held.values()), "delays": [delay_s] * len(held)}
    return set((await connection.execute(RELEASE, parameters)).scalars())


async def seconds_until_due(session: AsyncSession) -> float | None:
    """Seconds until the earliest pending job is due (at most 0 if one is), None if none is pending.

    Args:
        session: Any session.
    """
    connection = await session.connection()
    seconds = (await connection.execute(NEXT_DUE)).scalar_one()
    return None if seconds is None else float(cast(float, seconds))
