"""Every Prometheus metric of fastapi1, and the one way of exposing them.

In an instance started by :mod:`fastapi1.serve`, ``PROMETHEUS_MULTIPROC_DIR`` is set before
any process imports prometheus-client: every API worker and every ``python -m fastapi1.worker``
then writes its values to its own memory-mapped files in that directory, and a scrape of any
API worker reads them all (:class:`~prometheus_client.multiprocess.MultiProcessCollector`).
Gauges there are ``livesum``: the sum over the processes alive (serve.py marks the dead ones).
Without the variable (an in-process test client, a lone worker) the values live in this
process's memory and the default registry exposes them.

Label values are bounded: route templates rather than paths, known methods, and at most
:data:`MAX_MODEL_NAMES` model names and :data:`MAX_AGENT_TYPES` agent types per process, the
rest counted as ``other``.
"""

import math
from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.values import ValueClass

# The text format generate_latest writes (prometheus-client's CONTENT_TYPE_LATEST names 1.0.0).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# prometheus-client's own choice, made when it was imported: values in the shared directory or in memory.
MULTIPROCESS: bool = getattr(ValueClass, "_multiprocess", False)
OTHER = "other"
# The from_status of a notification's creation.
NO_STATUS = "none"
MAX_MODEL_NAMES = 100
MAX_AGENT_TYPES = 20
# Rows per backend call; BATCH_MAX_SIZE is 64 by default.
BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# prometheus-client's default buckets, +Inf written out: the HTTP recorder sorts durations into them.
HTTP_DURATION_BUCKETS = (*Histogram.DEFAULT_BUCKETS[:-1], math.inf)


class CountedHistogram(Histogram):
    """A histogram that also takes observations already counted per bucket (see :mod:`fastapi1.http_metrics`)."""

    def observe_counts(self, counts: Sequence[int], total: float) -> None:
        """Add observations counted per bucket: ``counts[i]`` fell in bucket ``i`` (not cumulative).

        prometheus-client observes one value at a time, at two value updates each; this is its
        ``observe`` for many values at once, on the same internals (tests/test_metrics.py checks
        the buckets, sum and count it produces against ``observe``).

        Args:
            counts: Observations per bucket, in the order of the buckets.
            total: Their sum.
        """
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        self._sum.inc(total)
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


HTTP_REQUESTS = Counter(
    "fastapi1_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ("method", "route", "status"),
)
HTTP_REQUEST_DURATION = CountedHistogram(
    "fastapi1_http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its response, by method and route template.",
    ("method", "route"),
    buckets=HTTP_DURATION_BUCKETS,
)
HTTP_REQUESTS_IN_PROGRESS = Gauge(
    "fastapi1_http_requests_in_progress",
    "HTTP requests being served, by method and route template.",
    ("method", "route"),
    multiprocess_mode="livesum",
)

DB_POOL_CHECKED_OUT = Gauge(
    "fastapi1_db_pool_checked_out",
    "Database connections checked out of the pool, by engine (write or read).",
    ("engine",),
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "fastapi1_db_pool_waiting",
    "Checkouts that found no idle connection and are opening one or queued for one, by engine.",
    ("engine",),
    multiprocess_mode="livesum",
)

NOTIFICATION_TRANSITIONS = Counter(
    "fastapi1_notifications_transitions_total",
    "Notification status changes committed; from_status is 'none' when a notification is created.",
    ("from_status", "to_status"),
)

DELIVERY_RECEIPTS = Counter(
    "fastapi1_delivery_receipts_total",
    "Delivery receipt sends committed, by outcome: sent, retried (another attempt follows) or failed (given up).",
    ("outcome",),
)

COMPUTE_TASKS = Counter(
    "fastapi1_compute_tasks_total",
    "Chunks of work run on the addition process pool, by outcome (ok, or failed when the pool broke).",
    ("outcome",),
)

BACKEND_BATCHES = Counter(
    "fastapi1_backend_batches_total",
    "Backend calls made by the micro-batcher, by model and agent type ('' for none).",
    ("nn_model_name", "agent_type"),
)
BACKEND_BATCH_ROWS = Histogram(
    "fastapi1_backend_batch_rows",
    "Rows per backend call.",
    buckets=BATCH_ROWS_BUCKETS,
)
BACKEND_FAILURES = Counter(
    "fastapi1_backend_failures_total",
    "Backend calls that failed (error, timeout, wrong answer count), by model.",
    ("nn_model_name",),
)
PREDICTION_QUEUE_ROWS = Gauge(
    "fastapi1_prediction_queue_rows",
    "Rows admitted to the batcher and not yet sent or withdrawn.",
    multiprocess_mode="livesum",
)

BROKER_PUBLISHED = Counter(
    "fastapi1_broker_published_total",
    "Messages the broker confirmed, by queue; incremented by the broker's publisher.",
    ("queue",),
)
BROKER_CONSUMED = Counter(
    "fastapi1_broker_consumed_total",
    "Messages consumed, by queue and outcome (ack, reject, requeue); incremented by the broker's consumers.",
    ("queue", "outcome"),
)


class BoundedLabel:
    """Lets through the first ``limit`` distinct values of a client-controlled label, and ``other`` after."""

    def __init__(self, limit: int) -> None:
        """Start with no value seen.

        Args:
            limit: Distinct values kept.
        """
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        """The label value to record for ``value``.

        Args:
            value: What the client sent.
        """
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER


model_name_label = BoundedLabel(MAX_MODEL_NAMES)
agent_type_label = BoundedLabel(MAX_AGENT_TYPES)


def record_backend_call(nn_model_name: str, agent_type: str | None, rows: int, *, failed: bool) -> None:
    """Count one backend call of the batcher.

    Args:
        nn_model_name: The model called.
        agent_type: The batch's agent type, None for none.
        rows: Rows in the call.
        failed: Whether the call failed.
    """
    model = model_name_label(nn_model_name)
    BACKEND_BATCHES.labels(model, "" if agent_type is None else agent_type_label(agent_type)).inc()
    BACKEND_BATCH_ROWS.observe(rows)
    if failed:
        BACKEND_FAILURES.labels(model).inc()


def exposition() -> bytes:
    """Every metric in Prometheus's text format: of the whole instance, or of this process when it runs alone.

    Returns:
        The text, encoded.
    """
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
