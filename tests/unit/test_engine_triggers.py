"""The time engine: every trigger, every DST policy and every calendar policy, with exact instants.

Expected fire times are written as local ISO 8601 with the offset the zone shows at that instant,
so a case says both *when* (the instant) and *which pass* of a repeated hour (the offset). A
fire that a DST gap moved carries `` DST_GAP`` after its time, one that a calendar moved
`` CALENDAR_SHIFT``.

The 2027 transitions used below, as zoneinfo has them (tzdata 2026):

- Europe/Berlin: 02:00 -> 03:00 on 2027-03-28 (gap 02:00-03:00), 03:00 -> 02:00 on 2027-10-31
  (02:00-03:00 twice);
- America/New_York: 02:00 -> 03:00 on 2027-03-14, 02:00 -> 01:00 on 2027-11-07 (01:00-02:00
  twice);
- Australia/Lord_Howe, a 30-minute shift: 02:00 -> 01:30 on 2027-04-04 (01:30-02:00 twice),
  02:00 -> 02:30 on 2027-10-03 (gap 02:00-02:30);
- Asia/Kolkata: none (the control).

Nothing here mocks the engine; the property tests at the end check it against independent
oracles (a minute-by-minute scan of the wall clock for cron, plain dateutil for RRULE, and a
brute-force shift of the inner fires for calendar policies).
"""

from __future__ import annotations

import calendar as month_calendar
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pytest
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from calendars.engine import BusinessCalendar
from schedules.engine.base import Fire, Trigger, fires, next_after, search
from schedules.engine.business import BoundedTrigger, BusinessDayTrigger, CalendarPolicyTrigger
from schedules.engine.compose import build_trigger, first_fire
from schedules.engine.cron import CronTrigger
from schedules.engine.errors import InvalidTrigger
from schedules.engine.rrule import RRuleTrigger
from schedules.engine.simple import FixedDelayTrigger, OneShotTrigger
from schedules.engine.spec import (
    BusinessDaySpec,
    CronSpec,
    FixedDelaySpec,
    OneShotSpec,
    RRuleSpec,
    TriggerSpec,
    dump_trigger,
    parse_trigger,
)
from schedules.engine.zones import WallTime, classify, gap_end, resolve_rfc5545, to_local

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"
KOLKATA = "Asia/Kolkata"

BAVARIA = BusinessCalendar(country="DE", subdivision="BY")
NYSE = BusinessCalendar(market="NYSE")
PLAIN = BusinessCalendar()  # Saturday and Sunday off, nothing else

# A guard against unbounded searches, not a performance measurement (that is bench/triggers.py):
# every answer below takes milliseconds; an endless or 100,000-step search takes seconds.
QUICKLY = 1.0


def local(text: str, zone: str) -> datetime:
    """A wall time in ``zone`` as an aware datetime (the first occurrence if ambiguous)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def shown(fire: Fire, zone: str) -> str:
    """A fire as the cases write it: local time with its offset, and what moved it."""
    text = fire.at.astimezone(ZoneInfo(zone)).isoformat()
    return f"{text} {fire.kind}" if fire.kind else text


def upcoming(trigger: Trigger, zone: str, after: str, count: int) -> list[str]:
    found = fires(trigger, local(after, zone), count)
    for fire in found:
        assert fire.at.utcoffset() == timedelta(0), "fire times are UTC"
    return [shown(fire, zone) for fire in found]


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


# --- CRON: fields, names, ranges, lists, steps, day semantics ------------------------------------

CRON_CASES = [
    ("five_fields_daily", "0 2 * * *", "2027-01-01T00:00", ["2027-01-01T02:00:00", "2027-01-02T02:00:00"]),
    (
        "six_fields_seconds_first_step",
        "*/20 * * * * *",
        "2027-01-01T00:00",
        ["2027-01-01T00:00:20", "2027-01-01T00:00:40", "2027-01-01T00:01:00"],
    ),
    ("six_fields_fixed_second", "30 15 9 * * *", "2027-01-01T12:00", ["2027-01-02T09:15:30", "2027-01-03T09:15:30"]),
    (
        "month_and_weekday_name_ranges",
        "0 9 * JAN-MAR MON-FRI",
        "2027-03-30T12:00",
        ["2027-03-31T09:00:00", "2028-01-03T09:00:00", "2028-01-04T09:00:00"],
    ),
    (
        "names_are_case_insensitive",
        "0 12 * jan,jul sun",
        "2027-01-25T00:00",
        ["2027-01-31T12:00:00", "2027-07-04T12:00:00"],
    ),
    (
        "range_with_step_and_weekday_range",
        "30 8-12/2 * * 1-5",
        "2027-01-01T00:00",  # a Friday
        ["2027-01-01T08:30:00", "2027-01-01T10:30:00", "2027-01-01T12:30:00", "2027-01-04T08:30:00"],
    ),
    (
        "lists_in_minute_and_hour",
        "5,35 6,18 * * *",
        "2027-01-01T07:00",
        ["2027-01-01T18:05:00", "2027-01-01T18:35:00", "2027-01-02T06:05:00"],
    ),
    (
        "equal_ended_ranges_are_one_value",  # croniter alone reads 5-5 and MON-MON as the whole field
        "5-5 9-9 * * MON-MON",
        "2027-01-01T00:00",
        ["2027-01-04T09:05:00", "2027-01-11T09:05:00"],
    ),
    (
        "equal_ended_range_with_step",
        "0 7-7/3 * JAN-JAN *",
        "2027-01-30T12:00",
        ["2027-01-31T07:00:00", "2028-01-01T07:00:00"],
    ),
    ("sunday_as_7", "0 0 * * 7", "2027-01-01T00:00", ["2027-01-03T00:00:00", "2027-01-10T00:00:00"]),
    ("sunday_as_0", "0 0 * * 0", "2027-01-01T00:00", ["2027-01-03T00:00:00", "2027-01-10T00:00:00"]),
    (
        "vixie_or_day_of_month_or_weekday",  # the 13th, and every Friday
        "0 9 13 * FRI",
        "2027-01-01T00:00",
        ["2027-01-01T09:00:00", "2027-01-08T09:00:00", "2027-01-13T09:00:00", "2027-01-15T09:00:00"],
    ),
    (
        "vixie_or_list_and_weekday",  # crontab(5)'s own example shape: the 1st and 15th, plus Mondays
        "0 9 1,15 * MON",
        "2027-01-01T00:00",
        ["2027-01-01T09:00:00", "2027-01-04T09:00:00", "2027-01-11T09:00:00", "2027-01-15T09:00:00"],
    ),
    (
        "vixie_star_step_day_of_month_is_and",  # */2 starts with '*': not restricted, so AND
        "0 9 */2 * MON",
        "2027-01-01T00:00",
        ["2027-01-11T09:00:00", "2027-01-25T09:00:00", "2027-02-01T09:00:00", "2027-02-15T09:00:00"],
    ),
    (
        "vixie_star_step_weekday_is_and",  # the 1st when it is a Sunday, Wednesday or Saturday
        "0 9 1 * */3",
        "2027-01-01T12:00",
        ["2027-05-01T09:00:00", "2027-08-01T09:00:00", "2027-09-01T09:00:00", "2027-12-01T09:00:00"],
    ),
    (
        "question_mark_is_unrestricted",
        "0 9 ? * MON",
        "2027-01-01T00:00",
        ["2027-01-04T09:00:00", "2027-01-11T09:00:00"],
    ),
    (
        "vixie_or_with_nth_weekday",  # the 15th, or the third Friday (croniter alone drops the 15th)
        "0 9 15 * 5#3",
        "2027-01-01T00:00",
        ["2027-01-15T09:00:00", "2027-02-15T09:00:00", "2027-02-19T09:00:00", "2027-03-15T09:00:00"],
    ),
    (
        "vixie_or_with_nearest_weekday",  # the weekday nearest the 1st, or Mondays (croniter drops Mondays)
        "0 9 1W * MON",
        "2027-04-20T00:00",
        ["2027-04-26T09:00:00", "2027-05-03T09:00:00", "2027-05-10T09:00:00"],
    ),
    (
        "vixie_or_with_last_day",
        "0 9 L * MON",
        "2027-01-20T00:00",
        ["2027-01-25T09:00:00", "2027-01-31T09:00:00", "2027-02-01T09:00:00"],
    ),
    (
        "step_and_nth_weekday_is_and",
        "0 9 */2 * 1#1",
        "2027-01-01T00:00",
        ["2027-02-01T09:00:00", "2027-03-01T09:00:00"],
    ),
    # L, W and # checked on real months:
    (
        "nearest_weekday_first_is_saturday",  # 2027-05-01 is a Saturday: Monday the 3rd (not April)
        "0 9 1W * *",
        "2027-04-15T00:00",
        ["2027-05-03T09:00:00", "2027-06-01T09:00:00"],
    ),
    (
        "nearest_weekday_first_is_sunday",  # 2027-08-01 is a Sunday: Monday the 2nd
        "0 9 1W * *",
        "2027-07-15T00:00",
        ["2027-08-02T09:00:00", "2027-09-01T09:00:00"],
    ),
    (
        "nearest_weekday_15th_saturday_and_sunday",  # 2027-05-15 Sat -> Fri 14th, 2027-08-15 Sun -> Mon 16th
        "0 9 15W * *",
        "2027-05-01T00:00",
        ["2027-05-14T09:00:00", "2027-06-15T09:00:00", "2027-07-15T09:00:00", "2027-08-16T09:00:00"],
    ),
    (
        "nearest_weekday_last_day_is_sunday",  # 2027-01-31 is a Sunday and the month's end: Friday the 29th
        "0 9 31W * *",
        "2027-01-15T00:00",
        ["2027-01-29T09:00:00"],
    ),
    (
        "last_day_february_leap_year",
        "0 9 L * *",
        "2028-01-31T12:00",
        ["2028-02-29T09:00:00", "2028-03-31T09:00:00", "2028-04-30T09:00:00"],
    ),
    ("last_day_february_common_year", "0 9 L * *", "2027-01-31T12:00", ["2027-02-28T09:00:00", "2027-03-31T09:00:00"]),
    (
        "third_friday",
        "0 9 * * 5#3",
        "2027-01-01T00:00",
        ["2027-01-15T09:00:00", "2027-02-19T09:00:00", "2027-03-19T09:00:00"],
    ),
    ("first_monday_by_name", "0 9 * * MON#1", "2027-01-01T00:00", ["2027-01-04T09:00:00", "2027-02-01T09:00:00"]),
    (
        "fifth_friday_only_in_months_that_have_one",
        "0 9 * * 5#5",
        "2027-01-01T00:00",
        ["2027-01-29T09:00:00", "2027-04-30T09:00:00", "2027-07-30T09:00:00", "2027-10-29T09:00:00"],
    ),
    (
        "february_29_next_leap_year",
        "0 0 29 2 *",
        "2027-01-01T00:00",
        ["2028-02-29T00:00:00", "2032-02-29T00:00:00"],
    ),
    (
        "february_29_across_2100",  # 2100 is no leap year: eight years apart
        "0 0 29 2 *",
        "2097-01-01T00:00",
        ["2104-02-29T00:00:00"],
    ),
]


@pytest.mark.parametrize(
    ("expression", "after", "expected"), [case[1:] for case in CRON_CASES], ids=[case[0] for case in CRON_CASES]
)
def test_cron_fire_times(expression: str, after: str, expected: list[str]) -> None:
    trigger = CronTrigger(expression, "UTC")
    assert upcoming(trigger, "UTC", after, len(expected)) == [f"{text}+00:00" for text in expected]


def _nearest_weekday(year: int, month: int, day: int) -> date:
    """Quartz's ``W``: the weekday nearest the day, never leaving the month."""
    last = month_calendar.monthrange(year, month)[1]
    wanted = date(year, month, day)
    if wanted.weekday() == 5:
        return wanted - timedelta(days=1) if day > 1 else wanted + timedelta(days=2)
    if wanted.weekday() == 6:
        return wanted + timedelta(days=1) if day < last else wanted - timedelta(days=2)
    return wanted


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> date | None:
    """The nth ``weekday`` (cron numbering, Sunday = 0) of a month, or None."""
    days = [
        date(year, month, d)
        for d in range(1, month_calendar.monthrange(year, month)[1] + 1)
        if date(year, month, d).isoweekday() % 7 == weekday
    ]
    return days[nth - 1] if nth <= len(days) else None


SPECIAL_DAYS: list[tuple[str, str, Callable[[int, int], date | None]]] = [
    ("1W", "0 9 1W * *", lambda y, m: _nearest_weekday(y, m, 1)),
    ("15W", "0 9 15W * *", lambda y, m: _nearest_weekday(y, m, 15)),
    ("28W", "0 9 28W * *", lambda y, m: _nearest_weekday(y, m, 28)),
    ("L", "0 9 L * *", lambda y, m: date(y, m, month_calendar.monthrange(y, m)[1])),
    ("1#1", "0 9 * * 1#1", lambda y, m: _nth_weekday(y, m, 1, 1)),
    ("5#3", "0 9 * * 5#3", lambda y, m: _nth_weekday(y, m, 5, 3)),
    ("0#5", "0 9 * * 0#5", lambda y, m: _nth_weekday(y, m, 0, 5)),
    ("SAT#4", "0 9 * * SAT#4", lambda y, m: _nth_weekday(y, m, 6, 4)),
]


