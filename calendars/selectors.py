from __future__ import annotations

from django.db.models import QuerySet

from calendars.models import Calendar


def calendar_list(*, tenant_id: str) -> QuerySet[Calendar]:
    return Calendar.objects.filter(tenant_id=tenant_id).prefetch_related("dates")
