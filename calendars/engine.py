"""The business-day engine: which days a calendar works, and why it does not on the others.

Pure Python (stdlib and ``holidays`` only; no Django, no Celery), so the trigger engine, the
API and the benchmarks share one implementation and the tests need no database.

A :class:`BusinessCalendar` is an immutable, hashable value: a holiday source of the
``holidays`` package (a country with an optional subdivision, or a financial market), the
weekend days, and the calendar's own dates. A day is a business day unless it is closed, and
the first rule that applies decides, as the API documents it:

1. a custom working day is a business day (it overrides the weekend and every holiday);
2. a custom holiday is not (reason: its name, or "Company holiday" without one);
3. a holiday of the country or market is not (reason: the library's name, "Christmas Day");
4. a weekend day is not (reason: "Weekend (Saturday)").

How the ``holidays`` package is used, and where this module works around it (all checked
against holidays 0.109; the tests pin the behaviour that matters):

* **Names follow the process locale.** Without ``language=``, the package picks the language
  from ``LANGUAGE``/``LC_ALL``/``LC_MESSAGES``/``LANG``: the same German calendar says
  "Zweiter Weihnachtstag" under ``LANG=de_DE.UTF-8`` or an unset ``LANG`` and "Second Day of
  Christmas" under ``LANG=C.UTF-8``. Names here are always asked for in ``en_US``. In 0.109
  every country either has that translation or is named in English to begin with; an entity
  without it would keep its original names (the package falls back, it does not raise).
* **Observed holidays are on by default** (``observed=True``), and that is what a business
  calendar wants: the US federal calendar of 2027 has "Independence Day" on Sunday 4 July
  *and* "Independence Day (observed)" on Monday 5 July, and "New Year's Day (observed)" of
  2028 on Friday 2027-12-31 — listed under 2027, the year it falls in, so one year's object
  is complete for that year. A holiday that falls on a weekend day is reported under its
  holiday name, not as "Weekend". Germany has no observed rules.
* **Financial calendars list closings, not holidays.** ``financial_holidays("NYSE")`` has Good
  Friday (no federal holiday), leaves out holidays that fall on a weekend and does *not* close
  on Friday 2027-12-31 for a Saturday New Year (the NYSE rule), and includes one-off closings
  of past years (the day of mourning for President Carter, 2025-01-09). Future one-off
  closings are, of course, unknown, and early closes (half days) are not closings. Euronext
  (``ENX``) has one subdivision per member exchange, but a calendar's subdivision belongs to a
  country (``calendars.sources`` and a database constraint say so), so an ``ENX`` calendar
  has Euronext's common closing days only.
* **Subdivisions add to the country's holidays**: Bavaria ("BY") has Epiphany on 6 January and
  Berlin ("BE") has Women's Day on 8 March, and neither is in the federal calendar. Without a
  subdivision only the nationwide holidays apply. Some subdivisions add names to a shared day:
  California's 2027-02-15 is "Presidents' Day; Susan B. Anthony Day" — several names on one
  date come joined with "; ", and are passed through as they are.
* **Years outside the entity's range are silently empty.** Germany's holidays exist for
  1991-2100 and the NYSE's for 1863-2100; asking for 2101 returns no holiday, and no error.
  Such a year here has only the weekend and the custom dates. No scheduler fires that far
  ahead, but a backfill into the 1980s would see a German calendar without holidays.
* **Lunar holidays are estimates** in some countries ("Eid al-Fitr (estimated)"): the name
  says so, and they count as holidays.
* **Only the default category** (public holidays) is used. Many countries define more
  (Germany: catholic, school; the US: government, half_day, unofficial); those are not
  holidays here.
* **Cost.** The first holidays object of a process costs ~40 ms (the package imports the
  entity's module and loads its translation catalogue); after that one year of one source
  takes 0.1-0.2 ms to build. A lookup in the package's dict-like object also converts its key
  first (it accepts strings and timestamps too). All of that is kept off the hot path: each
  (source, year) is built once per process (:func:`_library_year`), and each calendar folds a
  year once into one dict of closed days (~20 us), so :meth:`BusinessCalendar.is_business_day`
  is a year lookup plus a hash lookup, about 2.5 times a bare ``day.weekday() in weekend``
  (``bench/calendar_engine.py``).
"""

