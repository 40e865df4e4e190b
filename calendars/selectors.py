from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from django.db.models import QuerySet

from calendars.engine import BusinessCalendar, interned
from calendars.models import Calendar, CalendarDateKind, default_weekend


def calendar_list(*, tenant_id: str) -> QuerySet[Calendar]:
    return Calendar.objects.filter(tenant_id=tenant_id).prefetch_related("dates")


def business_calendar(
    *,
    country: str = "",
    subdivision: str = "",
    market: str = "",
    weekend: Iterable[int] | None = None,
    holidays: Iterable[tuple[date, str]] = (),
    working_days: Iterable[tuple[date, str]] = (),
) -> BusinessCalendar:
    """The engine's value object for a calendar's rules, stored (:func:`calendar_business_calendar`)
    or given in place (the fields of ``POST /calendars``: custom dates as ``(date, name)``).

    Equal calendars come back as one shared instance whose folded years stay warm across calls.
    Raises ``calendars.engine.InvalidCalendar`` if the source is not known to the installed
    ``holidays`` package.
    """
    return interned(
        BusinessCalendar(
            country=country,
            subdivision=subdivision,
            market=market,
            weekend=frozenset(default_weekend() if weekend is None else weekend),
            holidays=dict(holidays),
            working_days=frozenset(day for day, _ in working_days),
        )
    )


def calendar_business_calendar(*, calendar: Calendar) -> BusinessCalendar:
    """The engine's value object for a calendar row (:func:`business_calendar`).

    Reads the custom dates through ``calendar.dates.all()``, so a row from :func:`calendar_list`
    (dates prefetched) costs no query.
    """
    dates = calendar.dates.all()
    return business_calendar(
        country=calendar.country,
        subdivision=calendar.subdivision,
        market=calendar.market,
        weekend=calendar.weekend,
        holidays=[(d.date, d.name) for d in dates if d.kind == CalendarDateKind.HOLIDAY],
        working_days=[(d.date, d.name) for d in dates if d.kind == CalendarDateKind.WORKING_DAY],
    )
