from __future__ import annotations

from django.db.models import QuerySet

from calendars.engine import BusinessCalendar
from calendars.selectors import calendar_business_calendar
from schedules.engine.base import Trigger
from schedules.engine.compose import build_trigger
from schedules.engine.spec import parse_trigger
from schedules.models import Job, Schedule


def job_list(*, tenant_id: str) -> QuerySet[Job]:
    return Job.objects.filter(tenant_id=tenant_id)


def schedule_list(*, tenant_id: str) -> QuerySet[Schedule]:
    return Schedule.objects.filter(tenant_id=tenant_id).select_related("job", "calendar")


def schedule_business_calendar(schedule: Schedule) -> BusinessCalendar | None:
    return calendar_business_calendar(calendar=schedule.calendar) if schedule.calendar is not None else None


def schedule_trigger(schedule: Schedule, *, calendar: BusinessCalendar | None = None) -> Trigger:
    """The engine's trigger for a schedule: its rule, time zone, calendar policy and bounds."""
    return build_trigger(
        parse_trigger(schedule.trigger),
        timezone=schedule.timezone,
        calendar=calendar if calendar is not None else schedule_business_calendar(schedule),
        calendar_policy=schedule.calendar_policy,
        start_at=schedule.start_at,
        end_at=schedule.end_at,
    )