from __future__ import annotations

import calendar as _calendar
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

import holidays as holidays_lib

from calendars.sources import source_errors

SEARCH_DAYS = 366
"""How far next/previous_business_day look before deciding the calendar has no business day."""

MAX_RANGE_DAYS = 1096
"""The longest range :meth:`BusinessCalendar.non_business_days` lists: any three calendar years."""

LANGUAGE = "en_US"
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
COMPANY_HOLIDAY = "Company holiday"
_ONE_DAY = timedelta(days=1)


class NoBusinessDay(ValueError):
    """The calendar has no business day where one was searched for (a bounded search)."""


class InvalidCalendar(ValueError):
    """A calendar that cannot be built; ``errors`` maps its field names to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {' '.join(messages)}" for path, messages in errors.items()))


class Closure(StrEnum):
    """Why a day is not a business day, as the API reports it."""

    HOLIDAY = "HOLIDAY"  # of the country, subdivision or market
    CUSTOM_HOLIDAY = "CUSTOM_HOLIDAY"  # one of the calendar's own dates
    WEEKEND = "WEEKEND"


class NonBusinessDay(NamedTuple):
    day: date
    reason: str
    kind: Closure


_Closed = tuple[str, Closure]  # (reason, kind) of a closed day


class FrozenDates(Mapping[date, str]):
    """An immutable, hashable ``{date: name}``: a frozen dataclass field must hash."""

    __slots__ = ("_data", "_hash")

    def __init__(self, items: Mapping[date, str] | Iterable[tuple[date, str]] = ()) -> None:
        self._data: dict[date, str] = dict(items)
        self._hash: int | None = None

    def __getitem__(self, key: date) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[date]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenDates({self._data!r})"


@functools.lru_cache(maxsize=4096)
def _library_year(country: str, subdivision: str, market: str, year: int) -> Mapping[date, str]:
    """The holidays of one source in one year, named in English; empty without a source.

    Cached per process: every calendar of the same source shares it (a tenant's hundred
    schedules on "DE-BY" build each year once). 4096 entries hold, say, 40 sources x 100 years.
    """
    if not (country or market) or not 1 <= year <= 9999:
        return MappingProxyType({})
    if market:
        source = holidays_lib.financial_holidays(market, years=year, language=LANGUAGE)
    else:
        source = holidays_lib.country_holidays(country, subdiv=subdivision or None, years=year, language=LANGUAGE)
    # Every date is in `year` (checked for every country, 2021-2028, observed dates included),
    # but a package upgrade must not leak a neighbouring year's date into this one's dict.
    return MappingProxyType({day: name for day, name in source.items() if day.year == year})


@dataclass(frozen=True)
class BusinessCalendar:
    """Business days of a country or market, with weekend days and custom dates.

    ``holidays`` and ``working_days`` accept any mapping or iterable; they are stored frozen
    (:class:`FrozenDates`, ``frozenset``), so equal calendars are equal and hash alike. A
    custom date that is both a holiday and a working day is a working day (the service
    refuses such a calendar; the rule here only makes the order explicit). A weekend of all
    seven days is allowed (custom working days may still open some), but then every search
    ends in :class:`NoBusinessDay` rather than an endless loop.

    Raises :class:`InvalidCalendar` for an unknown country, subdivision or market, or a
    weekday outside 0-6. All lookups take a ``datetime.date``; a ``datetime`` is refused,
    because its date depends on a time zone the caller must have applied already.
    """

    country: str = ""
    subdivision: str = ""
    market: str = ""
    weekend: frozenset[int] = frozenset({5, 6})  # Monday = 0
    holidays: Mapping[date, str] = field(default_factory=FrozenDates)  # custom, with names ("" allowed)
    working_days: frozenset[date] = frozenset()  # custom; override weekend and holidays
    # Per-year closed days {date: (reason, kind)} and per-month business days, filled on use.
    # Not part of the value: excluded from eq, hash and repr.
    _years: dict[int, dict[date, _Closed]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _months: dict[tuple[int, int], tuple[date, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        errors = source_errors(country=self.country, subdivision=self.subdivision, market=self.market)
        weekend = frozenset(self.weekend)
        if any(type(day) is not int or not 0 <= day <= 6 for day in weekend):
            errors["weekend"] = ["Weekend days must be integers 0-6, Monday = 0."]
        custom = self.holidays if isinstance(self.holidays, FrozenDates) else FrozenDates(self.holidays)
        if any(type(day) is not date or not isinstance(name, str) for day, name in custom.items()):
            errors["holidays"] = ["Custom holidays must map datetime.date values to names (strings)."]
        working = frozenset(self.working_days)
        if any(type(day) is not date for day in working):
            errors["working_days"] = ["Custom working days must be datetime.date values."]
        if errors:
            raise InvalidCalendar(errors)
        object.__setattr__(self, "weekend", weekend)
        object.__setattr__(self, "holidays", custom)
        object.__setattr__(self, "working_days", working)

    # --- single days ------------------------------------------------------------------------

    def is_business_day(self, day: date) -> bool:
        # The hot path of the beat: one dict lookup for the year, one for the day.
        closed = self._years.get(day.year) if type(day) is date else None
        if closed is None:
            closed = self._closed_in(_checked(day).year)
        return day not in closed

    def non_business_reason(self, day: date) -> str | None:
        """None for a business day, else why not: "Christmas Day", "Weekend (Saturday)", ..."""
        closed = self._closed_in(_checked(day).year).get(day)
        return None if closed is None else closed[0]

    def closure(self, day: date) -> NonBusinessDay | None:
        """None for a business day, else the day with its reason and :class:`Closure` kind."""
        closed = self._closed_in(_checked(day).year).get(day)
        return None if closed is None else NonBusinessDay(day, *closed)

    # --- searches ---------------------------------------------------------------------------

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after ``day``; :class:`NoBusinessDay` if none within
        :data:`SEARCH_DAYS` days (or before the end of the date range)."""
        return self._search(_checked(day), _ONE_DAY, "after")

    def previous_business_day(self, day: date) -> date:
        """The last business day strictly before ``day``; :class:`NoBusinessDay` if none within
        :data:`SEARCH_DAYS` days (or after the start of the date range)."""
        return self._search(_checked(day), -_ONE_DAY, "before")

    def _search(self, day: date, step: timedelta, direction: str) -> date:
        candidate = day
        try:
            for _ in range(SEARCH_DAYS):
                candidate += step
                closed = self._years.get(candidate.year)
                if closed is None:
                    closed = self._closed_in(candidate.year)
                if candidate not in closed:
                    return candidate
        except OverflowError:
            raise NoBusinessDay(f"No business day {direction} {day} within the supported dates.") from None
        raise NoBusinessDay(f"No business day within {SEARCH_DAYS} days {direction} {day}.")

    # --- months -----------------------------------------------------------------------------

    def business_days_in_month(self, year: int, month: int) -> list[date]:
        return list(self._month(year, month))

    def nth_business_day(self, year: int, month: int, n: int) -> date | None:
        """The ``n``-th business day of the month (1 = first), or counted from the end for a
        negative ``n`` (-1 = last); None when the month has fewer than ``|n|`` business days.

        A month holds at most 31 days, so this never searches further; a calendar without any
        business day answers None for every month, and a caller scanning months for the next
        one must bound its own scan.
        """
        if n == 0:
            raise ValueError("n counts from 1 (first) or -1 (last); 0 is neither.")
        days = self._month(year, month)
        if abs(n) > len(days):
            return None
        return days[n - 1] if n > 0 else days[n]

    def _month(self, year: int, month: int) -> tuple[date, ...]:
        key = (year, month)
        days = self._months.get(key)
        if days is None:
            length = _calendar.monthrange(year, month)[1]  # IllegalMonthError is a ValueError
            closed = self._closed_in(year)
            days = tuple(d for d in (date(year, month, i) for i in range(1, length + 1)) if d not in closed)
            self._months[key] = days
        return days

    # --- ranges -----------------------------------------------------------------------------

    def non_business_days(self, start: date, end: date) -> list[tuple[date, str]]:
        """Every non-business day from ``start`` to ``end`` (both included), with its reason."""
        return [(closure.day, closure.reason) for closure in self.closures(start, end)]

    def closures(self, start: date, end: date) -> list[NonBusinessDay]:
        """:meth:`non_business_days` with each day's :class:`Closure` kind.

        Raises ValueError when ``start`` is after ``end`` or the range spans more than
        :data:`MAX_RANGE_DAYS` days.
        """
        _checked(start)
        _checked(end)
        if start > end:
            raise ValueError(f"The range starts ({start}) after it ends ({end}).")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise ValueError(f"The range spans more than {MAX_RANGE_DAYS} days.")
        found: list[NonBusinessDay] = []
        for year in range(start.year, end.year + 1):
            found.extend(
                NonBusinessDay(day, *closed)
                for day, closed in sorted(self._closed_in(year).items())
                if start <= day <= end
            )
        return found

    # --- the per-year fold ------------------------------------------------------------------

    def _closed_in(self, year: int) -> dict[date, _Closed]:
        closed = self._years.get(year)
        if closed is None:
            closed = self._build_year(year)
            # Two threads may both build a year; they build the same dict, and the last wins.
            self._years[year] = closed
        return closed

    def _build_year(self, year: int) -> dict[date, _Closed]:
        # Plain tuples: a NamedTuple costs ~0.3 us to make, and a year has ~110 closed days.
        closed: dict[date, _Closed] = {}
        first, last = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
        for weekday in sorted(self.weekend):
            # Ordinals, not `day += 1 day`: that would overflow after 9999-12-31.
            weekend_day = (f"Weekend ({WEEKDAY_NAMES[weekday]})", Closure.WEEKEND)
            for ordinal in range(first + (weekday - date.fromordinal(first).weekday()) % 7, last + 1, 7):
                closed[date.fromordinal(ordinal)] = weekend_day
        # Later rules win: library holidays over the weekend, custom holidays over both.
        for day, name in _library_year(self.country, self.subdivision, self.market, year).items():
            closed[day] = (name, Closure.HOLIDAY)
        for day, name in self.holidays.items():
            if day.year == year:
                closed[day] = (name or COMPANY_HOLIDAY, Closure.CUSTOM_HOLIDAY)
        for day in self.working_days:
            if day.year == year:
                closed.pop(day, None)
        return closed


@functools.lru_cache(maxsize=1024)
def interned(calendar: BusinessCalendar) -> BusinessCalendar:
    """The process's one instance equal to ``calendar``, with the years it has already folded.

    A calendar read from the database is a new object every time, and folding a year costs
    about 20 us; equal calendars give equal answers, so they can share one instance. At most
    1024 calendars are kept (least recently used first out).
    """
    return calendar


def _checked(day: Any) -> date:
    if type(day) is not date:
        # A datetime is a date too, but never equal to one: it would never be found closed.
        hint = " (take its .date() in the schedule's time zone first)" if isinstance(day, date) else ""
        raise TypeError(f"Expected a datetime.date, got {type(day).__name__}{hint}.")
    return day