@pytest.mark.parametrize(("expression", "oracle"), [c[1:] for c in SPECIAL_DAYS], ids=[c[0] for c in SPECIAL_DAYS])
def test_cron_special_days_on_four_years_of_real_months(expression: str, oracle: Callable[[int, int], date]) -> None:
    """croniter's ``L``, ``W`` and ``#`` against a plain-Python oracle, 2027-2030 month by month."""
    found = [f.at.date() for f in fires(CronTrigger(expression, "UTC"), datetime(2027, 1, 1, tzinfo=UTC), 60)]
    expected = [day for y in range(2027, 2031) for m in range(1, 13) if (day := oracle(y, m)) is not None]
    assert [day for day in found if day.year < 2031] == expected


CRON_ERRORS = [
    ("day_of_month_32", "0 2 32 * *", "Day-of-month 32 is out of range 1-31."),
    ("minute_61", "61 * * * *", "Minute 61 is out of range 0-59."),
    ("hour_24", "0 24 * * *", "Hour 24 is out of range 0-23."),
    ("day_of_month_0", "0 0 0 * *", "Day-of-month 0 is out of range 1-31."),
    ("month_13", "0 0 * 13 *", "Month 13 is out of range 1-12."),
    ("weekday_8", "0 0 * * 8", "Day-of-week 8 is out of range 0-7."),
    ("second_60", "60 * * * * *", "Second 60 is out of range 0-59."),
    ("backwards_range", "10-5 * * * *", "Minute range 10-5 runs backwards."),
    ("backwards_weekday_names", "0 0 * * FRI-MON", "Day-of-week range FRI-MON runs backwards."),
    ("step_zero", "*/0 * * * *", "Minute step '0' must be a number from 1 to 60."),
    ("step_too_large", "0 */25 * * *", "Hour step '25' must be a number from 1 to 24."),
    (
        "unknown_month_name",
        "0 0 * FOO *",
        "Month 'FOO' is not a number or a name (JAN, FEB, MAR, APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC).",
    ),
    (
        "unknown_weekday_name",
        "0 0 * * FUN",
        "Day-of-week 'FUN' is not a number or a name (SUN, MON, TUE, WED, THU, FRI, SAT).",
    ),
    ("month_name_in_minute", "JAN * * * *", "Minute 'JAN' is not a number."),
    ("nth_weekday_6", "0 0 * * 5#6", "Day-of-week '5#6': the occurrence after # must be 1-5."),
    ("nearest_weekday_32", "0 0 32W * *", "Day-of-month 32 is out of range 1-31."),
    ("question_mark_in_minute", "? 0 * * *", "'?' is only allowed in the day fields, not in minute."),
    ("empty_list_item", "0 0 1,,2 * *", "Day-of-month field '1,,2' has an empty list item."),
    ("two_dashes", "1-2-3 * * * *", "Minute '1-2-3' is not a value, range, list or step."),
    (
        "four_fields",
        "0 2 * *",
        "Must have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; got 4.",
    ),
    (
        "seven_fields",
        "0 0 2 * * * 2027",
        "Must have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; got 7.",
    ),
]


@pytest.mark.parametrize(("expression", "message"), [c[1:] for c in CRON_ERRORS], ids=[c[0] for c in CRON_ERRORS])
def test_cron_field_errors(expression: str, message: str) -> None:
    with pytest.raises(InvalidTrigger) as raised:
        CronTrigger(expression, "UTC")
    assert raised.value.errors == {"expression": [message]}


@pytest.mark.parametrize(
    "expression",
    ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 30 2 *"],
    ids=["feb_30", "31st_of_30_day_months", "seconds"],
)
def test_cron_that_never_fires_answers_none_quickly(expression: str) -> None:
    trigger = CronTrigger(expression, BERLIN)  # a valid expression: the service refuses it for having no fire
    result, seconds = timed(lambda: trigger.next_fire(local("2027-01-01T00:00", BERLIN)))
    assert result is None
    assert seconds < QUICKLY


def test_cron_normalises_whitespace_and_compares_by_value() -> None:
    assert CronTrigger("  0   2 * *  * ", BERLIN) == CronTrigger("0 2 * * *", BERLIN)
    assert CronTrigger("0 2 * * *", BERLIN).expression == "0 2 * * *"
    assert CronTrigger("0 2 * * *", BERLIN) != CronTrigger("0 2 * * *", NEW_YORK)


# --- DST: CRON (cronie), RRULE and ONE_SHOT (RFC 5545), FIXED_DELAY (elapsed) ---------------------


def cron(expression: str, zone: str) -> Callable[[], Trigger]:
    return lambda: CronTrigger(expression, zone)


def rule(text: str, zone: str, dtstart: str | None = None) -> Callable[[], Trigger]:
    return lambda: RRuleTrigger(text, zone, dtstart)


def one_shot(run_at: str, zone: str) -> Callable[[], Trigger]:
    return lambda: OneShotTrigger(run_at, zone)


DST_CASES: list[tuple[str, Callable[[], Trigger], str, str, list[str]]] = [
    # CRON in Europe/Berlin
    (
        "spring_forward_gap_fixed_time",
        cron("30 2 * * *", BERLIN),
        BERLIN,
        "2027-03-27T12:00",
        ["2027-03-28T03:00:00+02:00 DST_GAP", "2027-03-29T02:30:00+02:00"],
    ),
    (
        "spring_forward_gap_fixed_time_on_the_hour",
        cron("0 2 * * *", BERLIN),
        BERLIN,
        "2027-03-27T12:00",
        ["2027-03-28T03:00:00+02:00 DST_GAP", "2027-03-29T02:00:00+02:00"],
    ),
    (
        "spring_forward_gap_two_fixed_times_fire_once",
        cron("0,30 2 * * *", BERLIN),
        BERLIN,
        "2027-03-27T12:00",
        ["2027-03-28T03:00:00+02:00 DST_GAP", "2027-03-29T02:00:00+02:00", "2027-03-29T02:30:00+02:00"],
    ),
    (
        "spring_forward_gap_fixed_time_with_seconds",
        cron("15 30 2 * * *", BERLIN),
        BERLIN,
        "2027-03-27T12:00",
        ["2027-03-28T03:00:00+02:00 DST_GAP", "2027-03-29T02:30:15+02:00"],
    ),
    (
        "spring_forward_fixed_time_before_the_gap",
        cron("30 1 * * *", BERLIN),
        BERLIN,
        "2027-03-27T12:00",
        ["2027-03-28T01:30:00+01:00", "2027-03-29T01:30:00+02:00"],
    ),
    (
        "spring_forward_after_gap_end_is_next_day",  # asked at 03:00 CEST, the moved fire is not after it
        cron("30 2 * * *", BERLIN),
        BERLIN,
        "2027-03-28T03:00",
        ["2027-03-29T02:30:00+02:00"],
    ),
    (
        "spring_forward_wildcard_skips_the_gap",
        cron("*/30 * * * *", BERLIN),
        BERLIN,
        "2027-03-28T01:15",
        ["2027-03-28T01:30:00+01:00", "2027-03-28T03:00:00+02:00", "2027-03-28T03:30:00+02:00"],
    ),
    (
        "spring_forward_hour_step_skips_the_gap",
        cron("0 */2 * * *", BERLIN),
        BERLIN,
        "2027-03-28T00:00",
        ["2027-03-28T04:00:00+02:00", "2027-03-28T06:00:00+02:00"],
    ),
    (
        "spring_forward_minute_wildcard_fixed_hour_skips_the_day",
        cron("* 2 * * *", BERLIN),
        BERLIN,
        "2027-03-28T00:00",
        ["2027-03-29T02:00:00+02:00", "2027-03-29T02:01:00+02:00"],
    ),
    (
        "fall_back_fixed_time_first_only",
        cron("30 2 * * *", BERLIN),
        BERLIN,
        "2027-10-30T12:00",
        ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"],
    ),
    (
        "fall_back_fixed_time_asked_between_the_passes",  # 02:45 CEST: the first 02:30 is past, no second
        cron("30 2 * * *", BERLIN),
        BERLIN,
        "2027-10-31T02:45",
        ["2027-11-01T02:30:00+01:00"],
    ),
    (
        "fall_back_wildcard_both_passes",
        cron("*/30 * * * *", BERLIN),
        BERLIN,
        "2027-10-31T01:45",
        [
            "2027-10-31T02:00:00+02:00",
            "2027-10-31T02:30:00+02:00",
            "2027-10-31T02:00:00+01:00",
            "2027-10-31T02:30:00+01:00",
            "2027-10-31T03:00:00+01:00",
        ],
    ),
    (
        "fall_back_hourly_both_passes",
        cron("0 * * * *", BERLIN),
        BERLIN,
        "2027-10-31T00:30",
        [
            "2027-10-31T01:00:00+02:00",
            "2027-10-31T02:00:00+02:00",
            "2027-10-31T02:00:00+01:00",
            "2027-10-31T03:00:00+01:00",
        ],
    ),
    (
        "fall_back_minute_step_fixed_hour_both_passes",
        cron("*/30 2 * * *", BERLIN),
        BERLIN,
        "2027-10-31T01:00",
        [
            "2027-10-31T02:00:00+02:00",
            "2027-10-31T02:30:00+02:00",
            "2027-10-31T02:00:00+01:00",
            "2027-10-31T02:30:00+01:00",
            "2027-11-01T02:00:00+01:00",
        ],
    ),
    (
        "fall_back_wildcard_asked_in_the_first_pass",
        cron("*/30 * * * *", BERLIN),
        BERLIN,
        "2027-10-31T02:40",  # the first pass (CEST)
        ["2027-10-31T02:00:00+01:00", "2027-10-31T02:30:00+01:00"],
    ),
    # CRON in America/New_York
    (
        "new_york_spring_forward_gap_fixed_time",
        cron("30 2 * * *", NEW_YORK),
        NEW_YORK,
        "2027-03-13T12:00",
        ["2027-03-14T03:00:00-04:00 DST_GAP", "2027-03-15T02:30:00-04:00"],
    ),
    (
        "new_york_spring_forward_wildcard",
        cron("15,45 * * * *", NEW_YORK),
        NEW_YORK,
        "2027-03-14T01:00",
        ["2027-03-14T01:15:00-05:00", "2027-03-14T01:45:00-05:00", "2027-03-14T03:15:00-04:00"],
    ),
    (
        "new_york_fall_back_fixed_time_first_only",
        cron("30 1 * * *", NEW_YORK),
        NEW_YORK,
        "2027-11-06T12:00",
        ["2027-11-07T01:30:00-04:00", "2027-11-08T01:30:00-05:00"],
    ),
    (
        "new_york_fall_back_wildcard_both_passes",
        cron("*/30 * * * *", NEW_YORK),
        NEW_YORK,
        "2027-11-07T00:45",
        [
            "2027-11-07T01:00:00-04:00",
            "2027-11-07T01:30:00-04:00",
            "2027-11-07T01:00:00-05:00",
            "2027-11-07T01:30:00-05:00",
            "2027-11-07T02:00:00-05:00",
        ],
    ),
    (
        "new_york_fall_back_fixed_time_after_the_overlap",
        cron("30 2 * * *", NEW_YORK),
        NEW_YORK,
        "2027-11-06T12:00",
        ["2027-11-07T02:30:00-05:00", "2027-11-08T02:30:00-05:00"],
    ),
    # CRON in Australia/Lord_Howe (30-minute shift)
    (
        "lord_howe_spring_forward_half_hour_gap_fixed_time",
        cron("0 2 * * *", LORD_HOWE),
        LORD_HOWE,
        "2027-10-02T12:00",
        ["2027-10-03T02:30:00+11:00 DST_GAP", "2027-10-04T02:00:00+11:00"],
    ),
    (
        "lord_howe_spring_forward_quarter_past_in_the_gap",
        cron("15 2 * * *", LORD_HOWE),
        LORD_HOWE,
        "2027-10-02T12:00",
        ["2027-10-03T02:30:00+11:00 DST_GAP", "2027-10-04T02:15:00+11:00"],
    ),
    (
        "lord_howe_spring_forward_gap_end_exists",  # 02:30 is the first valid time: not moved
        cron("30 2 * * *", LORD_HOWE),
        LORD_HOWE,
        "2027-10-02T12:00",
        ["2027-10-03T02:30:00+11:00", "2027-10-04T02:30:00+11:00"],
    ),
    (
        "lord_howe_spring_forward_wildcard_skips_half_hour",
        cron("*/15 * * * *", LORD_HOWE),
        LORD_HOWE,
        "2027-10-03T01:40",
        ["2027-10-03T01:45:00+10:30", "2027-10-03T02:30:00+11:00", "2027-10-03T02:45:00+11:00"],
    ),
    (
        "lord_howe_fall_back_fixed_time_first_only",
        cron("45 1 * * *", LORD_HOWE),
        LORD_HOWE,
        "2027-04-03T12:00",
        ["2027-04-04T01:45:00+11:00", "2027-04-05T01:45:00+10:30"],
    ),
    (
        "lord_howe_fall_back_wildcard_both_half_hour_passes",
        cron("*/15 * * * *", LORD_HOWE),
        LORD_HOWE,
        "2027-04-04T01:20",
        [
            "2027-04-04T01:30:00+11:00",
            "2027-04-04T01:45:00+11:00",
            "2027-04-04T01:30:00+10:30",
            "2027-04-04T01:45:00+10:30",
            "2027-04-04T02:00:00+10:30",
        ],
    ),
    (
        "lord_howe_fall_back_hourly_has_no_second_one_o_clock",  # 01:00 is before the repeated half hour
        cron("0 * * * *", LORD_HOWE),
        LORD_HOWE,
        "2027-04-04T00:30",
        ["2027-04-04T01:00:00+11:00", "2027-04-04T02:00:00+10:30", "2027-04-04T03:00:00+10:30"],
    ),
    # CRON in Asia/Kolkata: no transitions
    (
        "kolkata_control_fixed_time",
        cron("30 2 * * *", KOLKATA),
        KOLKATA,
        "2027-03-27T12:00",
        ["2027-03-28T02:30:00+05:30", "2027-03-29T02:30:00+05:30"],
    ),
    (
        "kolkata_control_wildcard",
        cron("*/30 * * * *", KOLKATA),
        KOLKATA,
        "2027-10-31T01:45",
        ["2027-10-31T02:00:00+05:30", "2027-10-31T02:30:00+05:30", "2027-10-31T03:00:00+05:30"],
    ),
    # RRULE: RFC 5545 section 3.3.5
    (
        "rrule_spring_forward_gap_takes_offset_before",
        rule("FREQ=DAILY", BERLIN, "2027-03-20T02:30:00"),
        BERLIN,
        "2027-03-27T12:00",
        ["2027-03-28T03:30:00+02:00 DST_GAP", "2027-03-29T02:30:00+02:00"],
    ),
    (
        "rrule_fall_back_first_occurrence",
        rule("FREQ=DAILY", BERLIN, "2027-10-20T02:30:00"),
        BERLIN,
        "2027-10-30T12:00",
        ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"],
    ),
    (
        "rrule_hourly_gap_hour_and_next_hour_fire_once",  # 02:00 reads as 03:00 CEST, as 03:00 does
        rule("FREQ=HOURLY", BERLIN, "2027-03-01T00:00:00"),
        BERLIN,
        "2027-03-28T00:30",
        ["2027-03-28T01:00:00+01:00", "2027-03-28T03:00:00+02:00 DST_GAP", "2027-03-28T04:00:00+02:00"],
    ),
    (
        "rrule_hourly_repeated_hour_once",  # wall-clock recurrence: 02:00 is one local time
        rule("FREQ=HOURLY", BERLIN, "2027-10-01T00:00:00"),
        BERLIN,
        "2027-10-31T00:30",
        ["2027-10-31T01:00:00+02:00", "2027-10-31T02:00:00+02:00", "2027-10-31T03:00:00+01:00"],
    ),
    (
        "rrule_block_weekly_across_spring_forward",
        rule("DTSTART;TZID=Europe/Berlin:20270321T023000\nRRULE:FREQ=WEEKLY", BERLIN),
        BERLIN,
        "2027-03-20T00:00",
        ["2027-03-21T02:30:00+01:00", "2027-03-28T03:30:00+02:00 DST_GAP", "2027-04-04T02:30:00+02:00"],
    ),
    (
        "rrule_new_york_spring_forward_gap",
        rule("FREQ=DAILY", NEW_YORK, "2027-03-01T02:30:00"),
        NEW_YORK,
        "2027-03-13T12:00",
        ["2027-03-14T03:30:00-04:00 DST_GAP", "2027-03-15T02:30:00-04:00"],
    ),
    (
        "rrule_new_york_fall_back_first_occurrence",
        rule("FREQ=DAILY", NEW_YORK, "2027-11-01T01:30:00"),
        NEW_YORK,
        "2027-11-06T12:00",
        ["2027-11-07T01:30:00-04:00", "2027-11-08T01:30:00-05:00"],
    ),
    (
        "rrule_lord_howe_half_hour_gap",  # 02:15 read at +10:30 is 02:45 at +11:00
        rule("FREQ=DAILY", LORD_HOWE, "2027-09-01T02:15:00"),
        LORD_HOWE,
        "2027-10-02T12:00",
        ["2027-10-03T02:45:00+11:00 DST_GAP", "2027-10-04T02:15:00+11:00"],
    ),
    (
        "rrule_lord_howe_fall_back_first_occurrence",
        rule("FREQ=DAILY", LORD_HOWE, "2027-04-01T01:45:00"),
        LORD_HOWE,
        "2027-04-03T12:00",
        ["2027-04-04T01:45:00+11:00", "2027-04-05T01:45:00+10:30"],
    ),
    (
        "rrule_kolkata_control",
        rule("FREQ=DAILY", KOLKATA, "2027-03-01T02:30:00"),
        KOLKATA,
        "2027-03-27T12:00",
        ["2027-03-28T02:30:00+05:30", "2027-03-29T02:30:00+05:30"],
    ),
    # ONE_SHOT without an offset: RFC 5545 too
    (
        "one_shot_spring_forward_gap",
        one_shot("2027-03-28T02:30:00", BERLIN),
        BERLIN,
        "2027-03-01T00:00",
        ["2027-03-28T03:30:00+02:00 DST_GAP"],
    ),
    (
        "one_shot_fall_back_first_occurrence",
        one_shot("2027-10-31T02:30:00", BERLIN),
        BERLIN,
        "2027-10-01T00:00",
        ["2027-10-31T02:30:00+02:00"],
    ),
    (
        "one_shot_new_york_gap",
        one_shot("2027-03-14T02:30:00", NEW_YORK),
        NEW_YORK,
        "2027-03-01T00:00",
        ["2027-03-14T03:30:00-04:00 DST_GAP"],
    ),
    (
        "one_shot_new_york_overlap",
        one_shot("2027-11-07T01:30:00", NEW_YORK),
        NEW_YORK,
        "2027-11-01T00:00",
        ["2027-11-07T01:30:00-04:00"],
    ),
    (
        "one_shot_lord_howe_half_hour_gap",
        one_shot("2027-10-03T02:15:00", LORD_HOWE),
        LORD_HOWE,
        "2027-10-01T00:00",
        ["2027-10-03T02:45:00+11:00 DST_GAP"],
    ),
    (
        "one_shot_lord_howe_overlap",
        one_shot("2027-04-04T01:45:00", LORD_HOWE),
        LORD_HOWE,
        "2027-04-01T00:00",
        ["2027-04-04T01:45:00+11:00"],
    ),
    (
        "one_shot_kolkata_control",
        one_shot("2027-03-28T02:30:00", KOLKATA),
        KOLKATA,
        "2027-03-01T00:00",
        ["2027-03-28T02:30:00+05:30"],
    ),
    (
        "one_shot_with_offset_picks_the_second_pass",
        one_shot("2027-10-31T02:30:00+01:00", BERLIN),
        BERLIN,
        "2027-10-01T00:00",
        ["2027-10-31T02:30:00+01:00"],
    ),
]


