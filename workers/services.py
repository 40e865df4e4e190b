"""Writes to the worker fleet: registration, heartbeats, draining, and going offline.

A worker's life, as its ``status`` shows it:

    (register) → ONLINE ⇄ DRAINING          (an operator drains and undrains it)
    ONLINE | DRAINING → OFFLINE              (a clean shutdown, or no heartbeat for
                                              WORKER_OFFLINE_AFTER_SECONDS)
    OFFLINE → ONLINE | DRAINING              (it registers again, or a heartbeat shows it alive)

Heartbeat times are the database's clock (``Now()``), and offline detection compares them with
the same clock, so workers on hosts with skewed clocks are judged alike. A worker that goes
offline has its RUNNING runs taken back in the same transaction (the attempt is ``LOST``, the
run retried per its job's backoff): failover does not wait for the runs' leases to lapse.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from runs.services import run_recover_lost
from scheduler_project.events import event_record
from workers import selectors
from workers.models import LIVE_STATUSES, Worker, WorkerStatus

logger = logging.getLogger(__name__)

# A worker runs at most its concurrency at once; this bounds one takeover all the same.
MAX_RUNS_TAKEN_BACK = 10_000


def _live_status(worker: Worker) -> str:
    """The status of a worker that is alive: the operator's drain decides between the two."""
    return WorkerStatus.DRAINING if worker.drained_at is not None else WorkerStatus.ONLINE


def _event(worker: Worker, event: str, **extra: Any) -> None:
    event_record(
        tenant_id=worker.tenant_id,
        type=f"scheduler.worker.{event}",
        aggregate_type="worker",
        aggregate_id=worker.pk,
        data={
            "id": str(worker.pk),
            "name": worker.name,
            "hostname": worker.hostname,
            "dedicated": bool(worker.tenant_id),
            "status": worker.status,
            "queues": worker.queues,
            "capabilities": worker.capabilities,
            "concurrency": worker.concurrency,
            "active_runs": worker.active_runs,
            "utilisation": worker.utilisation,
            "version": worker.version,
            "last_heartbeat_at": worker.last_heartbeat_at.isoformat() if worker.last_heartbeat_at else None,
            **extra,
        },
    )


@transaction.atomic
def worker_register(
    *,
    tenant_id: str,
    name: str,
    hostname: str,
    queues: list[str],
    capabilities: list[str] | None = None,
    concurrency: int = 1,
    version: str = "",
    take_back_runs: bool = True,
) -> tuple[Worker, bool]:
    """Register a worker that is starting, idempotently by (tenant, name). Returns the worker and
    whether the row is new.

    ``tenant_id`` is empty for the shared fleet (Celery workers register so) or the tenant a
    dedicated worker serves. Registering a known name again is the same worker starting again:
    its description is replaced, it is ONLINE again (DRAINING while an operator's drain holds),
    and the runs its previous process was running are taken back and retried — that process is
    gone, whatever their leases say. A process that registers late, after it may have claimed
    runs under its name, passes ``take_back_runs=False``.
    """
    worker, created = Worker.objects.get_or_create(
        tenant_id=tenant_id, name=name, defaults={"hostname": hostname, "status": WorkerStatus.ONLINE}
    )
    if not created:
        worker = Worker.objects.select_for_update(no_key=True).get(pk=worker.pk)
    previous_status = None if created else worker.status
    worker.hostname = hostname
    worker.queues = list(queues)
    worker.capabilities = sorted(set(capabilities or []))
    worker.concurrency = concurrency
    worker.version = version
    worker.status = _live_status(worker)
    worker.active_runs = 0
    worker.started_at = Now()
    worker.last_heartbeat_at = Now()
    worker.save()
    worker.refresh_from_db(fields=["started_at", "last_heartbeat_at", "updated_at"])
    taken_back = 0
    if take_back_runs and not created:
        taken_back = run_recover_lost(now=timezone.now(), worker_id=worker.pk, limit=MAX_RUNS_TAKEN_BACK)
    if taken_back:
        logger.warning("worker %s started again: took back %d runs of its previous process", name, taken_back)
    _event(worker, "registered", previous_status=previous_status, restarted=not created, runs_taken_back=taken_back)
    return worker, created


def worker_heartbeat(*, worker_id: UUID, active_runs: int | None = None) -> Worker:
    """Record that the worker is alive; returns it with the status it should follow (DRAINING:
    take no new runs). ``active_runs`` is what the worker reports; without it, the runs the
    ledger shows it running are counted.

    A worker marked OFFLINE that sends a heartbeat was alive after all (a network partition, a
    stalled process): it is ONLINE (or DRAINING) again. Its runs taken back meanwhile stay taken
    back; a result it still delivers is kept on its attempt only.

    Raises ``Worker.DoesNotExist`` for an unknown id (the worker should register).
    """
    window = settings.WORKER_HEARTBEAT_EVENT_SECONDS
    with transaction.atomic():
        worker = Worker.objects.select_for_update(no_key=True).get(pk=worker_id)
        previous_status, previous_beat = worker.status, worker.last_heartbeat_at
        worker.status = _live_status(worker)
        worker.active_runs = (
            active_runs if active_runs is not None else selectors.worker_running_count(worker_id=worker.pk)
        )
        worker.last_heartbeat_at = Now()
        worker.save(update_fields=["status", "active_runs", "last_heartbeat_at", "updated_at"])
        worker.refresh_from_db(fields=["last_heartbeat_at"])
        # An event when the status changed, else one sample per window: a fleet of a thousand
        # workers beating every 10 s must not write a hundred events a second.
        new_window = _window(previous_beat, window) != _window(worker.last_heartbeat_at, window)
        if worker.status != previous_status or new_window:
            _event(worker, "heartbeat", previous_status=previous_status)
    return worker


