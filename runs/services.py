"""Writes to runs: enqueueing, executing, retrying, cancelling, and recovering what was lost.

Every state change is a conditional UPDATE (``WHERE status IN (...)``), so a message delivered
twice, a late worker or two operators at once can never move a run backwards or run it twice:

    SCHEDULED → QUEUED → RUNNING → SUCCEEDED           (the beat writes a due slot's run QUEUED)
                           RUNNING → RETRYING → QUEUED       (a retryable error, attempts left)
                           RUNNING → FAILED                  (a fatal error)
                           RUNNING → DEAD                    (retryable errors until attempts ran out)
    SCHEDULED | QUEUED | RETRYING → CANCELLED
    FAILED | DEAD | CANCELLED → SCHEDULED                    (a retry: a new attempt series)

The database holds every timer: a retry waits as ``RETRYING`` with ``next_attempt_at`` (the beat
enqueues it when due), a run over its job's concurrency limit waits as ``QUEUED`` with
``blocked_at`` (the run that frees a slot enqueues it), and a ``RUNNING`` run holds a lease that
the recovery takes back if its worker dies. Nothing waits in the broker or in a worker process.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import re
import time
import weakref
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils import uuid as celery_uuid
from celery.utils.nodenames import anon_nodename
from django.conf import settings
from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Case, F, Field, Model, Q, QuerySet, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from runs.backoff import backoff_seconds
from runs.models import (
    CANCELLABLE_STATUSES,
    RETRIABLE_STATUSES,
    AttemptOutcome,
    DeadLetter,
    PendingSend,
    Run,
    RunAttempt,
    RunKind,
    RunStatus,
)
from runs.routing import run_queue
from runs.selectors import runs_retry_times
from runs.targets.base import Delivery, DeliveryError, DeliveryTimeout, Receipt
from runs.targets.registry import deliver
from scheduler_project import metrics, tracing
from scheduler_project.broker import queue_depths
from scheduler_project.celery import app as celery_app
from scheduler_project.errors import Conflict, ValidationFailed
from scheduler_project.events import event_build, events_record, events_traced
from scheduler_project.models import OutboxEvent
from schedules.models import Job, OverlapPolicy, Schedule
from schedules.wakeup import beats_wake
from workers.models import Worker
from workers.selectors import worker_id_by_name

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=Model)

EXECUTE_TASK = "runs.execute_run"
CLAIMABLE = (RunStatus.SCHEDULED, RunStatus.QUEUED)
# Kept on the attempt: enough of an error to diagnose, not a whole HTML error page.
MAX_ERROR_CHARS = 2000


def _lease_grace() -> timedelta:
    return timedelta(seconds=getattr(settings, "RUN_LEASE_GRACE_SECONDS", 30))


def _lease_expiry(job: Job) -> datetime:
    """When a run claimed now by ``job`` loses its lease: the job's timeout and the grace from now
    by the database's clock. Workers, beats and the database may sit on hosts whose clocks
    disagree; a lease is set and read against the one clock they share (the one-statement claim
    uses ``statement_timestamp()`` itself, what Django's ``Now()`` reads), so a worker's skewed
    clock neither shortens a lease (a second delivery while the first still runs) nor stretches
    it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            database_now: datetime = cursor.fetchone()[0]
    else:  # SQLite: a file on this host, whose clock is the database's
        database_now = timezone.now()
    return database_now + timedelta(seconds=job.timeout_seconds) + _lease_grace()


# --- Enqueueing ---------------------------------------------------------------------------------


def _publish(runs: Iterable[Route], *, first: bool = False) -> None:
    """Send one execute message per (run id, queue, timeout). The message carries only the id:
    the row is the truth, and a message delivered twice finds the run already claimed.

    One pipelined round trip per batch on Redis (kombu's Producer.batch; other transports
    publish one by one): a round trip per message capped a burst at ~1,000 runs/s. The time
    limits are a backstop behind the targets' own deadline: a task still running past them is
    killed, and the run's lease brings it back.

    What ``send_task`` does for each message, done once per batch where it can be: each queue is
    routed and declared once (a cached no-op once the connection has declared it), then every
    message is built and sent by Celery's own ``create_task_message`` and ``send_task_message``,
    the two calls ``send_task`` makes after its per-message lookups of the task's options, the
    routes and the settings. The messages are ``send_task``'s, headers and body alike, at half
    its cost (a third of a beat's burst, bench/beat.py); ``argsrepr``/``kwargsrepr`` are given
    rather than built with ``saferepr``. ``before_task_publish`` still fires for each.

    Traced, each message is published inside a span of its own run (:func:`_enqueue_spans`), so
    the message carries that run's trace context and not its batch's. ``first``: the runs' first
    send (a beat's batch, :func:`run_enqueue`), rather than a send again.
    """
    runs = list(runs)
    spans = _enqueue_spans(runs, first=first) if tracing.tracing_enabled() else {}
    amqp = celery_app.amqp
    sent_event = celery_app.conf.task_send_sent_event
    origin = anon_nodename()  # what Celery would otherwise ask the system for, per message
    with celery_app.producer_or_acquire() as producer, producer.batch():
        routes: dict[str, dict[str, Any]] = {}
        for queue in {queue for _, queue, _ in runs}:
            routes[queue] = amqp.router.route({"queue": queue}, EXECUTE_TASK)
            producer.maybe_declare(routes[queue]["queue"])
        for pk, queue, timeout in runs:
            args = [str(pk)]
            with spans.get(pk) or nullcontext():
                message = amqp.create_task_message(
                    celery_uuid(),
                    EXECUTE_TASK,
                    args,
                    {},
                    time_limit=timeout + 15,
                    soft_time_limit=timeout + 5,
                    create_sent_event=sent_event,
                    ignore_result=True,
                    argsrepr=repr(args),
                    kwargsrepr="{}",
                    origin=origin,
                )
                amqp.send_task_message(producer, EXECUTE_TASK, message, declare=[], **routes[queue])


def _enqueue_spans(runs: list[Route], *, first: bool) -> dict[UUID, AbstractContextManager[Any]]:
    """A span per run, not yet started: ``schedule.fire`` when a scheduled slot that never ran is
    sent (the root of the run's trace when the beat sends it), ``run.enqueue`` for any other send
    (a retry, a manual trigger, a backfill, a freed slot: a child of whatever operation sends it).
    One query for the batch, made only when tracing is on."""
    queues = {pk: queue for pk, queue, _ in runs}
    rows = Run.objects.filter(pk__in=list(queues)).values_list(
        "pk", "tenant_id", "kind", "schedule_id", "scheduled_for", "attempt", "series", "job__key"
    )
    now = timezone.now()
    spans: dict[UUID, AbstractContextManager[Any]] = {}
    for pk, tenant_id, kind, schedule_id, scheduled_for, attempt, series, job_key in rows:
        fire = first and kind == RunKind.SCHEDULED and attempt == 0 and series == 1
        attributes = {
            "scheduler.run.id": str(pk),
            "scheduler.run.kind": kind,
            "scheduler.run.scheduled_for": scheduled_for.isoformat(),
            "scheduler.run.series": series,
            "scheduler.schedule.id": str(schedule_id) if schedule_id else None,
            "scheduler.job": job_key,
            "scheduler.tenant.id": tenant_id,
            "messaging.destination.name": queues[pk],
            "scheduler.schedule.lag_seconds": (now - scheduled_for).total_seconds() if fire else None,
        }
        spans[pk] = tracing.span("schedule.fire" if fire else "run.enqueue", attributes)
    return spans


# A run's message: the run's id, its job's queue for the capabilities it requires, its job's timeout.
Route = tuple[UUID, str, int]


def run_route(run_id: UUID, job: Job) -> Route:
    return run_id, run_queue(job.queue, job.required_capabilities or []), job.timeout_seconds


def _routes(run_ids: list[UUID], **filters: Any) -> list[Route]:
    rows = Run.objects.filter(pk__in=run_ids, **filters).values_list(
        "pk", "job__queue", "job__required_capabilities", "job__timeout_seconds"
    )
    return [(pk, run_queue(queue, caps or []), timeout) for pk, queue, caps, timeout in rows]


def run_enqueue(*, run_ids: Iterable[UUID]) -> int:
    """Publish each SCHEDULED run's message to its job's queue and mark it QUEUED.

    Called after the transaction that created the runs committed, so a worker never receives
    an id it cannot see. Returns how many were sent.
    """
    return runs_enqueue_routed(routes=_routes(list(run_ids), status=RunStatus.SCHEDULED))


def runs_enqueue_routed(*, routes: list[Route]) -> int:
    """:func:`run_enqueue` for committed SCHEDULED runs whose routes the caller knows: no read of
    the runs first. A run cancelled meanwhile is sent anyway, and its message finds it cancelled."""
    if not routes:
        return 0
    _publish(routes, first=True)
    now = timezone.now()
    # A worker may already have claimed a run whose message went out first: it keeps its status
    # and gets its queued_at.
    Run.objects.filter(
        Q(status=RunStatus.SCHEDULED) | Q(queued_at__isnull=True), pk__in=[pk for pk, _, _ in routes]
    ).update(
        status=Case(When(status=RunStatus.SCHEDULED, then=Value(RunStatus.QUEUED)), default=F("status")),
        queued_at=now,
        updated_at=now,
    )
    return len(routes)


def runs_send_on_commit(*, routes: list[Route]) -> None:
    """Send the messages of runs the current transaction writes ``QUEUED`` (a beat's batch) once
    it commits; a worker never receives an id it cannot see.

    A :class:`PendingSend` row naming the runs commits with them and is deleted once their
    messages are on the broker, so the sweeper still knows which runs may never have been sent
    (:func:`run_sweep`). That replaces :func:`run_enqueue`'s update of each run from
    ``SCHEDULED`` to ``QUEUED`` after the send: every index of a run takes a new entry when its
    status changes, and that update was a sixth of a burst's time (bench/beat.py)."""
    if not routes:
        return
    pending = PendingSend.objects.create(run_ids=[str(pk) for pk, _, _ in routes])

    def send() -> None:
        _publish(routes, first=True)
        with connection.cursor() as cursor:  # QuerySet.delete() wraps a lone DELETE in a transaction
            cursor.execute(f"DELETE FROM {PendingSend._meta.db_table} WHERE id = %s", [pending.pk])

    transaction.on_commit(send)


def run_sweep(*, now: datetime, stale_after: timedelta, limit: int = 1000) -> int:
    """Enqueue again what the broker may have lost: runs committed but never sent (a crash
    between commit and send: SCHEDULED runs, and the runs of a beat's batch whose
    :class:`PendingSend` marker is still there), and QUEUED runs no worker started (a broker
    restart without persistence, or a worker that died holding the message). Re-sending is safe
    because execution claims a run by a conditional update. Returns how many were sent.

    Left alone: runs waiting for a concurrency slot, whose turn comes when a slot frees
    (:func:`runs_wake_waiting` instead keeps them moving in their order), and on Redis the
    stale runs of a queue that still holds messages: workers have not caught up with it, the
    run's message is most likely among those waiting, and a copy would only lengthen the
    backlog. They are sent again once their queue is empty and they have not started.
    """
    cutoff = now - stale_after
    stale = dict(
        Run.objects.filter(
            Q(status=RunStatus.SCHEDULED, created_at__lt=cutoff)
            | Q(status=RunStatus.QUEUED, queued_at__lt=cutoff, blocked_at__isnull=True)
        )
        .order_by("created_at")
        .values_list("pk", "status")[:limit]
    )
    # A beat's batch whose marker outlived its send: the beat died between its commit and its
    # messages (runs_send_on_commit). Those runs were never sent, whatever their queue holds.
    markers: list[int] = []
    unsent: list[UUID] = []
    for pk, run_ids in PendingSend.objects.filter(created_at__lt=cutoff).order_by("pk").values_list("pk", "run_ids"):
        if len(unsent) >= limit:
            break
        markers.append(pk)
        unsent += [UUID(run_id) for run_id in run_ids]
    if not stale and not markers:
        return 0
    queued = _routes([pk for pk, status in stale.items() if status == RunStatus.QUEUED])
    depths = queue_depths(queue for _, queue, _ in queued) or {}
    resend = [pk for pk, queue, _ in queued if not depths.get(queue)] + unsent
    # Back to SCHEDULED, and the markers gone, in one commit: a sweeper that dies before sending
    # leaves SCHEDULED runs created long ago, which the next sweep sends; one that dies after
    # sending leaves no marker to send them again by.
    with transaction.atomic():
        Run.objects.filter(pk__in=resend, status=RunStatus.QUEUED, blocked_at__isnull=True).update(
            status=RunStatus.SCHEDULED
        )
        PendingSend.objects.filter(pk__in=markers).delete()
    return run_enqueue(run_ids=[pk for pk, status in stale.items() if status == RunStatus.SCHEDULED] + resend)


# Waiting runs one sweep looks at per job (and so the most it wakes).
MAX_WOKEN_PER_JOB = 1000


def runs_wake_waiting(*, now: datetime, job_ids: Iterable[UUID] | None = None, limit: int = 100) -> int:
    """Send again, oldest first, runs waiting for a slot (QUEUED with ``blocked_at``) that have
    one now: their job's concurrency limit was raised or removed, or the wake-up sent by the run
    that freed the slot was lost with the broker. Without ``job_ids``, the jobs of the oldest
    waiting runs (the sweeper); returns how many were sent.

    A job's free slots are its limit less its running runs and its runs already on their way to a
    worker (QUEUED, not waiting), so no more are woken than can start; a BUFFER_ONE run waits
    while its schedule has a run running or on its way. The run that frees a slot wakes the next
    waiter itself (:func:`_release_slot`): this is the net under it.
    """
    waiting = Run.objects.filter(status=RunStatus.QUEUED, blocked_at__isnull=False)
    if job_ids is not None:
        waiting = waiting.filter(job_id__in=list(job_ids))
    jobs = list(dict.fromkeys(waiting.order_by("blocked_at").values_list("job_id", flat=True)[:limit]))
    woken: list[UUID] = []
    for job_id in jobs:
        woken += _wake_for_job(job_id, now=now)
    return len(woken)


def _holding(runs: QuerySet[Run]) -> QuerySet[Run]:
    """Those of ``runs`` that hold a slot or are on their way to take one (a lease is read against
    the database's clock, which set it: :func:`_lease_expiry`)."""
    return runs.filter(
        Q(status=RunStatus.RUNNING, lease_expires_at__gt=Now()) | Q(status=RunStatus.QUEUED, blocked_at__isnull=True)
    )


@transaction.atomic
def _wake_for_job(job_id: UUID, *, now: datetime) -> list[UUID]:
    job = Job.objects.select_for_update().filter(pk=job_id).first()  # claims count under this lock
    if job is None:
        return []
    free: float = float("inf")
    if job.concurrency_limit is not None:
        free = job.concurrency_limit - _holding(Run.objects.filter(job_id=job_id)).count()
    if free <= 0:
        return []
    waiters = (
        Run.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(job_id=job_id, status=RunStatus.QUEUED, blocked_at__isnull=False)
        .order_by("blocked_at")
        .values_list("pk", "schedule_id", "schedule__overlap_policy")
    )
    woken: list[UUID] = []
    buffered: set[UUID] = set()  # schedules whose one buffered run has just been woken
    for pk, schedule_id, overlap_policy in waiters[:MAX_WOKEN_PER_JOB]:
        if len(woken) >= free:
            break
        if overlap_policy == OverlapPolicy.BUFFER_ONE:
            if schedule_id in buffered or _holding(Run.objects.filter(schedule_id=schedule_id)).exists():
                continue
            buffered.add(schedule_id)
        woken.append(pk)
    if woken:
        _wake(woken, now=now)
    return woken


def _wake(run_ids: list[UUID], *, now: datetime) -> None:
    """Waiting runs leave the wait: sent again after the commit, ``queued_at`` now (when the
    sweeper should next worry about them)."""
    Run.objects.filter(pk__in=run_ids).update(blocked_at=None, queued_at=now, updated_at=now)
    routes = _routes(run_ids)
    transaction.on_commit(lambda: _publish(routes))


def run_dispatch_retries(*, now: datetime, limit: int = 500) -> int:
    """Enqueue the RETRYING runs whose next attempt is due (every beat calls this; SKIP LOCKED
    shares the work). Returns how many were sent."""
    due_now = Run.objects.filter(status=RunStatus.RETRYING, next_attempt_at__lte=now)
    with transaction.atomic():  # the beat calls this only when its probe saw a due retry
        due = list(
            due_now.select_for_update(skip_locked=True).order_by("next_attempt_at").values_list("pk", flat=True)[:limit]
        )
        if not due:
            return 0
        Run.objects.filter(pk__in=due).update(
            status=RunStatus.QUEUED, queued_at=now, next_attempt_at=None, updated_at=now
        )
        routes = _routes(due)
        transaction.on_commit(lambda: _publish(routes))
    return len(due)


def run_next_retry_at() -> datetime | None:
    """When the earliest waiting retry is due (the beat sleeps no longer than that)."""
    return runs_retry_times().first()


# --- Executing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A run this worker now executes: attempt ``number`` of ``series``, until ``lease_expires_at``."""

    run: Run
    job: Job
    attempt: RunAttempt


def run_execute(*, run_id: UUID, worker_name: str = "") -> str:
    """Execute one delivery of a run's message: claim it, deliver to its target, record the outcome.

    Returns what happened, for the task's log line: ``"not claimed"`` (a duplicate delivery, a
    cancelled or finished run, or one now waiting for a concurrency slot) or the run's new status.
    """
    claim = run_claim(run_id=run_id, worker_name=worker_name)
    if claim is None:
        logger.info("run %s: not claimed", run_id)
        return "not claimed"
    run = claim.run
    context = {"tenant_id": run.tenant_id, "job": claim.job.key}
    if run.schedule_id is not None:
        context["schedule_id"] = str(run.schedule_id)
    tracing.span_annotate(
        {
            "scheduler.tenant.id": run.tenant_id,
            "scheduler.job": claim.job.key,
            "scheduler.schedule.id": context.get("schedule_id"),
        }
    )
    # Every line logged from here on names the run's tenant, job and schedule.
    with structlog.contextvars.bound_contextvars(**context):
        result = _deliver_and_record(claim)
        logger.info("run %s: %s", run_id, result)
    return result


def _deliver_and_record(claim: Claim) -> str:
    try:
        # Traced: the target's request or message carries this span's context (run_delivery).
        with tracing.span("run.deliver", _deliver_attributes(claim)):
            receipt = deliver(run_delivery(claim))
    except DeliveryError as error:
        return run_attempt_failed(claim=claim, error=error)
    except SoftTimeLimitExceeded:  # the backstop behind the target's own deadline
        return run_attempt_failed(claim=claim, error=DeliveryTimeout("the task's soft time limit was reached"))
    except Exception as exc:  # a bug must not leave the run RUNNING until its lease runs out
        logger.exception("delivering run %s failed unexpectedly", claim.run.pk)
        return run_attempt_failed(claim=claim, error=DeliveryError(str(exc) or type(exc).__name__))
    return run_attempt_succeeded(claim=claim, receipt=receipt)


def run_claim(*, run_id: UUID, worker_name: str = "", now: datetime | None = None) -> Claim | None:
    """Take a SCHEDULED or QUEUED run for execution, or None when it is not claimable now.

    Under a concurrency limit (the job's, or BUFFER_ONE on its schedule) a run that finds every
    slot taken is marked waiting (``blocked_at``) and not claimed: the worker lets go of it, and
    the run that frees a slot enqueues it again. The job row's lock makes counting the
    slots and taking one a single step across the whole fleet.

    On PostgreSQL a run without such a gate is claimed by one statement
    (:func:`_claim_in_one_statement`); the gated ones, and every claim on SQLite, go through the ORM.
    """
    now = now or timezone.now()
    if _in_one_statement():
        decided, claim = _claim_in_one_statement(run_id=run_id, worker_name=worker_name, now=now)
        if decided:
            return claim
    return _claim_with_orm(run_id=run_id, worker_name=worker_name, now=now)


@transaction.atomic
def _claim_with_orm(*, run_id: UUID, worker_name: str, now: datetime) -> Claim | None:
    """:func:`run_claim` for any run, on any database: the run's row locked, the gate counted
    under the job's (or the schedule's) lock."""
    run = (
        Run.objects.select_for_update(of=("self",))
        .select_related("job", "schedule")
        .filter(pk=run_id, status__in=CLAIMABLE)
        .first()
    )
    if run is None:
        return None
    job = run.job
    waits_for = _slot_taken(run)
    if waits_for:
        if run.blocked_at is None:
            run.blocked_at = now
        run.reason = waits_for
        run.save(update_fields=["blocked_at", "reason", "updated_at"])
        return None
    run.status = RunStatus.RUNNING
    run.attempt += 1
    run.started_at = run.started_at if run.attempt > 1 else now
    run.finished_at = None
    run.blocked_at = None
    run.reason = ""
    run.lease_expires_at = _lease_expiry(job)
    # The registered worker (workers.signals) whose name is the Celery hostname: its heartbeat
    # counts this run, and the run is taken back at once if that worker goes offline.
    run.worker_id = worker_id_by_name(name=worker_name)
    run.save(
        update_fields=[
            "status",
            "attempt",
            "started_at",
            "finished_at",
            "blocked_at",
            "reason",
            "lease_expires_at",
            "worker",
            "updated_at",
        ]
    )
    attempt = RunAttempt.objects.create(
        run=run,
        series=run.series,
        number=run.attempt,
        worker_id=run.worker_id,
        worker_name=worker_name[:200],
        started_at=now,
    )
    _run_event(run, "started", attempt=run.attempt, worker=worker_name)
    metrics.run_started(run=run, job=job, now=now)
    return Claim(run=run, job=job, attempt=attempt)


def _slot_taken(run: Run) -> str:
    """Why the run must wait for a slot, or "" when it may start. Locks what it counts by."""
    job = run.job
    if job.concurrency_limit is not None:
        list(Job.objects.select_for_update().filter(pk=job.pk).values_list("pk", flat=True))
        running = Run.objects.filter(job_id=job.pk, status=RunStatus.RUNNING, lease_expires_at__gt=Now()).count()
        if running >= job.concurrency_limit:
            return f"waiting for a slot: {running} of the job's concurrency limit of {job.concurrency_limit} run"
    schedule = run.schedule
    if schedule is not None and schedule.overlap_policy == OverlapPolicy.BUFFER_ONE:
        list(Schedule.objects.select_for_update().filter(pk=schedule.pk).values_list("pk", flat=True))
        if Run.objects.filter(schedule_id=schedule.pk, status=RunStatus.RUNNING, lease_expires_at__gt=Now()).exists():
            return "waiting for the schedule's previous run to finish (overlap policy BUFFER_ONE)"
    return ""


def run_body(run: Run, job: Job) -> dict[str, Any]:
    """The document a target receives: who and what this run is, and its payload (the job's
    payload under the schedule's, under a trigger's override)."""
    return {
        "run_id": str(run.pk),
        "tenant_id": run.tenant_id,
        "job": job.key,
        "job_id": str(job.pk),
        "schedule_id": str(run.schedule_id) if run.schedule_id else None,
        "kind": run.kind,
        "scheduled_for": run.scheduled_for.isoformat(),
        "attempt": run.attempt,
        "series": run.series,
        "payload": run.payload,
    }


def run_delivery(claim: Claim) -> Delivery:
    run, job = claim.run, claim.job
    return Delivery(
        run_id=str(run.pk),
        tenant_id=run.tenant_id,
        job_key=job.key,
        target=job.target,
        body=run_body(run, job),
        deadline=time.monotonic() + job.timeout_seconds,
        secret=job.webhook_secret or settings.WEBHOOK_HMAC_SECRET,
        # The current trace context (traceparent ...), when traced: an EVENT target's message
        # carries it; an HTTP target's request gets it from requests' instrumentation anyway.
        headers=tracing.trace_headers(),
    )


def _deliver_attributes(claim: Claim) -> dict[str, Any]:
    return {
        "scheduler.run.id": str(claim.run.pk),
        "scheduler.run.attempt": claim.attempt.number,
        "scheduler.run.series": claim.attempt.series,
        "scheduler.job": claim.job.key,
        "scheduler.target.type": claim.job.target.get("type"),
    }


def run_attempt_succeeded(*, claim: Claim, receipt: Receipt, now: datetime | None = None) -> str:
    now = now or timezone.now()
    outcome = {"response_status": receipt.status, "latency_ms": receipt.latency_ms, **receipt.detail}
    return _finish(
        claim,
        _Finish(
            now=now,
            status=RunStatus.SUCCEEDED,
            attempt_outcome=AttemptOutcome.SUCCEEDED,
            response_status=receipt.status,
            latency_ms=receipt.latency_ms,
            excerpt=receipt.excerpt,
            outcome={k: v for k, v in outcome.items() if v is not None},
        ),
    )


def run_attempt_failed(*, claim: Claim, error: DeliveryError, now: datetime | None = None, lost: bool = False) -> str:
    """Record a failed attempt: RETRYING with a backoff while attempts remain and the error is
    retryable, else FAILED (fatal) or DEAD (dead-lettered)."""
    now = now or timezone.now()
    job = claim.job
    if lost:
        attempt_outcome = AttemptOutcome.LOST
    elif isinstance(error, DeliveryTimeout):
        attempt_outcome = AttemptOutcome.TIMEOUT
    else:
        attempt_outcome = AttemptOutcome.RETRYABLE_ERROR if error.retryable else AttemptOutcome.FATAL_ERROR
    next_attempt_at = None
    if not error.retryable:
        status = RunStatus.FAILED
    elif claim.attempt.number < job.max_attempts:
        status = RunStatus.RETRYING
        delay = backoff_seconds(
            job.backoff_strategy,
            base=job.backoff_base_seconds,
            cap=job.backoff_max_seconds,
            attempt=claim.attempt.number,
            retry_after=error.retry_after,
        )
        next_attempt_at = now + timedelta(seconds=delay)
    else:
        status = RunStatus.DEAD
    return _finish(
        claim,
        _Finish(
            now=now,
            status=status,
            attempt_outcome=attempt_outcome,
            response_status=error.status,
            latency_ms=error.latency_ms,
            excerpt=error.excerpt,
            error_type=error.error_type,
            error_message=str(error)[:MAX_ERROR_CHARS],
            next_attempt_at=next_attempt_at,
            outcome={"response_status": error.status} if error.status is not None else {},
        ),
    )


@dataclass(frozen=True)
class _Finish:
    """How an attempt ended, and what becomes of its run."""

    now: datetime
    status: str
    attempt_outcome: str
    response_status: int | None = None
    latency_ms: int | None = None
    excerpt: str = ""
    error_type: str = ""
    error_message: str = ""
    next_attempt_at: datetime | None = None
    outcome: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.status != RunStatus.RETRYING


def _finish(claim: Claim, finish: _Finish) -> str:
    """End the claimed attempt and move the run on, unless the run was taken from this worker
    (its lease expired and the recovery retried it): then only the attempt is recorded.

    On PostgreSQL the common case is one statement (:func:`_finish_in_one_statement`); what it
    does not cover, and every finish on SQLite, goes through the ORM."""
    if _in_one_statement() and _finishes_in_one_statement(claim, finish) and _finish_in_one_statement(claim, finish):
        return finish.status
    return _finish_with_orm(claim, finish)


def _finish_with_orm(claim: Claim, finish: _Finish) -> str:
    """:func:`_finish` for any run, on any database."""
    run, job = claim.run, claim.job
    now, status, final = finish.now, finish.status, finish.final
    attempt_outcome, response_status = finish.attempt_outcome, finish.response_status
    error_type, error_message = finish.error_type, finish.error_message
    with transaction.atomic():
        # Conditional, and first: it locks the run before the job, the order run_claim takes.
        moved = Run.objects.filter(
            pk=run.pk, status=RunStatus.RUNNING, series=claim.attempt.series, attempt=claim.attempt.number
        ).update(
            status=status,
            finished_at=now if final else None,
            next_attempt_at=finish.next_attempt_at,
            lease_expires_at=None,
            error_type=error_type,
            error_message=error_message,
            outcome=finish.outcome,
            updated_at=now,
        )
        RunAttempt.objects.filter(pk=claim.attempt.pk).update(
            finished_at=now,
            outcome=attempt_outcome,
            response_status=response_status,
            latency_ms=finish.latency_ms,
            response_excerpt=finish.excerpt,
            error_type=error_type,
            error_message=error_message,
        )
        # Metrics count at the change, inside its transaction: a rollback after them (rare) counts one too many.
        metrics.attempt_finished(job=job, outcome=attempt_outcome, started_at=claim.attempt.started_at, now=now)
        if not moved:
            logger.warning(
                "run %s was taken back from this worker (its lease expired): result kept on the attempt", run.pk
            )
            return "superseded"
        metrics.run_moved(run=run, job=job, status=status)
        # Serialise with run_claim's count of the slots (job, then schedule: the claim's order), so
        # a run that claim finds busy is either seen waiting here and woken, or sees this finish.
        if job.concurrency_limit is not None:
            list(Job.objects.select_for_update().filter(pk=job.pk).values_list("pk", flat=True))
        if run.schedule is not None and run.schedule.overlap_policy == OverlapPolicy.BUFFER_ONE:
            list(Schedule.objects.select_for_update().filter(pk=run.schedule.pk).values_list("pk", flat=True))
        _finish_apply(run, finish)
        if status == RunStatus.RETRYING:
            beats_wake()  # the beat's sleep may end after the retry is due
        elif status == RunStatus.DEAD:
            DeadLetter.objects.create(
                tenant_id=run.tenant_id,
                run=run,
                job=job,
                series=claim.attempt.series,
                attempts=claim.attempt.number,
                payload=run.payload,
                target=job.target,
                error_type=error_type,
                error_message=error_message,
                response_status=response_status,
            )
        if status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DEAD):
            _run_event(run, status.lower(), attempt=claim.attempt.number)
        _release_slot(run, job)
        if final and run.schedule_id is not None:
            from schedules.services import schedule_run_finished  # schedules imports runs: import here

            schedule_run_finished(run=run, finished_at=now)
    return status