@pytest.mark.parametrize(
    ("make", "zone", "after", "expected"), [c[1:] for c in DST_CASES], ids=[c[0] for c in DST_CASES]
)
def test_dst_policy(make: Callable[[], Trigger], zone: str, after: str, expected: list[str]) -> None:
    assert upcoming(make(), zone, after, len(expected) + 1)[: len(expected)] == expected


def test_dst_gap_fires_explain_the_move() -> None:
    moved = CronTrigger("30 2 * * *", BERLIN).next_fire(local("2027-03-27T12:00", BERLIN))
    assert moved == Fire(
        datetime(2027, 3, 28, 1, 0, tzinfo=UTC),
        note="02:30 does not exist on 2027-03-28 in Europe/Berlin (DST gap); "
        "fired at the first valid instant after it, 03:00.",
        kind="DST_GAP",
        moved_from="2027-03-28T02:30:00",
    )
    read = RRuleTrigger("FREQ=DAILY", LORD_HOWE, "2027-09-01T02:15:00").next_fire(local("2027-10-02T12:00", LORD_HOWE))
    assert read is not None
    assert (read.kind, read.moved_from) == ("DST_GAP", "2027-10-03T02:15:00")
    assert read.note == (
        "02:15 does not exist on 2027-10-03 in Australia/Lord_Howe (DST gap); read with the offset "
        "from before the gap (RFC 5545), 02:45."
    )
    single = OneShotTrigger("2027-03-14T02:30:00", NEW_YORK).next_fire(local("2027-03-01T00:00", NEW_YORK))
    assert single is not None
    assert (single.kind, single.moved_from) == ("DST_GAP", "2027-03-14T02:30:00")
    assert "does not exist on 2027-03-14 in America/New_York" in single.note


def test_unmoved_fires_carry_no_explanation() -> None:
    for fire in fires(CronTrigger("*/30 * * * *", BERLIN), local("2027-10-31T01:45", BERLIN), 5):
        assert (fire.note, fire.kind, fire.moved_from) == ("", "", "")


# Dense crons across transitions: the search walks the pieces between transitions, and must give
# exactly the elapsed-time fires a brute-force scan of UTC instants finds (every instant whose
# wall time matches: nothing in a gap, both passes of a repeated hour).
DENSE_TRANSITIONS = [
    ("berlin_spring_forward", BERLIN, datetime(2027, 3, 28, 1, 0, tzinfo=UTC)),
    ("berlin_fall_back", BERLIN, datetime(2027, 10, 31, 1, 0, tzinfo=UTC)),
    ("new_york_spring_forward", NEW_YORK, datetime(2027, 3, 14, 7, 0, tzinfo=UTC)),
    ("new_york_fall_back", NEW_YORK, datetime(2027, 11, 7, 6, 0, tzinfo=UTC)),
    ("lord_howe_fall_back", LORD_HOWE, datetime(2027, 4, 3, 15, 0, tzinfo=UTC)),
    ("lord_howe_spring_forward", LORD_HOWE, datetime(2027, 10, 2, 15, 30, tzinfo=UTC)),
]


def scanned_fires(zone: str, start: datetime, end: datetime, step: timedelta, matches: Callable[[datetime], bool]):
    """Every instant in (start, end] on the ``step`` grid whose wall time in ``zone`` matches."""
    tz, found, instant = ZoneInfo(zone), [], start + step
    while instant <= end:
        if matches(instant.astimezone(tz).replace(tzinfo=None)):
            found.append(instant)
        instant += step
    return found


def fires_until(trigger: Trigger, start: datetime, end: datetime) -> list[datetime]:
    found, after = [], start
    while (fire := trigger.next_fire(after)) is not None and fire.at <= end:
        found.append(fire.at)
        after = fire.at
    return found


@pytest.mark.parametrize(
    ("zone", "transition"), [c[1:] for c in DENSE_TRANSITIONS], ids=[c[0] for c in DENSE_TRANSITIONS]
)
def test_per_second_cron_fires_every_second_across_a_transition(zone: str, transition: datetime) -> None:
    before, at = (transition - timedelta(seconds=1)).astimezone(ZoneInfo(zone)), transition.astimezone(ZoneInfo(zone))
    assert before.utcoffset() != at.utcoffset()
    trigger = CronTrigger("* * * * * *", zone)
    start, end = transition - timedelta(minutes=20), transition + timedelta(minutes=20)
    assert fires_until(trigger, start, end) == scanned_fires(zone, start, end, timedelta(seconds=1), lambda _: True)
    # From anywhere within the search's window either side, and off the second: the next second.
    for seconds in range(-4 * 3600, 4 * 3600, 437):
        after = transition + timedelta(seconds=seconds, microseconds=250_000)
        assert next_after(trigger, after) == after.replace(microsecond=0) + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("zone", "transition"), [c[1:] for c in DENSE_TRANSITIONS], ids=[c[0] for c in DENSE_TRANSITIONS]
)
@pytest.mark.parametrize("expression", ["*/5 * * * *", "*/20 * * * * *"])
def test_dense_cron_across_a_transition_matches_a_scan_of_utc(zone: str, transition: datetime, expression: str) -> None:
    step, start, end = timedelta(seconds=1), transition - timedelta(hours=4), transition + timedelta(hours=4)
    if expression == "*/5 * * * *":
        expected = scanned_fires(zone, start, end, step * 60, lambda wall: wall.minute % 5 == 0)
    else:
        start, end = transition - timedelta(hours=1), transition + timedelta(hours=1)
        expected = scanned_fires(zone, start, end, step, lambda wall: wall.second % 20 == 0)
    assert fires_until(CronTrigger(expression, zone), start, end) == expected


@pytest.mark.parametrize(
    ("zone", "transition"), [c[1:] for c in DENSE_TRANSITIONS], ids=[c[0] for c in DENSE_TRANSITIONS]
)
def test_search_near_a_transition_walks_few_candidates(zone: str, transition: datetime) -> None:
    trigger = CronTrigger("* * * * * *", zone)
    walked = 0

    def counted(start: datetime) -> Iterator[datetime]:
        nonlocal walked
        for wall in trigger._candidates(start):
            walked += 1
            yield wall

    calls = 0
    for seconds in range(-4 * 3600, 4 * 3600, 599):
        after = transition + timedelta(seconds=seconds)
        assert search(counted, trigger._resolve, after, trigger._tz) == Fire(after + timedelta(seconds=1))
        calls += 1
    assert walked <= 10 * calls  # not the 21,600 candidates of a six-hour window


