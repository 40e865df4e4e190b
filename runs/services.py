"""Writes to runs: enqueueing them on the broker, and finding the ones the broker lost."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import Q
from django.utils import timezone

from runs.models import Run, RunStatus
from scheduler_project.celery import app as celery_app

EXECUTE_TASK = "runs.execute_run"


def run_enqueue(*, run_ids: Iterable[UUID]) -> int:
    """Publish each SCHEDULED run's message to its job's queue and mark it QUEUED.

    Called after the transaction that created the runs committed, so a worker never receives
    an id it cannot see. The message carries only the run id: the row is the truth, and a
    message delivered twice finds the run already claimed. Returns how many were sent.
    """
    runs = list(Run.objects.filter(pk__in=list(run_ids), status=RunStatus.SCHEDULED).values_list("pk", "job__queue"))
    if not runs:
        return 0
    # One pipelined round trip per batch on Redis (kombu's Producer.batch; other transports
    # publish one by one): a round trip per message capped a burst at ~1,000 runs/s. Giving
    # argsrepr/kwargsrepr, the headers Celery would build with saferepr, saves a fifth of
    # send_task's time (bench/beat.py).
    with celery_app.producer_or_acquire() as producer, producer.batch():
        for pk, queue in runs:
            args = [str(pk)]
            celery_app.send_task(
                EXECUTE_TASK, args=args, queue=queue, producer=producer, argsrepr=repr(args), kwargsrepr="{}"
            )
    # Conditional: a worker may already have claimed a run whose message went out first.
    return Run.objects.filter(pk__in=[pk for pk, _ in runs], status=RunStatus.SCHEDULED).update(
        status=RunStatus.QUEUED, queued_at=timezone.now(), updated_at=timezone.now()
    )


def run_sweep(*, now: datetime, stale_after: timedelta, limit: int = 1000) -> int:
    """Enqueue again what the broker may have lost: runs committed but never sent (a crash
    between commit and send), and QUEUED runs no worker started (a broker restart without
    persistence). Re-sending is safe because execution claims a run by a conditional update."""
    cutoff = now - stale_after
    stale = list(
        Run.objects.filter(
            Q(status=RunStatus.SCHEDULED, created_at__lt=cutoff) | Q(status=RunStatus.QUEUED, queued_at__lt=cutoff)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not stale:
        return 0
    Run.objects.filter(pk__in=stale, status=RunStatus.QUEUED).update(status=RunStatus.SCHEDULED)
    return run_enqueue(run_ids=stale)
