from __future__ import annotations

from django.db.models import QuerySet

from runs.models import Run


def run_list(*, tenant_id: str) -> QuerySet[Run]:
    return Run.objects.filter(tenant_id=tenant_id).select_related("worker")


def run_get_with_attempts(*, tenant_id: str) -> QuerySet[Run]:
    return run_list(tenant_id=tenant_id).prefetch_related("attempts")