FIXED_DELAY_CASES = [
    ("berlin_spring_forward", BERLIN, "2027-03-27T23:00", 6 * 3600, "2027-03-28T06:00:00+02:00"),
    ("berlin_fall_back", BERLIN, "2027-10-31T00:00", 6 * 3600, "2027-10-31T05:00:00+01:00"),
    ("new_york_spring_forward", NEW_YORK, "2027-03-14T01:30", 3600, "2027-03-14T03:30:00-04:00"),
    ("new_york_fall_back", NEW_YORK, "2027-11-07T01:30", 3600, "2027-11-07T01:30:00-05:00"),
    ("lord_howe_spring_forward", LORD_HOWE, "2027-10-03T01:45", 1800, "2027-10-03T02:45:00+11:00"),
    ("lord_howe_fall_back", LORD_HOWE, "2027-04-04T01:45", 1800, "2027-04-04T01:45:00+10:30"),
    ("kolkata_control", KOLKATA, "2027-03-28T01:30", 3600, "2027-03-28T02:30:00+05:30"),
]


@pytest.mark.parametrize(
    ("zone", "finished", "delay", "expected"), [c[1:] for c in FIXED_DELAY_CASES], ids=[c[0] for c in FIXED_DELAY_CASES]
)
def test_fixed_delay_is_elapsed_time_across_transitions(zone: str, finished: str, delay: int, expected: str) -> None:
    fire = FixedDelayTrigger(delay).next_fire(local(finished, zone))
    assert fire is not None
    assert shown(fire, zone) == expected
    assert fire.at - local(finished, zone) == timedelta(seconds=delay)


# --- RRULE ------------------------------------------------------------------------------------

END = "END"  # the rule has no fire after the ones listed
RRULE_CASES: list[tuple[str, dict[str, Any], str, str, list[str]]] = [
    (
        "count",
        {"rrule": "FREQ=DAILY;COUNT=3", "dtstart": "2027-01-01T09:00:00"},
        BERLIN,
        "2026-12-01T00:00",
        ["2027-01-01T09:00:00+01:00", "2027-01-02T09:00:00+01:00", "2027-01-03T09:00:00+01:00", END],
    ),
    (
        "count_asked_midway",
        {"rrule": "FREQ=DAILY;COUNT=3", "dtstart": "2027-01-01T09:00:00"},
        BERLIN,
        "2027-01-02T12:00",
        ["2027-01-03T09:00:00+01:00", END],
    ),
    (
        "until_is_inclusive",
        {"rrule": "FREQ=DAILY;UNTIL=20270103T080000Z", "dtstart": "2027-01-01T09:00:00"},
        BERLIN,
        "2026-12-01T00:00",
        ["2027-01-01T09:00:00+01:00", "2027-01-02T09:00:00+01:00", "2027-01-03T09:00:00+01:00", END],
    ),
    (
        "until_a_second_early",
        {"rrule": "FREQ=DAILY;UNTIL=20270103T075959Z", "dtstart": "2027-01-01T09:00:00"},
        BERLIN,
        "2026-12-01T00:00",
        ["2027-01-01T09:00:00+01:00", "2027-01-02T09:00:00+01:00", END],
    ),
    (
        "until_bounds_instants_in_a_gap",  # 02:30 on 03-28 is 01:30Z, after UNTIL 01:15Z (03:15 CEST)
        {"rrule": "FREQ=DAILY;UNTIL=20270328T011500Z", "dtstart": "2027-03-26T02:30:00"},
        BERLIN,
        "2027-03-25T00:00",
        ["2027-03-26T02:30:00+01:00", "2027-03-27T02:30:00+01:00", END],
    ),
    (
        "until_in_the_second_pass_keeps_the_first",  # 02:30 CEST (00:30Z) is before UNTIL 02:15 CET (01:15Z)
        {"rrule": "FREQ=DAILY;UNTIL=20271031T011500Z", "dtstart": "2027-10-30T02:30:00"},
        BERLIN,
        "2027-10-29T00:00",
        ["2027-10-30T02:30:00+02:00", "2027-10-31T02:30:00+02:00", END],
    ),
    (
        "last_weekday_of_month_bysetpos_with_exdate",  # 2027-06-30 excluded
        {
            "rrule": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            "dtstart": "2027-01-01T18:00:00",
            "exdate": ("2027-06-30T18:00:00",),
        },
        BERLIN,
        "2027-05-01T00:00",
        ["2027-05-31T18:00:00+02:00", "2027-07-30T18:00:00+02:00", "2027-08-31T18:00:00+02:00"],
    ),
    (
        "wkst_monday",  # RFC 5545's own example
        {"rrule": "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO", "dtstart": "1997-08-05T09:00:00"},
        "UTC",
        "1997-08-01T00:00",
        [
            "1997-08-05T09:00:00+00:00",
            "1997-08-10T09:00:00+00:00",
            "1997-08-19T09:00:00+00:00",
            "1997-08-24T09:00:00+00:00",
            END,
        ],
    ),
    (
        "wkst_sunday",
        {"rrule": "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU", "dtstart": "1997-08-05T09:00:00"},
        "UTC",
        "1997-08-01T00:00",
        [
            "1997-08-05T09:00:00+00:00",
            "1997-08-17T09:00:00+00:00",
            "1997-08-19T09:00:00+00:00",
            "1997-08-31T09:00:00+00:00",
            END,
        ],
    ),
    (
        "rdate_and_exdate_fields",
        {
            "rrule": "FREQ=WEEKLY;BYDAY=MO",
            "dtstart": "2027-01-04T09:00:00",
            "rdate": ("2027-01-06T10:00:00",),
            "exdate": ("2027-01-11T09:00:00",),
        },
        BERLIN,
        "2027-01-01T00:00",
        ["2027-01-04T09:00:00+01:00", "2027-01-06T10:00:00+01:00", "2027-01-18T09:00:00+01:00"],
    ),
    (
        "text_block_with_rdate_and_exdate",
        {
            "rrule": "DTSTART;TZID=Europe/Berlin:20270104T090000\n"
            "RRULE:FREQ=WEEKLY;BYDAY=MO\n"
            "RDATE;TZID=Europe/Berlin:20270106T100000\n"
            "EXDATE;TZID=Europe/Berlin:20270111T090000"
        },
        BERLIN,
        "2027-01-01T00:00",
        ["2027-01-04T09:00:00+01:00", "2027-01-06T10:00:00+01:00", "2027-01-18T09:00:00+01:00"],
    ),
    (
        "text_block_crlf_and_lowercase_names",
        {"rrule": "dtstart:20270104T090000\r\nrrule:FREQ=DAILY;COUNT=2"},
        NEW_YORK,
        "2027-01-01T00:00",
        ["2027-01-04T09:00:00-05:00", "2027-01-05T09:00:00-05:00", END],
    ),
    (
        "text_block_utc_dtstart_is_converted",
        {"rrule": "DTSTART:20270104T080000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO"},
        BERLIN,
        "2027-01-01T00:00",
        ["2027-01-04T09:00:00+01:00", "2027-01-11T09:00:00+01:00"],
    ),
    (
        "yearly_february_29",
        {"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "dtstart": "2024-02-29T09:00:00"},
        BERLIN,
        "2027-01-01T00:00",
        ["2028-02-29T09:00:00+01:00", "2032-02-29T09:00:00+01:00"],
    ),
    (
        "rdate_in_the_past_is_not_fired",
        {"rrule": "FREQ=YEARLY", "dtstart": "2027-06-01T09:00:00", "rdate": ("2027-01-15T09:00:00",)},
        BERLIN,
        "2027-02-01T00:00",
        ["2027-06-01T09:00:00+02:00", "2028-06-01T09:00:00+02:00"],
    ),
]


@pytest.mark.parametrize(
    ("arguments", "zone", "after", "expected"), [c[1:] for c in RRULE_CASES], ids=[c[0] for c in RRULE_CASES]
)
def test_rrule_fire_times(arguments: dict[str, Any], zone: str, after: str, expected: list[str]) -> None:
    trigger = RRuleTrigger(timezone=zone, **arguments)
    if expected[-1] == END:  # and nothing after the COUNT or UNTIL
        assert upcoming(trigger, zone, after, len(expected) + 5) == expected[:-1]
    else:
        assert upcoming(trigger, zone, after, len(expected)) == expected


RRULE_ERRORS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "tzid_differs_from_the_schedule",
        {"rrule": "DTSTART;TZID=America/New_York:20270104T090000\nRRULE:FREQ=DAILY"},
        "rrule",
        "DTSTART's TZID America/New_York differs from the schedule's timezone Europe/Berlin; "
        'set "timezone": "America/New_York" or leave TZID out.',
    ),
    (
        "count_and_until",
        {"rrule": "FREQ=DAILY;COUNT=3;UNTIL=20270103T080000Z", "dtstart": "2027-01-01T09:00:00"},
        "rrule",
        "COUNT and UNTIL must not both be given (RFC 5545 section 3.3.10).",
    ),
    (
        "until_not_utc",
        {"rrule": "FREQ=DAILY;UNTIL=20270103T080000", "dtstart": "2027-01-01T09:00:00"},
        "rrule",
        "UNTIL must be a UTC date-time ending in Z when DTSTART is a local time (RFC 5545 section 3.3.10), "
        "e.g. UNTIL=20271231T230000Z.",
    ),
    (
        "interval_zero",
        {"rrule": "FREQ=DAILY;INTERVAL=0", "dtstart": "2027-01-01T09:00:00"},
        "rrule",
        "INTERVAL must be between 1 and 10000.",
    ),
    (
        "bymonthday_zero",
        {"rrule": "FREQ=MONTHLY;BYMONTHDAY=0", "dtstart": "2027-01-01T09:00:00"},
        "rrule",
        "BYMONTHDAY value 0 is out of range -31..31 and not 0.",
    ),
    (
        "byday_unknown",
        {"rrule": "FREQ=WEEKLY;BYDAY=XX", "dtstart": "2027-01-01T09:00:00"},
        "rrule",
        "BYDAY value 'XX' is not a weekday such as MO, -1FR or 2TU.",
    ),
    (
        "byday_ordinal_in_weekly",
        {"rrule": "FREQ=WEEKLY;BYDAY=1MO", "dtstart": "2027-01-01T09:00:00"},
        "rrule",
        "BYDAY value '1MO': an ordinal needs FREQ=MONTHLY or YEARLY.",
    ),
    (
        "freq_missing",
        {"rrule": "BYDAY=MO", "dtstart": "2027-01-01T09:00:00"},
        "rrule",
        "FREQ is required (YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY or SECONDLY).",
    ),
    (
        "unknown_part",
        {"rrule": "FREQ=DAILY;BYFOO=1", "dtstart": "2027-01-01T09:00:00"},
        "rrule",
        "Unknown rule part BYFOO.",
    ),
    ("dtstart_missing", {"rrule": "FREQ=DAILY"}, "dtstart", "Required unless the rrule block carries a DTSTART line."),
    (
        "dtstart_twice",
        {"rrule": "DTSTART:20270104T090000\nRRULE:FREQ=DAILY", "dtstart": "2027-01-04T09:00:00"},
        "dtstart",
        "The rrule block already has a DTSTART; give it in one place only.",
    ),
    (
        "dtstart_with_offset",
        {"rrule": "FREQ=DAILY", "dtstart": "2027-01-04T09:00:00+01:00"},
        "dtstart",
        "Must be a local time without a UTC offset; the schedule's time zone applies.",
    ),
    (
        "exrule_refused",
        {"rrule": "DTSTART:20270104T090000\nRRULE:FREQ=DAILY\nEXRULE:FREQ=WEEKLY"},
        "rrule",
        "EXRULE is deprecated by RFC 5545 and not supported; use EXDATE.",
    ),
]