def _release_slot(run: Run, job: Job) -> None:
    """Enqueue again, after the commit, the oldest runs waiting for the slot this run frees."""
    waiting = Q()
    if job.concurrency_limit is not None:
        waiting |= Q(job_id=job.pk)
    if (
        run.schedule_id is not None
        and run.schedule is not None
        and run.schedule.overlap_policy == OverlapPolicy.BUFFER_ONE
    ):
        waiting |= Q(schedule_id=run.schedule_id)
    if not waiting:
        return
    woken = list(
        Run.objects.select_for_update(skip_locked=True)
        .filter(waiting, status=RunStatus.QUEUED, blocked_at__isnull=False)
        .order_by("blocked_at")
        .values_list("pk", flat=True)[:1]
    )
    if woken:
        _wake(woken, now=timezone.now())


# --- Claims and finishes in one statement (PostgreSQL) -------------------------------------------
#
# The ORM path claims a run in seven round trips (BEGIN, the locking read, the worker's lookup,
# the update, the attempt's and the event's inserts, COMMIT) and finishes it in five, every
# statement parsed and planned anew: most of a run's cost against a target that answers at once
# (bench/execution.py). One statement whose data-modifying CTEs move the run and write the
# attempt and the outbox event is one round trip and one transaction (outside an atomic block
# it commits by itself), prepared once per connection, and it writes the rows the ORM path
# writes. It covers the common case only and changes nothing when its conditions do not hold;
# whatever it leaves is the ORM path's, which handles every case.


