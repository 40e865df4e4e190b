from __future__ import annotations

from django.db.models import QuerySet

from calendars.engine import BusinessCalendar, interned
from calendars.models import Calendar, CalendarDateKind


def calendar_list(*, tenant_id: str) -> QuerySet[Calendar]:
    return Calendar.objects.filter(tenant_id=tenant_id).prefetch_related("dates")


def calendar_business_calendar(*, calendar: Calendar) -> BusinessCalendar:
    """The engine's value object for a calendar row.

    Reads the custom dates through ``calendar.dates.all()``, so a row from :func:`calendar_list`
    (dates prefetched) costs no query. Equal calendars come back as one shared instance whose
    folded years stay warm across calls. Raises ``calendars.engine.InvalidCalendar`` if the
    stored source is no longer known to the installed ``holidays`` package.
    """
    dates = calendar.dates.all()
    return interned(
        BusinessCalendar(
            country=calendar.country,
            subdivision=calendar.subdivision,
            market=calendar.market,
            weekend=frozenset(calendar.weekend),
            holidays={d.date: d.name for d in dates if d.kind == CalendarDateKind.HOLIDAY},
            working_days=frozenset(d.date for d in dates if d.kind == CalendarDateKind.WORKING_DAY),
        )
    )