@pytest.mark.parametrize(
    ("arguments", "path", "message"), [c[1:] for c in RRULE_ERRORS], ids=[c[0] for c in RRULE_ERRORS]
)
def test_rrule_errors(arguments: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(InvalidTrigger) as raised:
        RRuleTrigger(timezone=BERLIN, **arguments)
    assert raised.value.errors == {path: [message]}


NEVER_FIRING_RULES = [
    (
        "february_30",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "2027-01-01T09:00:00",
        "The rule never produces an occurrence: no month in BYMONTH has the days in BYMONTHDAY.",
    ),
    (
        "sixth_monday",
        "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6",
        "2027-01-01T09:00:00",
        "The rule never produces an occurrence: BYSETPOS asks for more than the 5 candidates a period holds.",
    ),
    (
        "every_24_hours_never_at_3",
        "FREQ=HOURLY;INTERVAL=24;BYHOUR=3",
        "2027-01-01T09:00:00",
        "Not a valid recurrence rule: Invalid rrule byxxx generates an empty set.",
    ),
    (
        "every_two_hours_from_nine_never_at_four",  # dateutil lets this one through
        "FREQ=MINUTELY;INTERVAL=120;BYHOUR=4",
        "2027-01-01T09:00:00",
        "The rule never produces an occurrence: INTERVAL=120 never reaches the hours and minutes asked for.",
    ),
    (
        "every_7_days_on_another_weekday",
        "FREQ=DAILY;INTERVAL=7;BYDAY=TU",
        "2027-01-04T09:00:00",  # a Monday
        "The rule never produces an occurrence: every 7 days from DTSTART always falls on the same weekday.",
    ),
    (
        "february_31_minutely",
        "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=31",
        "2027-01-01T09:00:00",
        "The rule never produces an occurrence: no month in BYMONTH has the days in BYMONTHDAY.",
    ),
    (
        "week_1_in_june",  # a day filter no day passes, found by the yearly probe
        "FREQ=DAILY;BYMONTH=6;BYWEEKNO=1",
        "2027-01-01T09:00:00",
        "The rule never produces an occurrence: no day matches its BYxxx parts.",
    ),
]


@pytest.mark.parametrize(
    ("text", "dtstart", "message"), [c[1:] for c in NEVER_FIRING_RULES], ids=[c[0] for c in NEVER_FIRING_RULES]
)
def test_rrule_that_never_fires_is_refused_quickly(text: str, dtstart: str, message: str) -> None:
    def build() -> None:
        with pytest.raises(InvalidTrigger) as raised:
            RRuleTrigger(text, BERLIN, dtstart)
        assert raised.value.errors == {"rrule": [message]}

    _, seconds = timed(build)
    assert seconds < QUICKLY


@pytest.mark.parametrize(
    ("text", "dtstart", "expected"),
    [
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "2027-01-01T09:00:00", "2028-02-29T09:00:00+01:00"),
        (
            "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=9;BYMINUTE=0",
            "2027-01-01T00:00:00",
            "2028-02-29T09:00:00+01:00",
        ),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=5", "2027-01-01T09:00:00", "2027-03-29T09:00:00+02:00"),
        ("FREQ=YEARLY;BYDAY=FR;BYMONTHDAY=13;BYMONTH=2", "2027-01-01T09:00:00", "2032-02-13T09:00:00+01:00"),
    ],
    ids=["yearly_feb_29", "minutely_feb_29", "fifth_monday", "friday_the_13th_of_february"],
)
def test_sparse_but_valid_rules_answer_quickly(text: str, dtstart: str, expected: str) -> None:
    trigger = RRuleTrigger(text, BERLIN, dtstart)
    fire, seconds = timed(lambda: trigger.next_fire(local("2027-01-01T00:00", BERLIN)))
    assert fire is not None
    assert shown(fire, BERLIN) == expected
    assert seconds < QUICKLY


def test_rrule_until_before_dtstart_never_fires() -> None:
    trigger = RRuleTrigger("FREQ=DAILY;UNTIL=20200101T000000Z", BERLIN, "2027-01-01T09:00:00")
    assert trigger.next_fire(local("2019-01-01T00:00", BERLIN)) is None


# (rule, its DTSTARTs): ten years old for daily and longer periods; sub-daily rules a year or a
# month old, so that plain dateutil, the oracle, walks from DTSTART in reasonable time.
OLD = ("2017-02-28T09:30:00", "2016-02-29T23:00:00", "2017-12-31T00:45:10")
REANCHORED_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("FREQ=DAILY", OLD),
    ("FREQ=DAILY;INTERVAL=3", OLD),
    ("FREQ=DAILY;INTERVAL=5;BYHOUR=9,17;BYMINUTE=15", OLD),
    ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR", OLD),
    ("FREQ=WEEKLY;INTERVAL=3;WKST=SU;BYDAY=SU,TU", OLD),
    ("FREQ=MONTHLY;INTERVAL=2;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", OLD),
    ("FREQ=MONTHLY;INTERVAL=5", OLD),
    ("FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=31", OLD),
    ("FREQ=MONTHLY;INTERVAL=7;BYDAY=-1FR", OLD),
    ("FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=-1,15;BYHOUR=8;BYMINUTE=5,10;BYSETPOS=2", OLD),
    ("FREQ=YEARLY;INTERVAL=3", OLD),
    ("FREQ=YEARLY;INTERVAL=2;BYMONTH=1,7;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1,-1", OLD),
    ("FREQ=YEARLY;BYWEEKNO=1,53;BYDAY=MO", OLD),
    ("FREQ=YEARLY;INTERVAL=2;BYYEARDAY=100,-1", OLD),
    ("FREQ=WEEKLY;INTERVAL=2;UNTIL=20280101T000000Z", OLD),
    ("FREQ=HOURLY;INTERVAL=5", ("2026-01-31T09:30:00", "2025-12-31T23:59:59")),
    ("FREQ=HOURLY;INTERVAL=7;BYMINUTE=0,30", ("2026-01-31T09:30:00", "2025-12-31T23:59:59")),
    ("FREQ=MINUTELY;INTERVAL=97", ("2026-11-30T09:30:00", "2026-12-31T23:59:59")),
]
PROBES = [datetime(2027, 1, 1) + timedelta(days=d, hours=h) for d in (0, 28, 59, 180, 365, 400) for h in (0, 9.5)]


@pytest.mark.parametrize(
    ("text", "dtstart"),
    [(text, start) for text, starts in REANCHORED_RULES for start in starts],
    ids=[f"{text}@{start[:10]}" for text, starts in REANCHORED_RULES for start in starts],
)
def test_reanchoring_gives_plain_dateutils_occurrences(text: str, dtstart: str) -> None:
    """In UTC wall time is the instant, so plain dateutil from the old DTSTART is the oracle."""
    trigger = RRuleTrigger(text, "UTC", dtstart)
    start = datetime.fromisoformat(dtstart)
    plain = rrulestr(text, dtstart=start.replace(tzinfo=UTC), cache=False)
    window = [
        o.replace(tzinfo=None)
        for o in plain.between(start.replace(tzinfo=UTC), datetime(2045, 1, 1, tzinfo=UTC), inc=True)
    ]
    for probe in [*PROBES, start - timedelta(days=3), start, start + timedelta(seconds=1)]:
        expected = next((o for o in window if o > probe), None)
        found = trigger.next_fire(probe.replace(tzinfo=UTC))
        assert (found.at if found else None) == (expected.replace(tzinfo=UTC) if expected else None), probe
        if found is not None and expected is not None:  # and the one after it, asked from the fire itself
            following = next((o for o in window if o > expected), None)
            again = trigger.next_fire(found.at)
            assert (again.at if again else None) == (following.replace(tzinfo=UTC) if following else None)


def test_reanchoring_matches_dateutil_in_a_dst_zone() -> None:
    """A ten-year-old daily 02:30 in Berlin: dateutil's wall times, read as RFC 5545 reads them."""
    trigger = RRuleTrigger("FREQ=DAILY;INTERVAL=3", BERLIN, "2017-03-01T02:30:00")
    plain = rrulestr("FREQ=DAILY;INTERVAL=3", dtstart=datetime(2017, 3, 1, 2, 30), cache=False)
    tz = ZoneInfo(BERLIN)
    after = local("2027-03-20T00:00", BERLIN)
    expected = [resolve_rfc5545(wall, tz) for wall in plain.between(to_local(after, tz), datetime(2027, 11, 30))]
    assert [f.at for f in fires(trigger, after, len(expected))] == expected


# --- ONE_SHOT and FIXED_DELAY -----------------------------------------------------------------


def test_one_shot_with_offset_is_that_instant_whatever_the_zone() -> None:
    trigger = OneShotTrigger("2027-03-01T09:00:00+01:00", NEW_YORK)
    assert [f.at for f in fires(trigger, datetime(2027, 1, 1, tzinfo=UTC), 5)] == [
        datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
    ]


def test_one_shot_without_offset_is_local_time() -> None:
    trigger = OneShotTrigger("2027-03-01T09:00:00", NEW_YORK)
    assert [f.at for f in fires(trigger, datetime(2027, 1, 1, tzinfo=UTC), 5)] == [
        datetime(2027, 3, 1, 14, 0, tzinfo=UTC)
    ]


def test_one_shot_is_exhausted_after_it_fires() -> None:
    trigger = OneShotTrigger("2027-03-01T09:00:00", BERLIN)
    fire = trigger.next_fire(local("2027-03-01T08:59:59", BERLIN))
    assert fire is not None
    assert trigger.next_fire(fire.at) is None
    assert trigger.next_fire(fire.at - timedelta(microseconds=1)) == fire
    assert trigger.next_fire(local("2030-01-01T00:00", BERLIN)) is None


def test_one_shot_refuses_a_non_date() -> None:
    with pytest.raises(InvalidTrigger) as raised:
        OneShotTrigger("tomorrow", BERLIN)
    assert raised.value.errors == {"run_at": ["'tomorrow' is not an ISO 8601 date-time."]}


def test_fixed_delay_next_is_after_plus_delay() -> None:
    finished = datetime(2027, 5, 5, 10, 17, 3, 250_000, tzinfo=UTC)
    assert FixedDelayTrigger(21600).next_fire(finished) == Fire(datetime(2027, 5, 5, 16, 17, 3, 250_000, tzinfo=UTC))
    assert FixedDelayTrigger(1).next_fire(finished) == Fire(finished + timedelta(seconds=1))


FIRST_FIRE_CASES = [
    # (id, start_at, created_at, now, expected)
    (
        "from_start_at",
        "2027-05-10T06:00:00+00:00",
        "2027-05-01T00:00:00+00:00",
        "2027-05-02T00:00:00+00:00",
        "2027-05-10T06:00:00+00:00",
    ),
    (
        "from_creation_plus_delay",
        None,
        "2027-05-01T00:00:00+00:00",
        "2027-05-01T00:00:05+00:00",
        "2027-05-01T06:00:00+00:00",
    ),
    (
        "start_at_already_past_fires_now",
        "2027-05-01T01:00:00+00:00",
        "2027-05-01T00:00:00+00:00",
        "2027-05-03T00:00:00+00:00",
        "2027-05-03T00:00:00+00:00",
    ),
]


@pytest.mark.parametrize(
    ("start_at", "created_at", "now", "expected"),
    [c[1:] for c in FIRST_FIRE_CASES],
    ids=[c[0] for c in FIRST_FIRE_CASES],
)
def test_fixed_delay_first_fire(start_at: str | None, created_at: str, now: str, expected: str) -> None:
    spec = FixedDelaySpec(21600)
    start = datetime.fromisoformat(start_at) if start_at else None
    trigger = build_trigger(spec, timezone=BERLIN, start_at=start)
    fire = first_fire(
        spec, trigger, now=datetime.fromisoformat(now), created_at=datetime.fromisoformat(created_at), start_at=start
    )
    assert fire is not None
    assert fire.at == datetime.fromisoformat(expected)


def test_first_fire_of_a_cron_is_its_next_fire_after_now() -> None:
    spec = CronSpec("0 2 * * *")
    trigger = build_trigger(spec, timezone=BERLIN)
    now = local("2027-03-27T12:00", BERLIN)
    fire = first_fire(spec, trigger, now=now, created_at=now - timedelta(days=9))
    assert fire is not None
    assert shown(fire, BERLIN) == "2027-03-28T03:00:00+02:00 DST_GAP"


# --- calendar policies ------------------------------------------------------------------------


def policy(expression: str, zone: str, calendar: BusinessCalendar, name: str) -> CalendarPolicyTrigger:
    return CalendarPolicyTrigger(CronTrigger(expression, zone), calendar, name, zone)