def _in_one_statement() -> bool:
    """Whether claims and finishes may take their one-statement form: PostgreSQL has
    data-modifying CTEs, SQLite none."""
    return connection.vendor == "postgresql"


def _concrete(model: type[Model]) -> list[tuple[Field, str]]:
    """Every concrete field of ``model``, in the order of its rows, with its column."""
    return [(field, field.column) for field in model._meta.concrete_fields if field.column]


def _columns(model: type[Model], alias: str, *, prefix: str = "") -> str:
    """``alias."col", ...`` for every concrete field of ``model`` (``AS "<prefix>col"`` with a prefix)."""
    qn = connection.ops.quote_name
    return ", ".join(f"{alias}.{qn(c)}" + (f" AS {qn(prefix + c)}" if prefix else "") for _, c in _concrete(model))


@functools.cache
def _converters(model: type[Model]) -> tuple[tuple[Any, tuple[Any, ...]], ...]:
    """For each concrete field of ``model``, its column expression and what turns a value a raw
    cursor read into the field's Python value (a JSON field's text into its document), as a
    queryset's compiler would."""
    table = model._meta.db_table
    found = []
    for field in model._meta.concrete_fields:
        column = field.get_col(table)
        found.append((column, tuple(connection.ops.get_db_converters(column) + column.get_db_converters(connection))))
    return tuple(found)


