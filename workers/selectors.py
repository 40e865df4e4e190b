from __future__ import annotations

from django.db.models import Q, QuerySet

from workers.models import Worker


def worker_list(*, tenant_id: str) -> QuerySet[Worker]:
    """Workers a tenant can see: the shared fleet and its own dedicated workers."""
    return Worker.objects.filter(Q(tenant_id="") | Q(tenant_id=tenant_id))