CALENDAR_CASES: list[tuple[str, CalendarPolicyTrigger, str, str, list[str]]] = [
    (
        "skip_drops_christmas_and_new_year",
        policy("0 9 * * FRI", BERLIN, BAVARIA, "SKIP"),
        BERLIN,
        "2026-12-20T12:00",
        ["2027-01-08T09:00:00+01:00", "2027-01-15T09:00:00+01:00"],
    ),
    (
        "next_moves_to_monday_same_wall_time",
        policy("0 9 * * FRI", BERLIN, BAVARIA, "NEXT_BUSINESS_DAY"),
        BERLIN,
        "2026-12-20T12:00",
        [
            "2026-12-28T09:00:00+01:00 CALENDAR_SHIFT",
            "2027-01-04T09:00:00+01:00 CALENDAR_SHIFT",
            "2027-01-08T09:00:00+01:00",
        ],
    ),
    (
        "previous_moves_to_thursday_same_wall_time",
        policy("0 9 * * FRI", BERLIN, BAVARIA, "PREVIOUS_BUSINESS_DAY"),
        BERLIN,
        "2026-12-20T12:00",
        [
            "2026-12-24T09:00:00+01:00 CALENDAR_SHIFT",
            "2026-12-31T09:00:00+01:00 CALENDAR_SHIFT",
            "2027-01-08T09:00:00+01:00",
        ],
    ),
    (
        "bavaria_epiphany_next",
        policy("0 9 * * WED", BERLIN, BAVARIA, "NEXT_BUSINESS_DAY"),
        BERLIN,
        "2026-12-31T12:00",
        ["2027-01-07T09:00:00+01:00 CALENDAR_SHIFT", "2027-01-13T09:00:00+01:00"],
    ),
    (
        "federal_germany_has_no_epiphany",
        policy("0 9 * * WED", BERLIN, BusinessCalendar(country="DE"), "NEXT_BUSINESS_DAY"),
        BERLIN,
        "2026-12-31T12:00",
        ["2027-01-06T09:00:00+01:00", "2027-01-13T09:00:00+01:00"],
    ),
    (
        "next_across_easter_and_spring_forward",  # Good Friday and Easter Monday; 09:00 stays 09:00
        policy("0 9 * * FRI", BERLIN, BAVARIA, "NEXT_BUSINESS_DAY"),
        BERLIN,
        "2027-03-20T12:00",
        ["2027-03-30T09:00:00+02:00 CALENDAR_SHIFT", "2027-04-02T09:00:00+02:00"],
    ),
    (
        "previous_across_easter",
        policy("0 9 * * MON", BERLIN, BAVARIA, "PREVIOUS_BUSINESS_DAY"),
        BERLIN,
        "2027-03-26T12:00",  # Easter Monday 03-29 -> Thursday 03-25 is before this: dropped
        ["2027-04-05T09:00:00+02:00"],
    ),
    (
        "nyse_good_friday_next",
        policy("0 16 * * FRI", NEW_YORK, NYSE, "NEXT_BUSINESS_DAY"),
        NEW_YORK,
        "2027-03-20T12:00",
        ["2027-03-29T16:00:00-04:00 CALENDAR_SHIFT", "2027-04-02T16:00:00-04:00"],
    ),
    (
        "nyse_good_friday_skip",
        policy("0 16 * * FRI", NEW_YORK, NYSE, "SKIP"),
        NEW_YORK,
        "2027-03-20T12:00",
        ["2027-04-02T16:00:00-04:00"],
    ),
    (
        "several_days_land_on_one_instant_once",  # Jan 1-3 all move to Monday 4th, which fires itself
        policy("0 9 * * *", BERLIN, BAVARIA, "NEXT_BUSINESS_DAY"),
        BERLIN,
        "2026-12-30T12:00",
        [
            "2026-12-31T09:00:00+01:00",
            "2027-01-04T09:00:00+01:00",
            "2027-01-05T09:00:00+01:00",
            "2027-01-07T09:00:00+01:00",
            "2027-01-08T09:00:00+01:00",
        ],
    ),
    (
        "several_days_land_on_one_instant_once_previous",
        policy("0 9 * * *", BERLIN, BAVARIA, "PREVIOUS_BUSINESS_DAY"),
        BERLIN,
        "2026-12-30T12:00",
        [
            "2026-12-31T09:00:00+01:00",
            "2027-01-04T09:00:00+01:00",
            "2027-01-05T09:00:00+01:00",
            "2027-01-07T09:00:00+01:00",
        ],
    ),
    (
        "weekend_only_rule_lands_on_friday_once",
        policy("0 9 * * SAT,SUN", BERLIN, PLAIN, "PREVIOUS_BUSINESS_DAY"),
        BERLIN,
        "2027-01-01T12:00",
        [
            "2027-01-08T09:00:00+01:00 CALENDAR_SHIFT",
            "2027-01-15T09:00:00+01:00 CALENDAR_SHIFT",
        ],
    ),
    (
        "next_asked_on_a_weekend_still_fires_the_moved_saturday",  # Saturday 09:00 moved to Monday
        policy("0 9 * * SAT", BERLIN, PLAIN, "NEXT_BUSINESS_DAY"),
        BERLIN,
        "2027-01-09T10:00",
        ["2027-01-11T09:00:00+01:00 CALENDAR_SHIFT", "2027-01-18T09:00:00+01:00 CALENDAR_SHIFT"],
    ),
    (
        "previous_asked_on_friday_keeps_later_saturday_times",
        policy("0 9,15 * * SAT", BERLIN, PLAIN, "PREVIOUS_BUSINESS_DAY"),
        BERLIN,
        "2027-01-08T12:00",  # Friday noon: 09:00 would move before it, 15:00 after
        ["2027-01-08T15:00:00+01:00 CALENDAR_SHIFT", "2027-01-15T09:00:00+01:00 CALENDAR_SHIFT"],
    ),
    (
        "custom_holiday_named",
        policy(
            "0 9 * * FRI",
            BERLIN,
            BusinessCalendar(country="DE", holidays={date(2027, 5, 14): "Company offsite"}),
            "SKIP",
        ),
        BERLIN,
        "2027-05-10T00:00",
        ["2027-05-21T09:00:00+02:00"],
    ),
    (
        "custom_working_saturday_takes_the_new_year_fire",
        policy(
            "0 9 * * FRI",
            BERLIN,
            BusinessCalendar(country="DE", working_days=frozenset({date(2027, 1, 2)})),
            "NEXT_BUSINESS_DAY",
        ),
        BERLIN,
        "2026-12-29T00:00",
        ["2027-01-02T09:00:00+01:00 CALENDAR_SHIFT", "2027-01-08T09:00:00+01:00"],
    ),
    (
        "custom_working_saturday_fires_under_skip",
        policy("0 9 * * *", BERLIN, BusinessCalendar(working_days=frozenset({date(2027, 1, 9)})), "SKIP"),
        BERLIN,
        "2027-01-08T12:00",
        ["2027-01-09T09:00:00+01:00", "2027-01-11T09:00:00+01:00"],
    ),
    (
        "shifted_into_a_dst_gap_reads_rfc5545",  # a Sunday-working calendar: Saturday 02:30 -> Sunday 03:30 CEST
        policy("30 2 * * SAT", BERLIN, BusinessCalendar(weekend=frozenset({5})), "NEXT_BUSINESS_DAY"),
        BERLIN,
        "2027-03-26T12:00",
        ["2027-03-28T03:30:00+02:00 CALENDAR_SHIFT", "2027-04-04T02:30:00+02:00 CALENDAR_SHIFT"],
    ),
    (
        "shifted_into_a_gap_asked_later_that_morning",  # 03:10 CEST is after 02:30's wall, before 03:30
        policy("30 2 * * SAT", BERLIN, BusinessCalendar(weekend=frozenset({5})), "NEXT_BUSINESS_DAY"),
        BERLIN,
        "2027-03-28T03:10",
        ["2027-03-28T03:30:00+02:00 CALENDAR_SHIFT", "2027-04-04T02:30:00+02:00 CALENDAR_SHIFT"],
    ),
    (
        "leap_day_four_years_ahead_next",  # 2032-02-29 is a Sunday
        policy("0 9 29 2 *", BERLIN, BAVARIA, "NEXT_BUSINESS_DAY"),
        BERLIN,
        "2028-03-01T00:00",
        ["2032-03-01T09:00:00+01:00 CALENDAR_SHIFT", "2036-02-29T09:00:00+01:00"],
    ),
    (
        "leap_day_four_years_ahead_previous",
        policy("0 9 29 2 *", BERLIN, BAVARIA, "PREVIOUS_BUSINESS_DAY"),
        BERLIN,
        "2028-03-01T00:00",
        ["2032-02-27T09:00:00+01:00 CALENDAR_SHIFT", "2036-02-29T09:00:00+01:00"],
    ),
]


@pytest.mark.parametrize(
    ("trigger", "zone", "after", "expected"), [c[1:] for c in CALENDAR_CASES], ids=[c[0] for c in CALENDAR_CASES]
)
def test_calendar_policy(trigger: CalendarPolicyTrigger, zone: str, after: str, expected: list[str]) -> None:
    assert upcoming(trigger, zone, after, len(expected)) == expected


@pytest.mark.parametrize(
    ("name", "calendar", "expression", "after", "note"),
    [
        (
            "NEXT_BUSINESS_DAY",
            BAVARIA,
            "0 9 * * WED",
            "2027-01-01T00:00",
            "Moved from 2027-01-06 (Epiphany) to the next business day 2027-01-07.",
        ),
        (
            "PREVIOUS_BUSINESS_DAY",
            BAVARIA,
            "0 9 * * FRI",
            "2026-12-20T00:00",
            "Moved from 2026-12-25 (Christmas Day) to the previous business day 2026-12-24.",
        ),
        (
            "NEXT_BUSINESS_DAY",
            BusinessCalendar(country="DE", holidays={date(2027, 5, 14): "Company offsite"}),
            "0 9 * * FRI",
            "2027-05-10T00:00",
            "Moved from 2027-05-14 (Company offsite) to the next business day 2027-05-18.",  # 17th: Whit Monday
        ),
        (
            "NEXT_BUSINESS_DAY",
            BusinessCalendar(holidays={date(2027, 5, 14): ""}),
            "0 9 * * FRI",
            "2027-05-10T00:00",
            "Moved from 2027-05-14 (Company holiday) to the next business day 2027-05-17.",
        ),
        (
            "NEXT_BUSINESS_DAY",
            PLAIN,
            "0 9 * * SAT",
            "2027-01-01T00:00",
            "Moved from 2027-01-02 (Weekend (Saturday)) to the next business day 2027-01-04.",
        ),
    ],
    ids=["holiday_name", "previous", "custom_holiday_name", "unnamed_custom_holiday", "weekend"],
)
def test_calendar_shift_note_names_the_holiday(
    name: str, calendar: BusinessCalendar, expression: str, after: str, note: str
) -> None:
    fire = policy(expression, BERLIN, calendar, name).next_fire(local(after, BERLIN))
    assert fire is not None
    assert fire.kind == "CALENDAR_SHIFT"
    assert fire.note == note
    assert fire.moved_from == note.split()[2]


def test_skip_of_a_rule_that_only_fires_on_weekends_gives_up_quickly() -> None:
    trigger = policy("0 9 * * SAT,SUN", BERLIN, PLAIN, "SKIP")
    result, seconds = timed(lambda: trigger.next_fire(local("2027-01-01T00:00", BERLIN)))
    assert result is None
    assert seconds < QUICKLY


def test_calendar_policy_ends_with_its_inner_trigger() -> None:
    inner = RRuleTrigger("FREQ=WEEKLY;COUNT=2;BYDAY=FR", BERLIN, "2026-12-25T09:00:00")  # Christmas, New Year
    for name, expected in [
        ("SKIP", []),
        ("NEXT_BUSINESS_DAY", ["2026-12-28T09:00:00+01:00 CALENDAR_SHIFT", "2027-01-04T09:00:00+01:00 CALENDAR_SHIFT"]),
        (
            "PREVIOUS_BUSINESS_DAY",
            ["2026-12-24T09:00:00+01:00 CALENDAR_SHIFT", "2026-12-31T09:00:00+01:00 CALENDAR_SHIFT"],
        ),
    ]:
        trigger = CalendarPolicyTrigger(inner, BAVARIA, name, BERLIN)
        assert upcoming(trigger, BERLIN, "2026-12-01T00:00", 5) == expected, name


FIXED_DELAY_CALENDAR_CASES = [
    # (id, calendar, policy, previous run finished, delay, expected first fire)
    ("skip_follows_the_slots_to_monday", PLAIN, "SKIP", "2027-01-08T17:00", 12 * 3600, "2027-01-11T05:00:00+01:00"),
    (
        "next_moves_the_saturday_slot",
        PLAIN,
        "NEXT_BUSINESS_DAY",
        "2027-01-08T17:00",
        12 * 3600,
        "2027-01-11T05:00:00+01:00 CALENDAR_SHIFT",
    ),
    (
        "previous_cannot_move_before_the_finish",
        PLAIN,
        "PREVIOUS_BUSINESS_DAY",
        "2027-01-08T17:00",
        12 * 3600,
        "2027-01-11T05:00:00+01:00",
    ),
    (
        "previous_moves_back_while_still_ahead",  # Saturday 13:00 -> Friday 13:00, after the 01:00 finish
        PLAIN,
        "PREVIOUS_BUSINESS_DAY",
        "2027-01-08T01:00",
        36 * 3600,
        "2027-01-08T13:00:00+01:00 CALENDAR_SHIFT",
    ),
    (
        "business_day_slot_untouched",
        BAVARIA,
        "NEXT_BUSINESS_DAY",
        "2027-01-08T10:00",
        3600,
        "2027-01-08T11:00:00+01:00",
    ),
    (
        "new_year_six_hours_next",
        BAVARIA,
        "NEXT_BUSINESS_DAY",
        "2026-12-31T20:00",
        6 * 3600,
        "2027-01-04T02:00:00+01:00 CALENDAR_SHIFT",
    ),
    ("new_year_six_hours_skip", BAVARIA, "SKIP", "2026-12-31T20:00", 6 * 3600, "2027-01-04T02:00:00+01:00"),
]


@pytest.mark.parametrize(
    ("calendar", "name", "finished", "delay", "expected"),
    [c[1:] for c in FIXED_DELAY_CALENDAR_CASES],
    ids=[c[0] for c in FIXED_DELAY_CALENDAR_CASES],
)
def test_fixed_delay_under_a_calendar_policy_follows_its_slots(
    calendar: BusinessCalendar, name: str, finished: str, delay: int, expected: str
) -> None:
    """The slot is finish + delay; a skipped slot is followed by the next one (+ delay), a moved
    one keeps its wall time (before the fix: the delay counted from Monday 00:00, 11:59:59.999999)."""
    trigger = CalendarPolicyTrigger(FixedDelayTrigger(delay), calendar, name, BERLIN)
    assert upcoming(trigger, BERLIN, finished, 1) == [expected]


