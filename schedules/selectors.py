from __future__ import annotations

from django.db.models import QuerySet

from schedules.models import Job, Schedule


def job_list(*, tenant_id: str) -> QuerySet[Job]:
    return Job.objects.filter(tenant_id=tenant_id)


def schedule_list(*, tenant_id: str) -> QuerySet[Schedule]:
    return Schedule.objects.filter(tenant_id=tenant_id).select_related("job", "calendar")