def _from_row(model: type[ModelT], values: Sequence[Any], db: BaseDatabaseWrapper) -> ModelT:
    """An instance of ``model`` from its concrete fields' values in a raw row, as a queryset builds it."""
    converted = []
    for value, (column, converters) in zip(values, _converters(model), strict=True):
        for converter in converters:
            value = converter(value, column, db)
        converted.append(value)
    return model.from_db(db.alias, [f.attname for f in model._meta.concrete_fields], converted)


@dataclass(frozen=True)
class _Insert:
    """``INSERT INTO <table> (...) SELECT ... FROM <source>``: a row of a model for each row of
    ``source`` (a CTE), some columns computed from it, the others a Python instance's values, so
    that defaults (ids, timestamps) and columns added later come out as the ORM writes them."""

    sql: str
    parameters: tuple[tuple[str, Field], ...]

    @classmethod
    def build(cls, model: type[Model], *, source: str, computed: dict[str, str], prefix: str) -> _Insert:
        qn = connection.ops.quote_name
        columns = [(f, c) for f, c in _concrete(model) if f is not model._meta.auto_field]  # from its sequence
        values = ", ".join(computed.get(c, f"%({prefix}_{c})s") for _, c in columns)
        sql = (
            f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for _, c in columns)}) "
            f"SELECT {values} FROM {source}"
        )
        return cls(sql=sql, parameters=tuple((f"{prefix}_{c}", f) for f, c in columns if c not in computed))

    def params(self, instance: Model, db: BaseDatabaseWrapper) -> dict[str, Any]:
        return {name: field.get_db_prep_save(getattr(instance, field.attname), db) for name, field in self.parameters}


