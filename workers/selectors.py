from __future__ import annotations

from uuid import UUID

from django.db.models import Q, QuerySet

from runs.models import Run, RunStatus
from workers.models import Worker


def worker_list(*, tenant_id: str) -> QuerySet[Worker]:
    """Workers a tenant can see: the shared fleet and its own dedicated workers."""
    return Worker.objects.filter(Q(tenant_id="") | Q(tenant_id=tenant_id))


def worker_id_by_name(*, name: str, tenant_id: str = "") -> UUID | None:
    """The id of the worker registered under ``name`` (Celery workers: their hostname, in the
    shared fleet), or None. One probe of the (tenant_id, name) unique index."""
    if not name:
        return None
    return Worker.objects.filter(tenant_id=tenant_id, name=name).values_list("pk", flat=True).first()


def worker_running_count(*, worker_id: UUID) -> int:
    """How many runs the worker is running now (the partial index run_worker_running_idx)."""
    return Run.objects.filter(worker_id=worker_id, status=RunStatus.RUNNING).count()