def test_fixed_delay_first_fire_under_a_calendar() -> None:
    spec = FixedDelaySpec(12 * 3600)
    trigger = build_trigger(spec, timezone=BERLIN, calendar=PLAIN, calendar_policy="NEXT_BUSINESS_DAY")
    created = local("2027-01-08T17:00", BERLIN)
    fire = first_fire(spec, trigger, now=created + timedelta(seconds=1), created_at=created)
    assert fire is not None
    assert shown(fire, BERLIN) == "2027-01-11T05:00:00+01:00 CALENDAR_SHIFT"


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown calendar policy 'LATER'"):
        CalendarPolicyTrigger(CronTrigger("0 9 * * *", BERLIN), BAVARIA, "LATER", BERLIN)


BUSINESS_DAY_CASES = [
    (
        "third_business_day_bavaria",  # Jan 1 and Jan 6 are holidays, Jan 2-3 a weekend
        {"day": 3, "at": clock(9), "calendar": BAVARIA},
        "2026-12-15T00:00",
        [
            "2027-01-07T09:00:00+01:00",
            "2027-02-03T09:00:00+01:00",
            "2027-03-03T09:00:00+01:00",
            "2027-04-05T09:00:00+02:00",
        ],
    ),
    (
        "third_business_day_federal",  # no Epiphany: the 6th
        {"day": 3, "at": clock(9), "calendar": BusinessCalendar(country="DE")},
        "2026-12-15T00:00",
        ["2027-01-06T09:00:00+01:00"],
    ),
    (
        "last_business_day",
        {"day": -1, "at": clock(18), "calendar": BAVARIA},
        "2027-01-01T00:00",
        [
            "2027-01-29T18:00:00+01:00",
            "2027-02-26T18:00:00+01:00",
            "2027-03-31T18:00:00+02:00",
            "2027-04-30T18:00:00+02:00",
        ],
    ),
    (
        "second_to_last_business_day",
        {"day": -2, "at": clock(18), "calendar": BAVARIA},
        "2027-01-01T00:00",
        ["2027-01-28T18:00:00+01:00", "2027-02-25T18:00:00+01:00"],
    ),
    (
        "quarter_ends",
        {"day": -1, "at": clock(18), "calendar": BAVARIA, "months": (3, 6, 9, 12)},
        "2027-01-01T00:00",
        [
            "2027-03-31T18:00:00+02:00",
            "2027-06-30T18:00:00+02:00",
            "2027-09-30T18:00:00+02:00",
            "2027-12-31T18:00:00+01:00",
        ],
    ),
    (
        "same_day_later_asked_moves_on",
        {"day": 3, "at": clock(9), "calendar": BAVARIA},
        "2027-01-07T09:00",
        ["2027-02-03T09:00:00+01:00"],
    ),
    (
        "months_without_that_many_business_days_are_skipped",  # Jan has 19, Feb 20, Mar 21
        {"day": 21, "at": clock(9), "calendar": BAVARIA},
        "2027-01-01T00:00",
        ["2027-03-31T09:00:00+02:00", "2027-04-29T09:00:00+02:00"],  # April has 22
    ),
    (
        "nyse_last_trading_day",
        {"day": -1, "at": clock(16), "calendar": NYSE, "months": (12,)},
        "2027-01-01T00:00",
        ["2027-12-31T16:00:00-05:00"],
    ),
]


@pytest.mark.parametrize(
    ("arguments", "after", "expected"), [c[1:] for c in BUSINESS_DAY_CASES], ids=[c[0] for c in BUSINESS_DAY_CASES]
)
def test_business_day_trigger(arguments: dict[str, Any], after: str, expected: list[str]) -> None:
    zone = NEW_YORK if arguments["calendar"] is NYSE else BERLIN
    trigger = BusinessDayTrigger(timezone=zone, **arguments)
    assert upcoming(trigger, zone, after, len(expected)) == expected


@pytest.mark.parametrize("day", [0, 24, -24])
def test_business_day_position_out_of_range(day: int) -> None:
    with pytest.raises(InvalidTrigger) as raised:
        BusinessDayTrigger(day, clock(9), BERLIN, BAVARIA)
    assert raised.value.errors == {"day": ["Must be 1..23 (from the month's start) or -1..-23 (from its end)."]}


def test_business_day_spec_needs_a_calendar() -> None:
    with pytest.raises(InvalidTrigger) as raised:
        build_trigger(BusinessDaySpec(3, "09:00"), timezone=BERLIN)
    assert raised.value.errors == {
        "type": ["A BUSINESS_DAY trigger counts business days: give the schedule a calendar."]
    }


def test_bounded_trigger_start_is_inclusive_and_end_too() -> None:
    inner = CronTrigger("0 9 * * *", BERLIN)
    start, end = local("2027-06-10T09:00", BERLIN), local("2027-06-12T09:00", BERLIN)
    trigger = BoundedTrigger(inner, start, end)
    assert upcoming(trigger, BERLIN, "2027-01-01T00:00", 5) == [
        "2027-06-10T09:00:00+02:00",
        "2027-06-11T09:00:00+02:00",
        "2027-06-12T09:00:00+02:00",
    ]
    assert trigger.next_fire(end) is None
    assert BoundedTrigger(inner, start, None).next_fire(end) == inner.next_fire(end)
    assert upcoming(BoundedTrigger(inner, None, end), BERLIN, "2027-06-11T12:00", 5) == ["2027-06-12T09:00:00+02:00"]


def test_build_trigger_applies_calendar_then_bounds() -> None:
    trigger = build_trigger(
        CronSpec("0 9 * * *"),
        timezone=BERLIN,
        calendar=BAVARIA,
        calendar_policy="SKIP",
        start_at=local("2027-01-05T09:00", BERLIN),
        end_at=local("2027-01-08T09:00", BERLIN),
    )
    assert upcoming(trigger, BERLIN, "2026-12-01T00:00", 5) == [
        "2027-01-05T09:00:00+01:00",
        "2027-01-07T09:00:00+01:00",
        "2027-01-08T09:00:00+01:00",
    ]


# --- naive datetimes are refused everywhere --------------------------------------------------

NAIVE = datetime(2027, 1, 1, 9, 0)
TRIGGERS: dict[str, Callable[[], Trigger]] = {
    "cron": lambda: CronTrigger("0 9 * * *", BERLIN),
    "rrule": lambda: RRuleTrigger("FREQ=DAILY", BERLIN, "2027-01-01T09:00:00"),
    "one_shot": lambda: OneShotTrigger("2027-03-01T09:00:00", BERLIN),
    "fixed_delay": lambda: FixedDelayTrigger(60),
    "calendar_skip": lambda: policy("0 9 * * *", BERLIN, BAVARIA, "SKIP"),
    "calendar_next": lambda: policy("0 9 * * *", BERLIN, BAVARIA, "NEXT_BUSINESS_DAY"),
    "business_day": lambda: BusinessDayTrigger(3, clock(9), BERLIN, BAVARIA),
    "bounded": lambda: BoundedTrigger(CronTrigger("0 9 * * *", BERLIN), None, None),
}


@pytest.mark.parametrize("make", TRIGGERS.values(), ids=TRIGGERS.keys())
def test_next_fire_refuses_naive_datetimes(make: Callable[[], Trigger]) -> None:
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        make().next_fire(NAIVE)
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        fires(make(), NAIVE, 3)


def test_bounds_and_first_fire_refuse_naive_datetimes() -> None:
    aware = datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="start_at must be timezone-aware"):
        build_trigger(CronSpec("0 9 * * *"), timezone=BERLIN, start_at=NAIVE)
    with pytest.raises(ValueError, match="end_at must be timezone-aware"):
        build_trigger(CronSpec("0 9 * * *"), timezone=BERLIN, end_at=NAIVE)
    with pytest.raises(ValueError, match="start_at must be timezone-aware"):
        BoundedTrigger(CronTrigger("0 9 * * *", BERLIN), NAIVE, None)
    spec = FixedDelaySpec(60)
    trigger = build_trigger(spec, timezone=BERLIN)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        first_fire(spec, trigger, now=NAIVE, created_at=aware)
    with pytest.raises(ValueError, match="created_at must be timezone-aware"):
        first_fire(spec, trigger, now=aware, created_at=NAIVE)
    with pytest.raises(ValueError, match="start_at must be timezone-aware"):
        first_fire(spec, trigger, now=aware, created_at=aware, start_at=NAIVE)


# --- properties ---------------------------------------------------------------------------------

NAMED_ZONES = (BERLIN, NEW_YORK, LORD_HOWE, KOLKATA)
ALL_ZONES = sorted(available_timezones())
ZONES = st.sampled_from(NAMED_ZONES) | st.sampled_from(ALL_ZONES)
YEARS = st.integers(2000, 2040)


@functools.lru_cache(maxsize=4096)
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """The instants in ``year`` at which ``zone`` changes its UTC offset (to the second)."""
    tz = ZoneInfo(zone)
    found = []
    low = datetime(year, 1, 1, tzinfo=UTC)
    while low.year == year:
        high = low + timedelta(days=7)
        if low.astimezone(tz).utcoffset() != high.astimezone(tz).utcoffset():
            a, b = int(low.timestamp()), int(high.timestamp())
            before = low.astimezone(tz).utcoffset()
            while b - a > 1:
                middle = (a + b) // 2
                if datetime.fromtimestamp(middle, UTC).astimezone(tz).utcoffset() == before:
                    a = middle
                else:
                    b = middle
            found.append(datetime.fromtimestamp(b, UTC))
        low = high
    return tuple(found)


@st.composite
def zones_and_instants(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and an instant, often within hours of one of the zone's transitions."""
    zone = draw(ZONES)
    year = draw(YEARS)
    near = transitions(zone, year)
    if near and draw(st.integers(0, 3)):
        instant = draw(st.sampled_from(near)) + timedelta(seconds=draw(st.integers(-5 * 3600, 5 * 3600)))
    else:
        instant = datetime(year, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 365 * 86400)))
    return zone, instant


@dataclass(frozen=True)
class CronField:
    text: str
    values: frozenset[int]


def _cron_field(low: int, high: int, names: tuple[str, ...] = (), first_name: int = 0) -> st.SearchStrategy[CronField]:
    def name_of(value: int) -> str:
        return names[value - first_name] if names and first_name <= value < first_name + len(names) else str(value)

    everything = frozenset(range(low, high + 1))
    star = st.just(CronField("*", everything))
    step = st.integers(1, max(1, (high - low) // 2)).map(
        lambda n: CronField(f"*/{n}", frozenset(range(low, high + 1, n)))
    )
    single = st.integers(low, high).map(lambda v: CronField(name_of(v), frozenset({v})))
    listed = st.lists(st.integers(low, high), min_size=2, max_size=4, unique=True).map(
        lambda vs: CronField(",".join(name_of(v) for v in sorted(vs)), frozenset(vs))
    )

    @st.composite
    def ranged(draw: st.DrawFn) -> CronField:
        a = draw(st.integers(low, high))
        b = draw(st.integers(a, high))
        n = draw(st.integers(1, 4))
        text = f"{name_of(a)}-{name_of(b)}" + (f"/{n}" if n > 1 else "")
        return CronField(text, frozenset(range(a, b + 1, n)))

    return st.one_of(star, step, single, listed, ranged())


MINUTES = _cron_field(0, 59)
HOURS = _cron_field(0, 23)
MONTH_DAYS = st.just(CronField("*", frozenset(range(1, 32)))) | _cron_field(1, 31)
MONTHS = st.just(CronField("*", frozenset(range(1, 13)))) | _cron_field(
    1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
)
WEEK_DAYS = st.just(CronField("*", frozenset(range(7)))) | _cron_field(
    0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 0
)


@dataclass(frozen=True)
class Cron:
    """An expression and the value sets it means: an oracle independent of croniter."""

    minute: CronField
    hour: CronField
    day: CronField
    month: CronField
    weekday: CronField
    second: CronField | None = None  # a 6-field expression, seconds first

    @property
    def expression(self) -> str:
        fields = (self.minute, self.hour, self.day, self.month, self.weekday)
        return " ".join(f.text for f in ((self.second, *fields) if self.second else fields))

    @property
    def elapsed_time(self) -> bool:
        return self.minute.text.startswith("*") or self.hour.text.startswith("*")

    def matches(self, wall: datetime) -> bool:
        if wall.second not in (self.second.values if self.second else {0}) or wall.microsecond:
            return False
        if wall.minute not in self.minute.values or wall.hour not in self.hour.values:
            return False
        if wall.month not in self.month.values:
            return False
        by_day = wall.day in self.day.values
        by_weekday = wall.isoweekday() % 7 in self.weekday.values
        if self.day.text.startswith("*") or self.weekday.text.startswith("*"):
            return by_day and by_weekday
        return by_day or by_weekday  # Vixie: both restricted, either matches


CRONS = st.builds(Cron, MINUTES, HOURS, MONTH_DAYS, MONTHS, WEEK_DAYS)
ORACLE_MINUTES = 3 * 24 * 60


def cron_oracle(cron: Cron, zone: str, after: datetime) -> datetime | None:
    """The first fire after ``after`` within three days, by stepping the clock minute by minute:
    elapsed-time rules fire at every instant whose wall time matches; fixed-time rules at the
    first occurrence of a matching wall time, and at the end of a gap that swallowed one."""
    tz = ZoneInfo(zone)
    instant = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    previous = (instant - timedelta(minutes=1)).astimezone(tz)
    for _ in range(ORACLE_MINUTES):
        shown_now = instant.astimezone(tz)
        wall = shown_now.replace(tzinfo=None, fold=0)
        if cron.elapsed_time:
            if cron.matches(wall):
                return instant
        else:
            if cron.matches(wall) and shown_now.fold == 0:
                return instant
            skipped = previous.replace(tzinfo=None, fold=0) + timedelta(minutes=1)
            while skipped < wall:  # a gap between the previous minute and this one
                if cron.matches(skipped):
                    return instant
                skipped += timedelta(minutes=1)
        previous = shown_now
        instant += timedelta(minutes=1)
    return None


# Zones whose offsets are whole minutes in every year drawn (local mean time ended long before).
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron=CRONS, place=zones_and_instants())
def test_property_cron_matches_a_minute_by_minute_oracle(cron: Cron, place: tuple[str, datetime]) -> None:
    zone, after = place
    trigger = CronTrigger(cron.expression, zone)
    fire = trigger.next_fire(after)
    expected = cron_oracle(cron, zone, after)
    if expected is None:
        assert fire is None or fire.at > after + timedelta(minutes=ORACLE_MINUTES - 1)
    else:
        assert fire is not None
        assert fire.at == expected
        wall = to_local(fire.at, ZoneInfo(zone))
        if fire.kind == "DST_GAP":
            moved_from = datetime.fromisoformat(fire.moved_from)
            assert classify(moved_from, ZoneInfo(zone)) is WallTime.GAP
            assert fire.at == gap_end(moved_from, ZoneInfo(zone))
            assert cron.matches(moved_from)
        else:
            assert cron.matches(wall)


