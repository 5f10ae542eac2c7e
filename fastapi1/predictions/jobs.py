"""The worker's prediction relay: claim due jobs, run their rows through the batcher, record each outcome.

Jobs are claimed as notifications are (:class:`~fastapi1.worker.claims.ClaimLoop`, ``FOR UPDATE
SKIP LOCKED``, a lease in ``next_attempt_at``), and every claimed job's rows go to one
:class:`~fastapi1.predictions.controller.Gateway`, so rows of different jobs share batches.
A job whose worker dies is claimed again once its lease runs out; one whose workers keep
dying fails after ``PREDICTION_MAX_ATTEMPTS`` claims instead of taking every worker down.
"""

import asyncio
import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi1.config import DeliverySettings
from fastapi1.db.engine import Database
from fastapi1.errors import BackendFailed, Overloaded, ServiceUnavailable
from fastapi1.models.predictions import COMPLETE, FAILED
from fastapi1.predictions import controller, dao
from fastapi1.predictions.controller import Gateway
from fastapi1.predictions.schemas import AgentRequest, TextRequest
from fastapi1.worker.claims import ClaimLoop

logger = logging.getLogger(__name__)

# Seconds before a job that found the batcher's queue full is tried again.
OVERLOADED_RETRY_S = 1.0


@dataclass(slots=True)
class ClaimedJob:
    """A claimed job: its text, or its agents in the request's order."""

    id: uuid.UUID
    attempt: int
    input: str | None
    agents: list[AgentRequest] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a job; ``status`` None puts it back in the queue after ``retry_s``."""

    status: str | None
    result: str | None = None
    error: str | None = None
    actions: Sequence[float] = ()
    retry_s: float = 0.0


def claimed_jobs(rows: Sequence[Row[tuple[object, ...]]]) -> list[ClaimedJob]:
    """Group the claim's rows (one per agent, grouped by job) into jobs.

    Args:
        rows: Rows of :func:`dao.claim`.
    """
    jobs: dict[uuid.UUID, ClaimedJob] = {}
    for row in rows:
        job = jobs.get(row.id)
        if job is None:
            job = jobs[row.id] = ClaimedJob(row.id, row.attempts, row.input)
        if row.nn_model_name is not None:
            # Validated when the job was accepted: constructed, not validated again.
            agent = AgentRequest.model_construct(
                observations=row.observations, agent_type=row.agent_type, nn_model_name=row.nn_model_name
            )
            job.agents.append(agent)
    return list(jobs.values())


class JobRelay(ClaimLoop):
    """Claims prediction jobs, runs them through the gateway and records their outcomes until stopped."""

    def __init__(self, database: Database, settings: DeliverySettings, gateway: Gateway) -> None:
        """Set up an idle relay.

        Args:
            database: Where the jobs are.
            settings: Concurrency, claim size, lease, attempts.
            gateway: The batcher and the text model the jobs run on.
        """
        super().__init__(
            database,
            settings.prediction_concurrency,
            settings.prediction_poll_interval_s,
            settings.delivery_shutdown_timeout_s,
        )
        self.settings = settings
        self.gateway = gateway
        self.lease = timedelta(seconds=settings.prediction_lease_s)
        self.held: dict[uuid.UUID, int] = {}  # claimed and not yet recorded: id -> attempt

    async def claim(self, tasks: asyncio.TaskGroup) -> bool:
        """Claim as many due jobs as there are free slots (up to a claim's size) and start them.

        Args:
            tasks: Owner of the job tasks.

        Returns:
            Whether the claim was full, so that more may be waiting.
        """
        limit = min(self.settings.prediction_claim_size, self.free)
        if limit == 0:
            return False
        async with self.database.write_sessions() as session, session.begin():
            jobs = claimed_jobs(await dao.claim(session, limit, self.lease))
        self.free -= len(jobs)
        for job in jobs:
            self.held[job.id] = job.attempt
            self.start(tasks, self.process(job))
        return len(jobs) == limit

    async def seconds_until_due(self, session: AsyncSession) -> float | None:
        """Seconds until the earliest pending job is due, None if none is.

        Args:
            session: A read session.
        """
        return await dao.seconds_until_due(session)

    async def process(self, job: ClaimedJob) -> None:
        """Run one job and record its outcome.

        Args:
            job: The job.
        """
        try:
            outcome = await self.outcome(job)
        finally:
            self.freed()
        await self.write(functools.partial(record, job=job, outcome=outcome), f"prediction {job.id}")
        self.held.pop(job.id, None)
        if outcome.status is None:
            self.wake.set()

    async def outcome(self, job: ClaimedJob) -> Outcome:
        """Run a job, and classify what happened.

        Args:
            job: The job.
        """
        if job.attempt > self.settings.prediction_max_attempts:
            logger.error("Prediction %s: abandoned after %d claims", job.id, job.attempt - 1)
            return Outcome(FAILED, error=f"Abandoned: {job.attempt - 1} workers stopped before finishing it")
        try:
            return await self.compute(job)
        except BackendFailed as error:
            return Outcome(FAILED, error=error.message)
        except (Overloaded, ServiceUnavailable) as error:
            if len(job.agents) > self.gateway.batcher.policy.max_queue:
                # It would be refused on every retry: a queue smaller than the agent limit.
                return Outcome(FAILED, error=f"{len(job.agents)} agents do not fit the prediction queue")
            logger.warning("Prediction %s: retrying in %.1fs: %s", job.id, OVERLOADED_RETRY_S, error.message)
            return Outcome(None, retry_s=OVERLOADED_RETRY_S)

    async def compute(self, job: ClaimedJob) -> Outcome:
        """The job's answer from the backend, through the batcher.

        Args:
            job: The job.
        """
        batcher = self.gateway.batcher
        if job.input is None:
            return Outcome(COMPLETE, actions=await controller.act(batcher, job.agents))
        text = TextRequest.model_construct(input=job.input)
        answer = await controller.predict_text(batcher, text, self.gateway.text_model)
        return Outcome(COMPLETE, result=answer["result"])

    async def release(self) -> None:
        """Make the jobs this worker still holds due again at once, for the next worker to take."""
        if self.held:
            released = functools.partial(dao.release, held=dict(self.held), delay_s=0.0)
            if await self.try_write(released, f"{len(self.held)} unfinished predictions"):
                logger.info("Released %d unfinished predictions", len(self.held))


async def record(session: AsyncSession, job: ClaimedJob, outcome: Outcome) -> None:
    """Store a job's outcome, or put it back in the queue.

    Args:
        session: A write session.
        job: The job.
        outcome: What became of it.
    """
    if outcome.status is None:
        await dao.release(session, {job.id: job.attempt}, outcome.retry_s)
        return
    await dao.record(
        session, job.id, outcome.status, result=outcome.result, error=outcome.error, actions=outcome.actions
    )
