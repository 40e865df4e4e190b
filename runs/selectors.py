from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from django.db.models import QuerySet

from runs.models import Run, RunStatus


def run_list(*, tenant_id: str) -> QuerySet[Run]:
    return Run.objects.filter(tenant_id=tenant_id).select_related("worker")


def run_get_with_attempts(*, tenant_id: str) -> QuerySet[Run]:
    return run_list(tenant_id=tenant_id).prefetch_related("attempts", "dead_letters")


def runs_matching(
    *,
    tenant_id: str,
    status: Iterable[str],
    job: UUID | None = None,
    schedule: UUID | None = None,
    scheduled_for_after: datetime | None = None,
    scheduled_for_before: datetime | None = None,
) -> QuerySet[Run]:
    """The tenant's runs in one of ``status``, narrowed by each filter given."""
    runs = Run.objects.filter(tenant_id=tenant_id, status__in=list(status))
    if job is not None:
        runs = runs.filter(job_id=job)
    if schedule is not None:
        runs = runs.filter(schedule_id=schedule)
    if scheduled_for_after is not None:
        runs = runs.filter(scheduled_for__gte=scheduled_for_after)
    if scheduled_for_before is not None:
        runs = runs.filter(scheduled_for__lte=scheduled_for_before)
    return runs


def runs_retry_times() -> QuerySet[Run, datetime | None]:
    """When the waiting retries are due, earliest first: a ``LIMIT 1`` of it is one probe of the
    partial index run_retry_due_idx (the beat sleeps no longer than the first)."""
    return (
        Run.objects.filter(status=RunStatus.RETRYING)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
    )


def runs_lease_expiries() -> QuerySet[Run, datetime | None]:
    """When the running runs' leases lapse, earliest first: a ``LIMIT 1`` of it is one probe of the
    partial index run_lease_idx (the beat leader takes a run back once its lease has lapsed)."""
    return (
        Run.objects.filter(status=RunStatus.RUNNING, lease_expires_at__isnull=False)
        .order_by("lease_expires_at")
        .values_list("lease_expires_at", flat=True)
    )