# The database sessions (psycopg2 connections) of this process, and the statements prepared in each.
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _Statement:
    """A statement run for every run, PREPAREd once in each database session: PostgreSQL then
    parses and plans it once, not each time (half of the claim's time, bench/execution.py).
    ``sql`` takes ``%(name)s`` parameters; their types must follow from their context (a cast
    where they do not). Behind a pooler that hands a session to other clients between
    transactions (PgBouncer in transaction mode, declared to Django by DISABLE_SERVER_SIDE_CURSORS)
    a prepared statement may be gone or someone else's: there it is sent whole each time."""

    name: str
    sql: str

    @functools.cached_property
    def _positional(self) -> tuple[str, tuple[str, ...]]:
        """``sql`` with ``$1``, ``$2`` ... for its parameters, and their names in that order."""
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        return re.sub(r"%\((\w+)\)s", number, self.sql), tuple(names)

    def execute(self, cursor: CursorWrapper, params: dict[str, Any]) -> None:
        if cursor.db.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
            cursor.execute(self.sql, params)
            return
        sql, names = self._positional
        prepared = _prepared.setdefault(cursor.db.connection, set())
        if self.name not in prepared:
            cursor.execute(f"PREPARE {self.name} AS {sql}")
            prepared.add(self.name)
        cursor.execute(f"EXECUTE {self.name} ({', '.join(['%s'] * len(names))})", [params[n] for n in names])


