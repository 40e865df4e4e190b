"""Every Prometheus metric the processes record, and the helpers that record them.

Events are recorded where the state changes (``runs.services``: a claim, the end of an attempt;
``schedules.beat``: a tick; the request middleware), in whichever process that is, and reach
``/metrics`` through prometheus_client's multiprocess files (:mod:`scheduler_project.prometheus`).
Facts that live in the database or the broker (running runs per job against its limit, queue
depths, the outbox backlog, the beat leader, the worker fleet) are read when ``/metrics`` is
scraped instead (:mod:`scheduler_project.scrape`).

Labels and cardinality. Counters of runs carry ``tenant`` and ``job`` (the job's key): a series
exists only for a job that ran, so the count follows the jobs in use, a few series per job (its
attempts started, each final status it reached, its retries and dead letters). Histograms, which
cost a series per bucket, carry no tenant or job: the schedule lag is per ``queue``, attempt
durations per ``target`` type and ``outcome``. HTTP metrics are per route name, never per path.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

from scheduler_project import prometheus

if TYPE_CHECKING:
    from runs.models import Run
    from schedules.models import Job

prometheus.install()  # before the first metric below

# From a scheduler's slot (seconds late) to a long-running delivery (up to an hour).
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

SCHEDULE_LAG = Histogram(
    "scheduler_schedule_lag_seconds",
    "From a scheduled slot's time to the start of its run's first attempt (a schedule's jitter included).",
    ["queue"],
    buckets=LAG_BUCKETS,
)
ATTEMPTS_STARTED = Counter(
    "scheduler_run_attempts_started", "Attempts a worker claimed and started.", ["tenant", "job"]
)
RUNS_FINISHED = Counter(
    "scheduler_runs_finished",
    "Runs that execution brought to a final status (SUCCEEDED, FAILED or DEAD).",
    ["tenant", "job", "status"],
)
ATTEMPT_DURATION = Histogram(
    "scheduler_run_attempt_duration_seconds",
    "From an attempt's claim to its outcome (SUCCEEDED, RETRYABLE_ERROR, FATAL_ERROR, TIMEOUT, LOST).",
    ["target", "outcome"],
    buckets=DURATION_BUCKETS,
)
RETRIES = Counter("scheduler_run_retries", "Failed attempts that left their run RETRYING.", ["tenant", "job"])
DEAD_LETTERS = Counter(
    "scheduler_dead_letters", "Runs dead-lettered: retryable errors outlasted the attempts.", ["tenant", "job"]
)
BEAT_TICK = Histogram(
    "scheduler_beat_tick_duration_seconds",
    "A beat tick's work (lease, dispatch, retries, sweep), without its sleep.",
    ["role"],
    buckets=HTTP_BUCKETS,
)
BEAT_TICK_ERRORS = Counter("scheduler_beat_tick_errors", "Beat ticks that failed and were retried.")
HTTP_REQUESTS = Counter("scheduler_http_requests", "API requests answered.", ["method", "view", "status"])
HTTP_DURATION = Histogram(
    "scheduler_http_request_duration_seconds", "API request duration.", ["method", "view"], buckets=HTTP_BUCKETS
)


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def run_started(*, run: Run, job: Job, now: datetime) -> None:
    """A claim: the attempt counts, and a scheduled slot's first start measures the lag."""
    ATTEMPTS_STARTED.labels(run.tenant_id, job.key).inc()
    if run.kind == "SCHEDULED" and run.series == 1 and run.attempt == 1:
        SCHEDULE_LAG.labels(job.queue).observe(_seconds(run.scheduled_for, now))


def attempt_finished(*, job: Job, outcome: str, started_at: datetime, now: datetime) -> None:
    ATTEMPT_DURATION.labels(job.target_type or "unknown", str(outcome)).observe(_seconds(started_at, now))


def run_moved(*, run: Run, job: Job, status: str) -> None:
    """The run's status after an attempt: RETRYING, or a final one."""
    status = str(status)
    if status == "RETRYING":
        RETRIES.labels(run.tenant_id, job.key).inc()
        return
    RUNS_FINISHED.labels(run.tenant_id, job.key, status).inc()
    if status == "DEAD":
        DEAD_LETTERS.labels(run.tenant_id, job.key).inc()


def run_recorded_final(*, tenant_id: str, job_key: str, status: str) -> None:
    """A run written already final by the beat: MISSED (misfire policy) or SKIPPED (overlap)."""
    RUNS_FINISHED.labels(tenant_id, job_key, str(status)).inc()


def beat_tick(*, seconds: float, leader: bool) -> None:
    BEAT_TICK.labels("leader" if leader else "standby").observe(seconds)


def beat_tick_failed() -> None:
    BEAT_TICK_ERRORS.inc()


def http_request(*, method: str, view: str, status: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "other"  # a made-up verb is no new series
    HTTP_REQUESTS.labels(method, view, str(status)).inc()
    HTTP_DURATION.labels(method, view).observe(seconds)


# Inbound events (subscriptions.services, in `manage.py consume_events`). No tenant label: each
# subscription counts its own events in its row (matched_count, rejected_count), per tenant.
INBOUND_EVENTS_MALFORMED = Counter(
    "scheduler_inbound_events_malformed",
    "Inbound events refused before any filter was read, by reason (too_large, not_json, ...).",
    ["reason"],
)
EVENT_SUBSCRIPTION_OUTCOMES = Counter(
    "scheduler_event_subscription_outcomes",
    "What each subscription on an inbound event's subject did with it "
    "(triggered, duplicate, filtered, paused, rejected, failed).",
    ["outcome"],
)


def inbound_event_malformed(*, reason: str) -> None:
    INBOUND_EVENTS_MALFORMED.labels(reason).inc()


def event_subscription_outcome(*, outcome: str) -> None:
    EVENT_SUBSCRIPTION_OUTCOMES.labels(outcome).inc()
