"""Writes to business calendars."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from django.db import IntegrityError, transaction

from calendars.models import Calendar, CalendarDate, CalendarDateKind, default_weekend
from calendars.sources import source_errors
from scheduler_project.errors import Conflict, ValidationFailed
from schedules.services import schedule_refresh_next_fire

CustomDate = tuple[date, str]  # (date, name)


def _check(calendar: Calendar, holidays: list[CustomDate] | None, working_days: list[CustomDate] | None) -> None:
    errors = source_errors(country=calendar.country, subdivision=calendar.subdivision, market=calendar.market)
    if holidays is not None and working_days is not None:
        both = sorted({d for d, _ in holidays} & {d for d, _ in working_days})
        if both:
            errors["working_days"] = [f"{', '.join(map(str, both))} also listed as holidays."]
    if errors:
        raise ValidationFailed(errors)


def _replace_dates(calendar: Calendar, kind: str, dates: Iterable[CustomDate]) -> None:
    calendar.dates.filter(kind=kind).delete()
    CalendarDate.objects.bulk_create(CalendarDate(calendar=calendar, date=d, kind=kind, name=n) for d, n in dates)


@transaction.atomic
def calendar_create(
    *,
    tenant_id: str,
    name: str,
    description: str = "",
    country: str = "",
    subdivision: str = "",
    market: str = "",
    weekend: list[int] | None = None,
    holidays: list[CustomDate] | None = None,
    working_days: list[CustomDate] | None = None,
) -> Calendar:
    calendar = Calendar(
        tenant_id=tenant_id,
        name=name,
        description=description,
        country=country,
        subdivision=subdivision,
        market=market,
        weekend=default_weekend() if weekend is None else sorted(weekend),
    )
    _check(calendar, holidays or [], working_days or [])
    if Calendar.objects.filter(tenant_id=tenant_id, name=name).exists():
        raise ValidationFailed({"name": ["A calendar with this name already exists."]})
    try:
        with transaction.atomic():
            calendar.save()
    except IntegrityError:
        raise ValidationFailed({"name": ["A calendar with this name already exists."]}) from None
    _replace_dates(calendar, CalendarDateKind.HOLIDAY, holidays or [])
    _replace_dates(calendar, CalendarDateKind.WORKING_DAY, working_days or [])
    return calendar


@transaction.atomic
def calendar_update(*, calendar: Calendar, data: dict[str, Any]) -> Calendar:
    calendar = Calendar.objects.select_for_update().get(pk=calendar.pk)
    holidays = data.pop("holidays", None)
    working_days = data.pop("working_days", None)
    for field, value in data.items():
        setattr(calendar, field, sorted(value) if field == "weekend" else value)
    current = {k: [(d.date, d.name) for d in calendar.dates.filter(kind=k)] for k in CalendarDateKind}
    _check(
        calendar,
        holidays if holidays is not None else current[CalendarDateKind.HOLIDAY],
        working_days if working_days is not None else current[CalendarDateKind.WORKING_DAY],
    )
    if (
        "name" in data
        and Calendar.objects.filter(tenant_id=calendar.tenant_id, name=calendar.name).exclude(pk=calendar.pk).exists()
    ):
        raise ValidationFailed({"name": ["A calendar with this name already exists."]})
    calendar.save()
    if holidays is not None:
        _replace_dates(calendar, CalendarDateKind.HOLIDAY, holidays)
    if working_days is not None:
        _replace_dates(calendar, CalendarDateKind.WORKING_DAY, working_days)
    # Its schedules' next fire times depend on its days.
    schedule_refresh_next_fire(
        schedules=calendar.schedules.select_related("calendar").prefetch_related("calendar__dates")
    )
    return calendar


@transaction.atomic
def calendar_delete(*, calendar: Calendar) -> None:
    in_use = calendar.schedules.count()
    if in_use:
        raise Conflict(f"The calendar is used by {in_use} schedule(s); detach it from them first.")
    calendar.delete()