# scheduler.run.started's document, as run_event_build writes it, from the claimed row: the
# same JSON. ``scheduled_for`` as isoformat() writes a UTC datetime (microseconds when not zero).
_STARTED_DATA = """jsonb_build_object(
    'id', claimed.id::text, 'job', claimed.job_id::text, 'schedule', claimed.schedule_id::text,
    'kind', claimed.kind,
    'scheduled_for', to_char(claimed.scheduled_for AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE to_char(claimed.scheduled_for, 'US') WHEN '000000' THEN ''
            ELSE to_char(claimed.scheduled_for, '.US') END
        || '+00:00',
    'status', claimed.status, 'series', claimed.series, 'error_type', claimed.error_type,
    'error_message', claimed.error_message, 'attempt', claimed.attempt, 'worker', %(worker_name)s::text)"""


@functools.cache
def _claim_statement() -> tuple[_Statement, _Insert, _Insert]:
    """The claim of :func:`_claim_in_one_statement`, and its inserts of the attempt and the event."""
    qn = connection.ops.quote_name
    runs, jobs, schedules, workers = (qn(model._meta.db_table) for model in (Run, Job, Schedule, Worker))
    attempt = _Insert.build(
        RunAttempt,
        source="claimed",
        computed={
            "run_id": "claimed.id",
            "series": "claimed.series",
            "number": "claimed.attempt",
            "worker_id": "claimed.worker_id",
        },
        prefix="attempt",
    )
    event = _Insert.build(
        OutboxEvent,
        source="claimed",
        computed={"tenant_id": "claimed.tenant_id", "aggregate_id": "claimed.id::text", "data": _STARTED_DATA},
        prefix="event",
    )
    # What _claim_with_orm saves, in one UPDATE: the lease from the job's timeout, the worker
    # looked up as workers.selectors.worker_id_by_name does (its id, or NULL when unregistered).
    # Only a run whose job has no concurrency limit and whose schedule is not BUFFER_ONE: those
    # count their slots under a lock first. "before" is the run as the statement found it (every
    # part of a statement reads the same snapshot): whether it was claimable at all.
    sql = f"""
        WITH claimed AS (
            UPDATE {runs} AS run SET
                status = %(running)s,
                attempt = run.attempt + 1,
                started_at = CASE WHEN run.attempt >= 1 THEN run.started_at ELSE %(now)s END,
                finished_at = NULL,
                blocked_at = NULL,
                reason = '',
                lease_expires_at = statement_timestamp()
                    + (job.timeout_seconds + %(grace)s::float8) * interval '1 second',
                worker_id = (
                    SELECT worker.id FROM {workers} AS worker WHERE worker.tenant_id = '' AND worker.name = %(worker)s
                ),
                updated_at = %(now)s
            FROM {jobs} AS job
            WHERE run.id = %(run)s AND run.status = ANY(%(claimable)s)
                AND job.id = run.job_id AND job.concurrency_limit IS NULL
                AND NOT EXISTS (
                    SELECT 1 FROM {schedules} AS schedule
                    WHERE schedule.id = run.schedule_id AND schedule.overlap_policy = %(buffer_one)s
                )
            RETURNING {_columns(Run, "run")}, {_columns(Job, "job", prefix="job__")}
        ),
        attempt AS ({attempt.sql}),
        event AS ({event.sql})
        SELECT before.status, claimed.id IS NOT NULL, schedule.id IS NOT NULL, claimed.*,
            {_columns(Schedule, "schedule")}
        FROM {runs} AS before
            LEFT JOIN claimed ON true
            LEFT JOIN {schedules} AS schedule ON schedule.id = claimed.schedule_id
        WHERE before.id = %(run)s
    """
    return _Statement("scheduler_run_claim", sql), attempt, event