# Seconds fields that are not dense: a per-second rule near a transition looks at hours of seconds.
SECONDS = st.sampled_from(
    [
        CronField("0", frozenset({0})),
        CronField("30", frozenset({30})),
        CronField("0,30", frozenset({0, 30})),
        CronField("*/15", frozenset({0, 15, 30, 45})),
        CronField("*/20", frozenset({0, 20, 40})),
        CronField("5-10", frozenset(range(5, 11))),
        CronField("59-59", frozenset({59})),
        CronField("10-50/20", frozenset({10, 30, 50})),
    ]
)
SIX_FIELD_CRONS = st.builds(Cron, MINUTES, HOURS, MONTH_DAYS, MONTHS, WEEK_DAYS, SECONDS)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron=SIX_FIELD_CRONS | CRONS, place=zones_and_instants())
def test_property_cron_fires_increase_and_match_their_expression(cron: Cron, place: tuple[str, datetime]) -> None:
    zone, after = place
    tz = ZoneInfo(zone)
    previous = after
    for fire in fires(CronTrigger(cron.expression, zone), after, 6):
        assert fire.at > previous
        previous = fire.at
        wall = datetime.fromisoformat(fire.moved_from) if fire.kind == "DST_GAP" else to_local(fire.at, tz)
        assert cron.matches(wall)
        assert classify(to_local(fire.at, tz), tz) is not WallTime.GAP
        if fire.kind == "DST_GAP":
            assert classify(wall, tz) is WallTime.GAP
            assert fire.at == gap_end(wall, tz)


@st.composite
def rrules(draw: st.DrawFn) -> str:
    """RRULE values from a small grammar; the day filters keep every rule satisfiable."""
    freq = draw(st.sampled_from(["YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY"]))
    parts = [f"FREQ={freq}"]
    interval = draw(st.sampled_from([1, 1, 2, 3, 5, 7]))
    if interval > 1:
        parts.append(f"INTERVAL={interval}")
    days = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
    byday = draw(st.lists(st.sampled_from(days), min_size=0, max_size=3, unique=True))
    if freq in ("MONTHLY", "YEARLY", "WEEKLY") and byday and draw(st.booleans()):
        parts.append("BYDAY=" + ",".join(byday))
        if freq == "MONTHLY" and draw(st.booleans()):
            parts.append(f"BYSETPOS={draw(st.sampled_from([1, 2, -1, -2]))}")
    elif freq == "MONTHLY" and draw(st.booleans()):
        parts.append(f"BYMONTHDAY={draw(st.sampled_from([1, 15, 28, -1, 31]))}")
    elif freq == "YEARLY" and draw(st.booleans()):
        parts.append(f"BYMONTH={draw(st.integers(1, 12))}")
    if freq in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY") and draw(st.booleans()):
        parts.append("BYHOUR=" + ",".join(map(str, sorted(draw(st.sets(st.integers(0, 23), min_size=1, max_size=3))))))
    if freq == "HOURLY" and draw(st.booleans()):
        parts.append(
            "BYMINUTE=" + ",".join(map(str, sorted(draw(st.sets(st.sampled_from([0, 15, 30, 45]), min_size=1)))))
        )
    if draw(st.integers(0, 4)) == 0:
        parts.append(f"WKST={draw(st.sampled_from(days))}")
    return ";".join(parts)


SPAN_BY_FREQ = {"YEARLY": 3650, "MONTHLY": 1500, "WEEKLY": 700, "DAILY": 400, "HOURLY": 40, "MINUTELY": 3}


def rrule_oracle(text: str, dtstart: datetime, zone: str, after: datetime) -> datetime | None:
    """Plain dateutil from DTSTART, every wall time read as RFC 5545 does; the earliest after."""
    tz = ZoneInfo(zone)
    plain = rrulestr(text, dtstart=dtstart, cache=False)
    best: datetime | None = None
    for wall in plain.xafter(to_local(after, tz) - timedelta(hours=26), inc=True):
        if best is not None and wall > to_local(best, tz) + timedelta(hours=26):
            break
        instant = resolve_rfc5545(wall, tz)
        if instant > after and (best is None or instant < best):
            best = instant
    return best


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=rrules(), place=zones_and_instants(), start_seconds=st.integers(0, 86400 * 366), age=st.floats(0, 1))
def test_property_rrule_matches_plain_dateutil(
    text: str, place: tuple[str, datetime], start_seconds: int, age: float
) -> None:
    zone, after = place
    freq = text.split(";")[0].removeprefix("FREQ=")
    start = to_local(after, ZoneInfo(zone)) - timedelta(days=SPAN_BY_FREQ[freq] * age)
    dtstart = start.replace(second=0, microsecond=0) + timedelta(seconds=start_seconds % 3600 // 60 * 60)
    try:
        trigger = RRuleTrigger(text, zone, dtstart.isoformat())
    except InvalidTrigger:
        # e.g. HOURLY;INTERVAL=5;BYHOUR=... that a 5-hour step from DTSTART never reaches
        assume(False)
    fire = trigger.next_fire(after)
    expected = rrule_oracle(text, dtstart, zone, after)
    assert (fire.at if fire else None) == expected
    previous = after
    for fire in fires(trigger, after, 5):
        assert fire.at > previous
        previous = fire.at


CALENDARS = st.sampled_from(
    [
        BAVARIA,
        NYSE,
        BusinessCalendar(country="US"),
        PLAIN,
        BusinessCalendar(weekend=frozenset({4, 5})),
        BusinessCalendar(weekend=frozenset({5})),  # Sunday works: shifts onto DST transition days
        BusinessCalendar(
            country="DE",
            holidays={date(2027, 12, d): "Winter break" for d in range(20, 32)},
            working_days=frozenset({date(2027, 12, 18)}),
        ),
    ]
)
POLICY_NAMES = st.sampled_from(["SKIP", "NEXT_BUSINESS_DAY", "PREVIOUS_BUSINESS_DAY"])
FIXED_CRONS = st.builds(
    lambda minute, hours, day, weekday: f"{minute} {hours} {day} * {weekday}",
    st.integers(0, 59),
    st.lists(st.integers(0, 23), min_size=1, max_size=2, unique=True).map(lambda hs: ",".join(map(str, sorted(hs)))),
    st.sampled_from(["*", "*", "1", "1,15", "L", "28-31"]),
    st.sampled_from(["*", "*", "MON-FRI", "SAT,SUN", "FRI", "0"]),
)


@st.composite
def calendar_places(draw: st.DrawFn) -> tuple[str, datetime]:
    """One of the four zones and an instant around 2027, often within hours of a transition."""
    zone = draw(st.sampled_from(NAMED_ZONES))
    near = transitions(zone, 2027)
    if near and draw(st.booleans()):
        return zone, draw(st.sampled_from(near)) + timedelta(seconds=draw(st.integers(-30 * 3600, 6 * 3600)))
    moment = draw(st.datetimes(min_value=datetime(2026, 12, 1), max_value=datetime(2028, 2, 1)))
    return zone, moment.replace(tzinfo=UTC)


def policy_oracle(inner: Trigger, calendar: BusinessCalendar, name: str, zone: str, after: datetime) -> datetime | None:
    """Shift every inner fire by hand and take the earliest landing after ``after``."""
    tz = ZoneInfo(zone)
    reach = timedelta(days=40)  # further than any run of non-business days in these calendars
    # A fixed delay's fires are its slots from `after`; any other trigger's are there already.
    cursor = after - reach if name == "NEXT_BUSINESS_DAY" and not isinstance(inner, FixedDelayTrigger) else after
    best: datetime | None = None
    for _ in range(2000):
        fire = inner.next_fire(cursor)
        if fire is None:
            break
        cursor = fire.at
        if best is not None and fire.at - (reach if name == "PREVIOUS_BUSINESS_DAY" else timedelta(0)) > best:
            break
        wall = to_local(fire.at, tz)
        if calendar.is_business_day(wall.date()):
            landed = fire.at
        elif name == "SKIP":
            continue
        else:
            move = calendar.next_business_day if name == "NEXT_BUSINESS_DAY" else calendar.previous_business_day
            landed = resolve_rfc5545(datetime.combine(move(wall.date()), wall.time()), tz)
        if landed > after and (best is None or landed < best):
            best = landed
    return best


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expression=FIXED_CRONS,
    calendar=CALENDARS,
    name=POLICY_NAMES,
    place=calendar_places(),
)
def test_property_calendar_policy_never_fires_on_a_closed_day(
    expression: str, calendar: BusinessCalendar, name: str, place: tuple[str, datetime]
) -> None:
    zone, after = place
    inner = CronTrigger(expression, zone)
    trigger = CalendarPolicyTrigger(inner, calendar, name, zone)
    found = fires(trigger, after, 4)
    previous = after
    for fire in found:
        assert fire.at > previous
        previous = fire.at
        assert calendar.is_business_day(to_local(fire.at, ZoneInfo(zone)).date())
        assert fire.kind in ("", "CALENDAR_SHIFT", "DST_GAP")
    first = found[0].at if found else None
    assert first == policy_oracle(inner, calendar, name, zone, after)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    delay=st.integers(3600, 3 * 86400),
    calendar=CALENDARS,
    name=POLICY_NAMES,
    place=calendar_places(),
)
def test_property_fixed_delay_under_a_calendar_follows_its_slots(
    delay: int, calendar: BusinessCalendar, name: str, place: tuple[str, datetime]
) -> None:
    zone, after = place
    inner = FixedDelayTrigger(delay)
    fire = CalendarPolicyTrigger(inner, calendar, name, zone).next_fire(after)
    assert fire is not None
    assert fire.at > after
    assert calendar.is_business_day(to_local(fire.at, ZoneInfo(zone)).date())
    assert fire.at == policy_oracle(inner, calendar, name, zone, after)


SPECS: st.SearchStrategy[TriggerSpec] = st.one_of(
    CRONS.map(lambda c: CronSpec(c.expression)),
    SIX_FIELD_CRONS.map(lambda c: CronSpec(c.expression)),
    st.builds(
        RRuleSpec,
        rrules(),
        st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)).map(
            lambda d: d.replace(microsecond=0).isoformat()
        ),
        st.lists(st.sampled_from(["2027-01-06T10:00:00", "2027-02-01T09:00:00"]), unique=True).map(tuple),
        st.lists(st.sampled_from(["2027-01-11T09:00:00", "2027-03-28T02:30:00"]), unique=True).map(tuple),
    ),
    st.integers(1, 366 * 24 * 3600).map(FixedDelaySpec),
    st.sampled_from(["2027-03-28T02:30:00", "2027-03-01T09:00:00+01:00", "2027-10-31T02:30:00-04:00"]).map(OneShotSpec),
    st.builds(
        BusinessDaySpec,
        st.integers(1, 23) | st.integers(-23, -1),
        st.sampled_from(["09:00", "18:30", "23:59:59"]),
        st.lists(st.integers(1, 12), min_size=1, max_size=12, unique=True).map(lambda ms: tuple(sorted(ms))),
    ),
)


@settings(max_examples=200, deadline=None)
@given(spec=SPECS)
def test_property_spec_round_trip(spec: TriggerSpec) -> None:
    document = dump_trigger(spec)
    assert parse_trigger(document) == spec
    assert dump_trigger(parse_trigger(document)) == document
