"""The business-day engine: holiday sources of `holidays`, weekends, custom dates, searches.

Dates are 2027 unless a case says otherwise. Expected names are what `holidays` 0.109 calls
the days in English; a changed name after an upgrade fails here, on purpose.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from typing import Any

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calendars.engine import (
    MAX_RANGE_DAYS,
    SEARCH_DAYS,
    BusinessCalendar,
    Closure,
    FrozenDates,
    InvalidCalendar,
    NoBusinessDay,
    NonBusinessDay,
    interned,
)
from scheduler_project.config import BASE_DIR

D = date.fromisoformat

DE = BusinessCalendar(country="DE")
BAVARIA = BusinessCalendar(country="DE", subdivision="BY")
BERLIN = BusinessCalendar(country="DE", subdivision="BE")
US = BusinessCalendar(country="US")
CALIFORNIA = BusinessCalendar(country="US", subdivision="CA")
NYSE = BusinessCalendar(market="NYSE")
PLAIN = BusinessCalendar()  # Saturday and Sunday off, nothing else
FRIDAY_SATURDAY = BusinessCalendar(weekend=frozenset({4, 5}))
ALL_WEEKEND = BusinessCalendar(weekend=frozenset(range(7)))


# --- one day: business day or not, and why ----------------------------------------------------

REASONS: dict[str, tuple[BusinessCalendar, str, str | None]] = {
    "de_new_year": (DE, "2027-01-01", "New Year's Day"),
    "de_federal_has_no_epiphany": (DE, "2027-01-06", None),
    "de_bavaria_epiphany": (BAVARIA, "2027-01-06", "Epiphany"),
    "de_berlin_has_no_epiphany": (BERLIN, "2027-01-06", None),
    "de_berlin_womens_day": (BERLIN, "2027-03-08", "Women's Day"),
    "de_bavaria_has_no_womens_day": (BAVARIA, "2027-03-08", None),
    "de_bavaria_corpus_christi": (BAVARIA, "2027-05-27", "Corpus Christi"),
    "de_holiday_on_sunday_named_as_holiday": (DE, "2027-12-26", "Second Day of Christmas"),
    "de_christmas_eve_is_a_working_day": (DE, "2027-12-24", None),
    "us_independence_day_on_sunday": (US, "2027-07-04", "Independence Day"),
    "us_independence_day_observed_monday": (US, "2027-07-05", "Independence Day (observed)"),
    "us_new_year_2028_observed_in_2027": (US, "2027-12-31", "New Year's Day (observed)"),
    "us_federal_has_no_cesar_chavez_day": (US, "2027-03-31", None),
    "us_california_cesar_chavez_day": (CALIFORNIA, "2027-03-31", "Cesar Chavez Day"),
    "us_california_two_names_one_day": (CALIFORNIA, "2027-02-15", "Presidents' Day; Susan B. Anthony Day"),
    "us_federal_has_no_good_friday": (US, "2027-03-26", None),
    "nyse_good_friday": (NYSE, "2027-03-26", "Good Friday"),
    "nyse_open_before_a_saturday_new_year": (NYSE, "2027-12-31", None),
    "nyse_christmas_observed_friday": (NYSE, "2027-12-24", "Christmas Day (observed)"),
    "nyse_one_off_closing": (NYSE, "2025-01-09", "National Day of Mourning for former President Jimmy Carter"),
    "plain_saturday": (PLAIN, "2027-05-08", "Weekend (Saturday)"),
    "plain_sunday": (PLAIN, "2027-05-09", "Weekend (Sunday)"),
    "plain_wednesday": (PLAIN, "2027-05-05", None),
    "plain_has_no_holidays": (PLAIN, "2027-12-24", None),
    "friday_saturday_weekend_friday": (FRIDAY_SATURDAY, "2027-05-07", "Weekend (Friday)"),
    "friday_saturday_weekend_sunday_works": (FRIDAY_SATURDAY, "2027-05-09", None),
    "no_weekend_saturday_works": (BusinessCalendar(weekend=frozenset()), "2027-05-08", None),
    # holidays' Germany ends in 2100; later years are silently empty, not an error.
    "de_last_year_of_the_library": (DE, "2100-10-03", "German Unity Day"),
    "de_beyond_the_library_range": (DE, "2101-10-03", None),
}


@pytest.mark.parametrize(("calendar", "day", "reason"), list(REASONS.values()), ids=list(REASONS))
def test_non_business_reason(calendar: BusinessCalendar, day: str, reason: str | None) -> None:
    assert calendar.non_business_reason(D(day)) == reason
    assert calendar.is_business_day(D(day)) is (reason is None)


CUSTOM = BusinessCalendar(
    country="DE",
    holidays={D("2027-12-24"): "Christmas Eve", D("2027-06-11"): "", D("2027-12-25"): "Office party"},
    working_days=frozenset({D("2027-05-08"), D("2027-05-06"), D("2027-05-12")}),
)
CUSTOM_CASES: dict[str, tuple[str, str | None, Closure | None]] = {
    "custom_holiday_named": ("2027-12-24", "Christmas Eve", Closure.CUSTOM_HOLIDAY),
    "custom_holiday_unnamed": ("2027-06-11", "Company holiday", Closure.CUSTOM_HOLIDAY),
    "custom_holiday_over_library_holiday": ("2027-12-25", "Office party", Closure.CUSTOM_HOLIDAY),
    "working_day_over_weekend": ("2027-05-08", None, None),
    "working_day_over_library_holiday": ("2027-05-06", None, None),  # Ascension Day
    "working_day_on_a_weekday_changes_nothing": ("2027-05-12", None, None),
    "library_holiday": ("2027-12-26", "Second Day of Christmas", Closure.HOLIDAY),
    "weekend": ("2027-05-09", "Weekend (Sunday)", Closure.WEEKEND),
}


@pytest.mark.parametrize(("day", "reason", "kind"), list(CUSTOM_CASES.values()), ids=list(CUSTOM_CASES))
def test_custom_dates_take_precedence(day: str, reason: str | None, kind: Closure | None) -> None:
    assert CUSTOM.non_business_reason(D(day)) == reason
    assert CUSTOM.is_business_day(D(day)) is (reason is None)
    closure = CUSTOM.closure(D(day))
    assert (closure.kind if closure else None) == kind


def test_a_date_that_is_both_custom_holiday_and_working_day_works() -> None:
    calendar = BusinessCalendar(holidays={D("2027-05-05"): "x"}, working_days=frozenset({D("2027-05-05")}))
    assert calendar.is_business_day(D("2027-05-05"))


def test_names_do_not_follow_the_process_locale() -> None:
    """Without an explicit language, `holidays` names German days in German under LANG=de_DE."""
    code = (
        "from datetime import date\n"
        "from calendars.engine import BusinessCalendar\n"
        "print(BusinessCalendar(country='DE').non_business_reason(date(2027, 12, 26)))\n"
    )
    env = {**os.environ, "LANG": "de_DE.UTF-8", "LANGUAGE": "de", "LC_ALL": "de_DE.UTF-8"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "Second Day of Christmas"


# --- next and previous business day ----------------------------------------------------------

YEAR_END_OFF = BusinessCalendar(
    country="DE",
    holidays={D(f"2027-12-{day}"): "Year-end closure" for day in (24, 27, 28, 29, 30, 31)},
)

NEXT: dict[str, tuple[BusinessCalendar, str, str]] = {
    "plain_weekday_to_weekday": (PLAIN, "2027-05-05", "2027-05-06"),
    "plain_friday_to_monday": (PLAIN, "2027-05-07", "2027-05-10"),
    "plain_from_saturday": (PLAIN, "2027-05-08", "2027-05-10"),
    "de_christmas_weekend": (DE, "2027-12-24", "2027-12-27"),
    "de_year_end_closure_into_next_year": (YEAR_END_OFF, "2027-12-23", "2028-01-03"),
    "de_new_year_on_friday": (DE, "2026-12-31", "2027-01-04"),
    "de_easter": (DE, "2027-03-25", "2027-03-30"),
    "us_independence_day_observed": (US, "2027-07-02", "2027-07-06"),
    "nyse_good_friday": (NYSE, "2027-03-25", "2027-03-29"),
    "friday_saturday_weekend": (FRIDAY_SATURDAY, "2027-05-06", "2027-05-09"),
    "custom_working_saturday": (CUSTOM, "2027-05-07", "2027-05-08"),
}

PREVIOUS: dict[str, tuple[BusinessCalendar, str, str]] = {
    "plain_weekday_to_weekday": (PLAIN, "2027-05-06", "2027-05-05"),
    "plain_monday_to_friday": (PLAIN, "2027-05-10", "2027-05-07"),
    "de_year_end_closure_back_into_december": (YEAR_END_OFF, "2028-01-03", "2027-12-23"),
    "de_after_easter_monday": (DE, "2027-03-30", "2027-03-25"),
    "de_bavaria_after_epiphany": (BAVARIA, "2027-01-07", "2027-01-05"),
    "de_new_year_back_into_old_year": (DE, "2027-01-04", "2026-12-31"),
    "nyse_after_good_friday": (NYSE, "2027-03-29", "2027-03-25"),
    "us_christmas_observed": (US, "2027-12-27", "2027-12-23"),
    "friday_saturday_weekend": (FRIDAY_SATURDAY, "2027-05-09", "2027-05-06"),
}


@pytest.mark.parametrize(("calendar", "day", "expected"), list(NEXT.values()), ids=list(NEXT))
def test_next_business_day(calendar: BusinessCalendar, day: str, expected: str) -> None:
    assert calendar.next_business_day(D(day)) == D(expected)


@pytest.mark.parametrize(("calendar", "day", "expected"), list(PREVIOUS.values()), ids=list(PREVIOUS))
def test_previous_business_day(calendar: BusinessCalendar, day: str, expected: str) -> None:
    assert calendar.previous_business_day(D(day)) == D(expected)


# --- business days of a month ----------------------------------------------------------------

NTH: dict[str, tuple[BusinessCalendar, tuple[int, int], int, str | None]] = {
    "de_jan_first_skips_new_year_and_weekend": (DE, (2027, 1), 1, "2027-01-04"),
    "de_bavaria_jan_third_skips_epiphany": (BAVARIA, (2027, 1), 3, "2027-01-07"),
    "de_berlin_jan_third": (BERLIN, (2027, 1), 3, "2027-01-06"),
    "de_jan_last": (DE, (2027, 1), -1, "2027-01-29"),
    "de_jan_twentieth_is_the_last": (DE, (2027, 1), 20, "2027-01-29"),
    "de_jan_has_no_twenty_first": (DE, (2027, 1), 21, None),
    "de_jan_minus_twentieth_is_the_first": (DE, (2027, 1), -20, "2027-01-04"),
    "de_jan_has_no_minus_twenty_first": (DE, (2027, 1), -21, None),
    "de_march_last_before_easter": (DE, (2027, 3), -1, "2027-03-31"),
    "de_may_second_skips_labour_day_weekend": (DE, (2027, 5), 2, "2027-05-04"),
    "us_dec_last_is_the_observed_new_year_eve": (US, (2027, 12), -1, "2027-12-30"),
    "nyse_dec_last_trades_on_new_year_eve": (NYSE, (2027, 12), -1, "2027-12-31"),
    "year_end_closure_last": (YEAR_END_OFF, (2027, 12), -1, "2027-12-23"),
    "friday_saturday_first": (FRIDAY_SATURDAY, (2027, 1), 1, "2027-01-03"),
    "leap_february_last": (PLAIN, (2028, 2), -1, "2028-02-29"),
    "all_weekend_has_none": (ALL_WEEKEND, (2027, 1), 1, None),
}


@pytest.mark.parametrize(("calendar", "month", "n", "expected"), list(NTH.values()), ids=list(NTH))
def test_nth_business_day(calendar: BusinessCalendar, month: tuple[int, int], n: int, expected: str | None) -> None:
    assert calendar.nth_business_day(*month, n) == (D(expected) if expected else None)


def test_month_with_fewer_business_days_than_n() -> None:
    closed = {D("2027-02-01") + timedelta(days=i): "Shutdown" for i in range(25)}  # leaves Friday the 26th
    calendar = BusinessCalendar(holidays=closed)
    assert calendar.business_days_in_month(2027, 2) == [D("2027-02-26")]
    assert calendar.nth_business_day(2027, 2, 1) == D("2027-02-26")
    assert calendar.nth_business_day(2027, 2, -1) == D("2027-02-26")
    assert calendar.nth_business_day(2027, 2, 2) is None
    assert calendar.nth_business_day(2027, 2, -2) is None


def test_business_days_in_month() -> None:
    assert BAVARIA.business_days_in_month(2027, 1)[:4] == [
        D("2027-01-04"),
        D("2027-01-05"),
        D("2027-01-07"),
        D("2027-01-08"),
    ]
    assert len(DE.business_days_in_month(2027, 1)) == 20
    assert len(PLAIN.business_days_in_month(2027, 1)) == 21


@pytest.mark.parametrize("n", [0], ids=["zero"])
def test_nth_zero_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match="0 is neither"):
        DE.nth_business_day(2027, 1, n)


@pytest.mark.parametrize("month", [0, 13], ids=["month_0", "month_13"])
def test_month_out_of_range_is_refused(month: int) -> None:
    with pytest.raises(ValueError, match="month"):
        DE.business_days_in_month(2027, month)


# --- bounded searches ------------------------------------------------------------------------

A_YEAR_OF_HOLIDAYS = BusinessCalendar(
    holidays={D("2027-01-01") + timedelta(days=i): "Sabbatical" for i in range(SEARCH_DAYS + 7)}
)


@pytest.mark.parametrize(
    ("calendar", "search", "day"),
    [
        (ALL_WEEKEND, "next_business_day", "2027-05-05"),
        (ALL_WEEKEND, "previous_business_day", "2027-05-05"),
        (A_YEAR_OF_HOLIDAYS, "next_business_day", "2026-12-31"),
        (A_YEAR_OF_HOLIDAYS, "previous_business_day", "2028-01-07"),
        (PLAIN, "next_business_day", str(date.max)),
        (PLAIN, "previous_business_day", str(date.min)),
    ],
    ids=[
        "all_weekend_next",
        "all_weekend_previous",
        "year_of_holidays_next",
        "year_of_holidays_previous",
        "end_of_the_date_range",
        "start_of_the_date_range",
    ],
)
def test_search_without_a_business_day_raises(calendar: BusinessCalendar, search: str, day: str) -> None:
    with pytest.raises(NoBusinessDay):
        getattr(calendar, search)(D(day))


def test_no_business_day_is_a_value_error() -> None:
    assert issubclass(NoBusinessDay, ValueError)


def test_all_weekend_with_a_custom_working_day_finds_it() -> None:
    calendar = BusinessCalendar(weekend=frozenset(range(7)), working_days=frozenset({D("2027-06-01")}))
    assert calendar.next_business_day(D("2027-05-01")) == D("2027-06-01")
    assert calendar.previous_business_day(D("2027-07-01")) == D("2027-06-01")
    assert calendar.nth_business_day(2027, 6, 1) == D("2027-06-01")
    assert calendar.nth_business_day(2027, 6, 2) is None


def test_business_days_after_a_long_closure_are_found_at_the_edge_of_the_search() -> None:
    # SEARCH_DAYS - 1 closed days after the start: the last step of the search still finds one.
    closed = {D("2027-01-01") + timedelta(days=i): "Closed" for i in range(SEARCH_DAYS - 1)}
    calendar = BusinessCalendar(weekend=frozenset(), holidays=closed)
    assert calendar.next_business_day(D("2026-12-31")) == D("2026-12-31") + timedelta(days=SEARCH_DAYS)


# --- ranges ----------------------------------------------------------------------------------


def test_non_business_days_lists_names() -> None:
    calendar = BusinessCalendar(country="DE", subdivision="BY", holidays={D("2027-12-24"): "Christmas Eve"})
    assert calendar.non_business_days(D("2027-12-20"), D("2028-01-09")) == [
        (D("2027-12-24"), "Christmas Eve"),
        (D("2027-12-25"), "Christmas Day"),
        (D("2027-12-26"), "Second Day of Christmas"),
        (D("2028-01-01"), "New Year's Day"),
        (D("2028-01-02"), "Weekend (Sunday)"),
        (D("2028-01-06"), "Epiphany"),
        (D("2028-01-08"), "Weekend (Saturday)"),
        (D("2028-01-09"), "Weekend (Sunday)"),
    ]


def test_closures_carry_the_kind() -> None:
    assert CUSTOM.closures(D("2027-12-24"), D("2027-12-26")) == [
        NonBusinessDay(D("2027-12-24"), "Christmas Eve", Closure.CUSTOM_HOLIDAY),
        NonBusinessDay(D("2027-12-25"), "Office party", Closure.CUSTOM_HOLIDAY),
        NonBusinessDay(D("2027-12-26"), "Second Day of Christmas", Closure.HOLIDAY),
    ]


def test_non_business_days_of_a_single_day_and_of_the_longest_range() -> None:
    assert DE.non_business_days(D("2027-05-05"), D("2027-05-05")) == []
    assert DE.non_business_days(D("2027-12-25"), D("2027-12-25")) == [(D("2027-12-25"), "Christmas Day")]
    longest = PLAIN.non_business_days(D("2028-01-01"), D("2028-01-01") + timedelta(days=MAX_RANGE_DAYS - 1))
    assert len(longest) == 314  # 2028-2030: 156 weeks (312) and Saturday to Tuesday (2)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2027-05-06", "2027-05-05", "after it ends"),
        ("2027-01-01", str(D("2027-01-01") + timedelta(days=MAX_RANGE_DAYS)), "more than"),
    ],
    ids=["start_after_end", "over_the_cap"],
)
def test_non_business_days_refuses_a_bad_range(start: str, end: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DE.non_business_days(D(start), D(end))


# --- the value object ------------------------------------------------------------------------

INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "unknown_country": ({"country": "XX"}, "country"),
    "unknown_subdivision": ({"country": "DE", "subdivision": "XX"}, "subdivision"),
    "subdivision_without_country": ({"subdivision": "BY"}, "subdivision"),
    "unknown_market": ({"market": "MOON"}, "market"),
    "country_and_market": ({"country": "US", "market": "NYSE"}, "market"),
    "weekday_7": ({"weekend": frozenset({7})}, "weekend"),
    "weekday_negative": ({"weekend": frozenset({-1})}, "weekend"),
    "weekday_bool": ({"weekend": frozenset({True})}, "weekend"),
    "holiday_as_datetime": ({"holidays": {datetime(2027, 1, 1): "x"}}, "holidays"),
    "holiday_name_not_text": ({"holidays": {D("2027-01-01"): 1}}, "holidays"),
    "working_day_as_text": ({"working_days": frozenset({"2027-01-01"})}, "working_days"),
}


@pytest.mark.parametrize(("kwargs", "field"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_calendar_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidCalendar) as caught:
        BusinessCalendar(**kwargs)
    assert field in caught.value.errors
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "method",
    ["is_business_day", "non_business_reason", "next_business_day", "previous_business_day"],
)
def test_a_datetime_is_refused(method: str) -> None:
    with pytest.raises(TypeError, match=r"\.date\(\)"):
        getattr(DE, method)(datetime(2027, 12, 25, 9))


def test_equal_calendars_are_equal_and_hash_alike() -> None:
    first = BusinessCalendar(country="DE", weekend=frozenset({6, 5}), holidays={D("2027-12-24"): "Eve"})
    second = BusinessCalendar(country="DE", holidays=FrozenDates([(D("2027-12-24"), "Eve")]), working_days=frozenset())
    first.is_business_day(D("2027-05-05"))  # a warm cache is not part of the value
    assert first == second
    assert hash(first) == hash(second)
    assert {first: 1}[second] == 1
    assert first != BusinessCalendar(country="DE", holidays={D("2027-12-24"): "Other name"})


def test_the_calendar_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DE.country = "US"  # type: ignore[misc]
    with pytest.raises(TypeError):
        CUSTOM.holidays[D("2027-01-01")] = "x"  # type: ignore[index]


def test_interned_returns_one_instance_per_value() -> None:
    first = interned(BusinessCalendar(country="DE", subdivision="BY"))
    assert interned(BusinessCalendar(country="DE", subdivision="BY")) is first
    assert interned(BusinessCalendar(country="DE", subdivision="BE")) is not first


# --- properties ------------------------------------------------------------------------------

SOURCES = [{}, {"country": "DE"}, {"country": "DE", "subdivision": "BY"}, {"country": "US"}, {"market": "NYSE"}]
DAYS = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    """Any source, any weekend but all seven days, and custom dates around 2027."""
    near = st.dates(min_value=date(2026, 10, 1), max_value=date(2028, 3, 31))
    custom = draw(st.lists(near, max_size=40, unique=True))
    split = draw(st.integers(min_value=0, max_value=len(custom)))
    return BusinessCalendar(
        **draw(st.sampled_from(SOURCES)),
        weekend=draw(st.frozensets(st.integers(min_value=0, max_value=6), max_size=6)),
        holidays=dict.fromkeys(custom[:split], ""),
        working_days=frozenset(custom[split:]),
    )


def _days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range(1, (end - start).days)]


@settings(max_examples=300, deadline=None)
@given(calendar=calendars(), day=DAYS | st.dates(min_value=date(2026, 12, 1), max_value=date(2028, 1, 31)))
def test_next_business_day_is_the_first_after(calendar: BusinessCalendar, day: date) -> None:
    found = calendar.next_business_day(day)
    assert found > day
    assert calendar.is_business_day(found)
    assert not any(calendar.is_business_day(between) for between in _days_between(day, found))


@settings(max_examples=300, deadline=None)
@given(calendar=calendars(), day=DAYS | st.dates(min_value=date(2026, 12, 1), max_value=date(2028, 1, 31)))
def test_previous_business_day_is_the_last_before(calendar: BusinessCalendar, day: date) -> None:
    found = calendar.previous_business_day(day)
    assert found < day
    assert calendar.is_business_day(found)
    assert not any(calendar.is_business_day(between) for between in _days_between(found, day))


@settings(max_examples=200, deadline=None)
@given(calendar=calendars(), day=DAYS)
def test_nth_business_days_ascend_and_are_business_days(calendar: BusinessCalendar, day: date) -> None:
    year, month = day.year, day.month
    count = len(calendar.business_days_in_month(year, month))
    forward = [calendar.nth_business_day(year, month, n) for n in range(1, count + 1)]
    backward = [calendar.nth_business_day(year, month, -n) for n in range(count, 0, -1)]
    assert forward == backward == calendar.business_days_in_month(year, month)
    assert all(d is not None and calendar.is_business_day(d) and (d.year, d.month) == (year, month) for d in forward)
    assert all(a < b for a, b in itertools.pairwise(forward))
    assert calendar.nth_business_day(year, month, count + 1) is None
    assert calendar.nth_business_day(year, month, -count - 1) is None


@functools.cache
def _library(country: str, subdivision: str, market: str) -> Any:
    """One multi-year `holidays` object per source, expanding as it is asked (its default)."""
    if market:
        return holidays.financial_holidays(market)
    if country:
        return holidays.country_holidays(country, subdiv=subdivision or None)
    return {}


@settings(max_examples=300, deadline=None)
@given(calendar=calendars(), day=DAYS | st.dates(min_value=date(2026, 10, 1), max_value=date(2028, 3, 31)))
def test_is_business_day_follows_the_documented_rules(calendar: BusinessCalendar, day: date) -> None:
    """Checked against `holidays` itself, asked the plain way."""
    library = _library(calendar.country, calendar.subdivision, calendar.market)
    expected = day in calendar.working_days or (
        day not in calendar.holidays and day not in library and day.weekday() not in calendar.weekend
    )
    assert calendar.is_business_day(day) is expected
    assert (calendar.non_business_reason(day) is None) is expected