def _claim_in_one_statement(*, run_id: UUID, worker_name: str, now: datetime) -> tuple[bool, Claim | None]:
    """:func:`run_claim` in one statement: the run RUNNING, its attempt and scheduler.run.started
    written, the job and the schedule read. Returns whether that decided the claim, and the claim:
    (True, None) when the run was not claimable (a duplicate delivery, a cancelled or finished
    run); (False, None) when the run waits behind a gate or changed meanwhile, for the ORM path."""
    statement, attempt_insert, event_insert = _claim_statement()
    attempt = RunAttempt(worker_name=worker_name[:200], started_at=now)
    [event] = events_traced(
        [event_build(tenant_id="", type="scheduler.run.started", aggregate_type="run", aggregate_id="", data={})]
    )
    with connection.cursor() as cursor:
        db = cursor.db
        params = {
            "run": run_id,
            "running": RunStatus.RUNNING,
            "claimable": list(CLAIMABLE),
            "buffer_one": OverlapPolicy.BUFFER_ONE,
            "now": now,
            "grace": _lease_grace().total_seconds(),
            "worker": worker_name or None,
            "worker_name": worker_name,
            **attempt_insert.params(attempt, db),
            **event_insert.params(event, db),
        }
        statement.execute(cursor, params)
        row = cursor.fetchone()
    if row is None:  # no such run
        return True, None
    before, claimed, scheduled, values = row[0], row[1], row[2], row[3:]
    if not claimed:
        return before not in CLAIMABLE, None
    runs, jobs = len(Run._meta.concrete_fields), len(Job._meta.concrete_fields)
    run = _from_row(Run, values[:runs], db)
    job = _from_row(Job, values[runs : runs + jobs], db)
    run.job = job
    if scheduled:
        run.schedule = _from_row(Schedule, values[runs + jobs :], db)
    attempt.run, attempt.series, attempt.number, attempt.worker_id = run, run.series, run.attempt, run.worker_id
    attempt._state.adding, attempt._state.db = False, db.alias
    metrics.run_started(run=run, job=job, now=now)
    return True, Claim(run=run, job=job, attempt=attempt)


def _finishes_in_one_statement(claim: Claim, finish: _Finish) -> bool:
    """Whether :func:`_finish_in_one_statement` covers this finish. Not under a gate (the ORM path
    takes the job's or the schedule's lock and wakes a waiting run), not a dead letter, not the
    end of a fixed-delay schedule's run (its next slot is computed in Python). Decided on what the
    claim read, as the ORM path decides."""
    run, schedule = claim.run, claim.run.schedule
    if claim.job.concurrency_limit is not None or finish.status == RunStatus.DEAD:
        return False
    if schedule is None:
        return True
    if schedule.overlap_policy == OverlapPolicy.BUFFER_ONE:
        return False
    # What schedules.services.schedule_run_finished acts on: the end of a fixed-delay slot's run.
    return not (finish.final and run.kind == RunKind.SCHEDULED and schedule.trigger.get("type") == "FIXED_DELAY")


@functools.cache
def _finish_statement(*, evented: bool, guarded: bool) -> tuple[_Statement, _Insert | None]:
    """The finish of :func:`_finish_in_one_statement`, with the event's insert when ``evented``.
    ``guarded``: a final scheduled slot, not moved when schedules.services.schedule_run_finished
    would have a next fixed-delay slot to set (the schedule turned FIXED_DELAY after the claim)."""
    qn = connection.ops.quote_name
    runs, attempts, schedules = (qn(model._meta.db_table) for model in (Run, RunAttempt, Schedule))
    event = _Insert.build(OutboxEvent, source="moved", computed={}, prefix="event") if evented else None
    guard = (
        f"""AND NOT EXISTS (
                SELECT 1 FROM {schedules} AS schedule
                WHERE schedule.id = %(schedule)s AND schedule.enabled AND schedule.next_fire_at IS NULL
                    AND schedule.{qn("trigger")} ->> 'type' = 'FIXED_DELAY'
            )"""
        if guarded
        else ""
    )
    # What _finish_with_orm writes, the attempt only along with the run: a run taken back from
    # this worker is left to the ORM path, which records the attempt alone.
    sql = f"""
        WITH moved AS (
            UPDATE {runs} SET
                status = %(status)s,
                finished_at = %(finished_at)s,
                next_attempt_at = %(next_attempt_at)s,
                lease_expires_at = NULL,
                error_type = %(error_type)s,
                error_message = %(error_message)s,
                outcome = %(outcome)s,
                updated_at = %(now)s
            WHERE id = %(run)s AND status = %(running)s AND series = %(series)s AND attempt = %(number)s
                {guard}
            RETURNING id
        ),
        attempt AS (
            UPDATE {attempts} SET
                finished_at = %(now)s,
                outcome = %(attempt_outcome)s,
                response_status = %(response_status)s,
                latency_ms = %(latency_ms)s,
                response_excerpt = %(excerpt)s,
                error_type = %(error_type)s,
                error_message = %(error_message)s
            WHERE id = %(attempt)s AND EXISTS (SELECT 1 FROM moved)
        ){f", event AS ({event.sql})" if event else ""}
        SELECT count(*) FROM moved
    """
    return _Statement("scheduler_run_finish" + "_event" * evented + "_slot" * guarded, sql), event


def _finish_in_one_statement(claim: Claim, finish: _Finish) -> bool:
    """:func:`_finish` in one statement: the run moved, the attempt ended and the run's event
    written. Returns whether it moved the run; when not (taken back from this worker, or its
    schedule turned fixed-delay) it changed nothing, and the ORM path does what is due."""
    run, job, attempt = claim.run, claim.job, claim.attempt
    evented = finish.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    statement, event_insert = _finish_statement(
        evented=evented, guarded=finish.final and run.kind == RunKind.SCHEDULED and run.schedule_id is not None
    )
    with connection.cursor() as cursor:
        db = cursor.db
        params = {
            "run": run.pk,
            "running": RunStatus.RUNNING,
            "series": attempt.series,
            "number": attempt.number,
            "schedule": run.schedule_id,
            "status": finish.status,
            "finished_at": finish.now if finish.final else None,
            "next_attempt_at": finish.next_attempt_at,
            "error_type": finish.error_type,
            "error_message": finish.error_message,
            "outcome": Run._meta.get_field("outcome").get_db_prep_save(finish.outcome, db),
            "now": finish.now,
            "attempt": attempt.pk,
            "attempt_outcome": finish.attempt_outcome,
            "response_status": finish.response_status,
            "latency_ms": finish.latency_ms,
            "excerpt": finish.excerpt,
        }
        if event_insert is not None:
            # The event of the run as the ORM path leaves it; the claim's run changes once moved.
            moved_run = copy.copy(run)
            _finish_apply(moved_run, finish)
            event = run_event_build(run=moved_run, event=finish.status.lower(), attempt=attempt.number)
            params.update(event_insert.params(events_traced([event])[0], db))
        statement.execute(cursor, params)
        moved = cursor.fetchone()[0]
    if not moved:
        return False
    metrics.attempt_finished(job=job, outcome=finish.attempt_outcome, started_at=attempt.started_at, now=finish.now)
    metrics.run_moved(run=run, job=job, status=finish.status)
    _finish_apply(run, finish)
    if finish.status == RunStatus.RETRYING:
        beats_wake()  # the beat's sleep may end after the retry is due
    return True