def _window(at: datetime | None, seconds: int) -> int | None:
    return None if at is None else int(at.timestamp()) // seconds


def worker_mark_offline(*, worker_id: UUID, reason: str, silent_for: timedelta | None = None) -> Worker | None:
    """Mark a live worker OFFLINE, take back its RUNNING runs (each attempt ``LOST``, the run
    retried per its job's backoff, or dead when its attempts are spent) and record
    ``scheduler.worker.offline`` — all in one transaction.

    With ``silent_for``, only if its last heartbeat is still older than that (checked under the
    row's lock: a heartbeat arriving meanwhile wins). Returns the worker, or None when it was
    not live (already OFFLINE) or has just been heard from.
    """
    with transaction.atomic():
        live = Worker.objects.select_for_update(no_key=True).filter(pk=worker_id, status__in=LIVE_STATUSES)
        if silent_for is not None:
            live = live.filter(_silent(silent_for))
        worker = live.first()
        if worker is None:
            return None
        previous_status = worker.status
        worker.status = WorkerStatus.OFFLINE
        worker.active_runs = 0
        worker.save(update_fields=["status", "active_runs", "updated_at"])
        taken_back = run_recover_lost(now=timezone.now(), worker_id=worker.pk, limit=MAX_RUNS_TAKEN_BACK)
        _event(worker, "offline", previous_status=previous_status, reason=reason, runs_taken_back=taken_back)
    logger.warning("worker %s is offline (%s); took back %d runs", worker.name, reason, taken_back)
    return worker


def _silent(period: timedelta) -> Q:
    """Workers not heard from for ``period``, by the database's clock (a row made by hand, with
    no heartbeat at all, counts from its creation)."""
    cutoff = Now() - period
    return Q(last_heartbeat_at__lt=cutoff) | Q(last_heartbeat_at__isnull=True, created_at__lt=cutoff)


def workers_detect_offline(*, offline_after: timedelta | None = None, limit: int = 100) -> list[Worker]:
    """Mark OFFLINE every ONLINE or DRAINING worker silent for ``offline_after`` (default:
    WORKER_OFFLINE_AFTER_SECONDS) and take back its runs. The beat leader calls this every tick:
    one range scan of worker_status_heartbeat_idx when nobody is late."""
    period = offline_after or timedelta(seconds=settings.WORKER_OFFLINE_AFTER_SECONDS)
    late = list(
        Worker.objects.filter(_silent(period), status__in=LIVE_STATUSES)
        .order_by("last_heartbeat_at")
        .values_list("pk", flat=True)[:limit]
    )
    reason = f"no heartbeat for {period.total_seconds():g} s"
    found = [worker_mark_offline(worker_id=pk, reason=reason, silent_for=period) for pk in late]
    return [worker for worker in found if worker is not None]


def worker_set_drained(*, worker: Worker, drained: bool, now: datetime | None = None) -> Worker:
    """Drain a worker (it takes no new runs; the ones it runs finish) or undrain it.

    The order is kept in ``drained_at`` and applies whenever the worker is alive: a Celery worker
    learns it from its next heartbeat and cancels (or resumes) consuming its queues; an external
    worker reads it in its heartbeat's answer. Draining an offline worker makes it come back
    DRAINING. Idempotent: no event when nothing changes.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = Worker.objects.select_for_update(no_key=True).get(pk=worker.pk)
        if (locked.drained_at is not None) == drained:
            return locked
        locked.drained_at = now if drained else None
        if locked.status != WorkerStatus.OFFLINE:
            locked.status = _live_status(locked)
        locked.save(update_fields=["drained_at", "status", "updated_at"])
        _event(locked, "drained" if drained else "undrained", drained_at=now.isoformat() if drained else None)
    return locked


def worker_drain(*, worker: Worker) -> Worker:
    return worker_set_drained(worker=worker, drained=True)


def worker_undrain(*, worker: Worker) -> Worker:
    return worker_set_drained(worker=worker, drained=False)


def workers_purge_offline(*, older_than: timedelta, limit: int = 100) -> int:
    """Delete up to ``limit`` OFFLINE workers not heard from for ``older_than``: a fleet that
    scales up and down (a pod name per replica) would otherwise keep a row for every worker it
    ever had. Their runs and attempts lose the link (``worker`` becomes null); an attempt keeps
    the worker's name in ``worker_name``. A worker coming back meanwhile holds its row's lock
    and is skipped; one that registers after the purge is simply a new row.

    The beat leader calls this with WORKER_RETENTION_DAYS; returns how many were deleted."""
    with transaction.atomic():
        stale = list(
            Worker.objects.select_for_update(skip_locked=True)
            .filter(_silent(older_than), status=WorkerStatus.OFFLINE)
            .order_by("last_heartbeat_at")
            .values_list("pk", flat=True)[:limit]
        )
        if not stale:
            return 0
        Worker.objects.filter(pk__in=stale).delete()
    logger.info("purged %d workers offline for over %g days", len(stale), older_than.total_seconds() / 86400)
    return len(stale)