def _finish_apply(run: Run, finish: _Finish) -> None:
    """What _finish_with_orm sets on the claim's run once it moved it (``finished_at`` even for a retry)."""
    run.status, run.finished_at, run.error_type, run.error_message = (
        finish.status,
        finish.now,
        finish.error_type,
        finish.error_message,
    )


def run_recover_lost(*, now: datetime, limit: int = 100, worker_id: UUID | None = None) -> int:
    """Take back RUNNING runs whose lease ran out — their worker died or hung past the job's
    timeout — and treat the attempt as lost: retried per the job's backoff, or dead when its
    attempts are spent. Returns how many were recovered.

    With ``worker_id``: that worker's RUNNING runs whatever their lease, because the worker was
    found offline (workers.services) or started again under the same name."""
    recovered = 0
    lost = Q(worker_id=worker_id) if worker_id is not None else Q(lease_expires_at__lt=Now())
    candidates = list(
        Run.objects.filter(lost, status=RunStatus.RUNNING)
        .order_by("lease_expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in candidates:
        with transaction.atomic():
            run = (
                Run.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("job", "schedule")
                .filter(lost, pk=pk, status=RunStatus.RUNNING)
                .first()
            )
            if run is None:
                continue
            attempt = RunAttempt.objects.filter(run=run, series=run.series, number=run.attempt).first()
            if attempt is None:  # cannot happen through run_claim; make the row consistent anyway
                attempt = RunAttempt.objects.create(run=run, series=run.series, number=run.attempt, started_at=now)
            why = (
                "the worker went offline"
                if worker_id is not None
                else f"the run's lease expired at {run.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC"
            )
            error = DeliveryError(
                f"the worker {attempt.worker_name or '?'} stopped before finishing: {why}",
                error_type="WorkerLost",
            )
            run_attempt_failed(claim=Claim(run=run, job=run.job, attempt=attempt), error=error, now=now, lost=True)
            recovered += 1
    return recovered


def _run_event(run: Run, event: str, **extra: Any) -> None:
    events_record([run_event_build(run=run, event=event, **extra)])


def run_event_build(*, run: Run, event: str, **extra: Any) -> OutboxEvent:
    """``scheduler.run.<event>`` with the run's document (docs/events.md), not yet recorded."""
    return event_build(
        tenant_id=run.tenant_id,
        type=f"scheduler.run.{event}",
        aggregate_type="run",
        aggregate_id=run.pk,
        data={
            "id": str(run.pk),
            "job": str(run.job_id),
            "schedule": str(run.schedule_id) if run.schedule_id else None,
            "kind": run.kind,
            "scheduled_for": run.scheduled_for.isoformat(),
            "status": run.status,
            "series": run.series,
            "error_type": run.error_type,
            "error_message": run.error_message,
            **extra,
        },
    )


# --- Operator actions ---------------------------------------------------------------------------


@transaction.atomic
def run_cancel(*, run: Run, reason: str = "cancelled by an operator") -> Run:
    """Cancel a run that has not started (or waits for a retry). It never executes after this,
    even if its message is delivered: execution claims only SCHEDULED and QUEUED runs."""
    now = timezone.now()
    cancelled = Run.objects.filter(pk=run.pk, status__in=CANCELLABLE_STATUSES).update(
        status=RunStatus.CANCELLED,
        reason=reason,
        finished_at=now,
        next_attempt_at=None,
        blocked_at=None,
        updated_at=now,
    )
    run.refresh_from_db()
    if cancelled and run.schedule_id is not None:
        from schedules.services import schedule_run_finished  # schedules imports runs: import here

        schedule_run_finished(run=run, finished_at=now)  # a FIXED_DELAY schedule's next slot
    if not cancelled:
        raise Conflict(
            f"The run is {run.status}: only SCHEDULED, QUEUED or RETRYING runs can be cancelled."
            + (" A running run finishes its attempt." if run.status == RunStatus.RUNNING else "")
        )
    return run


@transaction.atomic
def run_retry(*, run: Run) -> Run:
    """Run a FAILED, DEAD or CANCELLED run again as a new attempt series; earlier attempts stay."""
    if not runs_retry(run_ids=[run.pk]):
        run.refresh_from_db()
        raise Conflict(f"The run is {run.status}: only FAILED, DEAD or CANCELLED runs can be retried.")
    run.refresh_from_db()
    return run


def runs_replay(*, runs: QuerySet[Run], dry_run: bool = False, limit: int | None = None) -> list[UUID]:
    """Retry every FAILED, DEAD or CANCELLED run among ``runs`` (a tenant-scoped, filtered
    queryset), oldest slot first. Refuses, with nothing changed, when more than ``limit``
    (default: the RUN_REPLAY_MAX_RUNS setting) match. Returns the ids retried (with ``dry_run``:
    that would be)."""
    limit = limit if limit is not None else settings.RUN_REPLAY_MAX_RUNS
    ids = list(
        runs.filter(status__in=RETRIABLE_STATUSES)
        .order_by("scheduled_for", "id")
        .values_list("pk", flat=True)[: limit + 1]
    )
    if len(ids) > limit:
        raise ValidationFailed(
            {"non_field_errors": [f"More than {limit} runs match: narrow the filter (job, schedule, time range)."]}
        )
    if dry_run or not ids:
        return ids
    with transaction.atomic():
        runs_retry(run_ids=ids)
    return ids


def runs_retry(*, run_ids: list[UUID], statuses: Iterable[str] = RETRIABLE_STATUSES) -> int:
    """Move the runs among ``run_ids`` that are in one of ``statuses`` (final ones) to a new
    attempt series, and enqueue them after the commit. Must run inside a transaction. Returns
    how many moved."""
    now = timezone.now()
    retried = list(
        Run.objects.select_for_update().filter(pk__in=run_ids, status__in=list(statuses)).values_list("pk", flat=True)
    )
    if not retried:
        return 0
    Run.objects.filter(pk__in=retried).update(
        status=RunStatus.SCHEDULED,
        series=F("series") + 1,
        attempt=0,
        started_at=None,
        finished_at=None,
        queued_at=None,
        next_attempt_at=None,
        lease_expires_at=None,
        blocked_at=None,
        error_type="",
        error_message="",
        reason="",
        outcome={},
        updated_at=now,
    )
    DeadLetter.objects.filter(run_id__in=retried, replayed_at__isnull=True).update(replayed_at=now, updated_at=now)
    transaction.on_commit(lambda: run_enqueue(run_ids=retried))
    return len(retried)
