"""Looking back: the last fires before an instant, and what a calendar policy does to a fire.

``fires_before`` is checked against an oracle that walks every fire forward (from where the
look-back says its fires start: all fires from there to the instant, and exactly ``count`` of
them, are the last ``count``), for regular rules, sparse ones, DST days and a burst that needs
the bisection.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from calendars.engine import BusinessCalendar
from schedules.engine.base import Fire, Trigger
from schedules.engine.business import calendar_verdict
from schedules.engine.cron import CronTrigger
from schedules.engine.lookback import LOOKBACK_STEPS, calendar_skips, fires_before
from schedules.engine.rrule import RRuleTrigger
from schedules.engine.simple import OneShotTrigger

BERLIN = "Europe/Berlin"
YEAR = timedelta(days=366)


class Counting:
    """A trigger that counts the engine calls made of it."""

    def __init__(self, inner: Trigger) -> None:
        self.inner = inner
        self.calls = 0

    def next_fire(self, after: datetime) -> Fire | None:
        self.calls += 1
        return self.inner.next_fire(after)


def _oracle(trigger: Trigger, since: datetime, before: datetime) -> list[datetime]:
    """Every fire in (since, before]: call it only on windows of a few hundred fires."""
    found: list[datetime] = []
    fire = trigger.next_fire(since)
    while fire is not None and fire.at <= before:
        found.append(fire.at)
        assert len(found) <= 10_000, "the window holds far more fires than the look-back returned"
        fire = trigger.next_fire(fire.at)
    return found


CASES = {
    "daily": (CronTrigger("0 2 * * *", BERLIN), datetime(2027, 6, 1, 12, tzinfo=UTC)),
    "weekdays": (CronTrigger("0 9 * * 1-5", BERLIN), datetime(2027, 3, 1, tzinfo=UTC)),
    "every_15_minutes_over_spring_forward": (CronTrigger("*/15 * * * *", BERLIN), datetime(2027, 3, 28, 2, tzinfo=UTC)),
    "daily_0230_over_spring_forward": (CronTrigger("30 2 * * *", BERLIN), datetime(2027, 3, 30, tzinfo=UTC)),
    "hourly_over_fall_back": (CronTrigger("0 * * * *", BERLIN), datetime(2027, 10, 31, 3, tzinfo=UTC)),
    "every_second": (CronTrigger("* * * * * *", BERLIN), datetime(2027, 3, 1, tzinfo=UTC)),
    "monthly_rrule": (
        RRuleTrigger("FREQ=MONTHLY;BYMONTHDAY=-1", BERLIN, "2026-01-31T18:00:00", (), ()),
        datetime(2027, 6, 15, tzinfo=UTC),
    ),
    "burst_on_new_years_day": (CronTrigger("* * * 1 1 *", BERLIN), datetime(2027, 3, 1, tzinfo=UTC)),
}


@pytest.mark.parametrize("count", [1, 5, 50])
@pytest.mark.parametrize(("trigger", "before"), list(CASES.values()), ids=list(CASES))
def test_fires_before_matches_a_forward_walk(trigger: Trigger, before: datetime, count: int) -> None:
    counting = Counting(trigger)
    found = fires_before(counting, before, count, earliest=before - YEAR)
    assert found.complete
    assert [fire.at for fire in found.fires] == _oracle(trigger, found.since, before)
    # Fewer than asked only when the whole window holds fewer.
    assert len(found.fires) == count or (len(found.fires) < count and found.since == before - YEAR)
    assert found.since >= before - YEAR
    assert counting.calls <= LOOKBACK_STEPS


def test_a_fire_at_the_instant_itself_counts() -> None:
    before = datetime(2027, 6, 1, 0, tzinfo=UTC)
    found = fires_before(CronTrigger("0 * * * *", "UTC"), before, 2, earliest=before - YEAR)
    assert [fire.at for fire in found.fires] == [before - timedelta(hours=1), before]


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (CronTrigger("0 0 1 1 *", "UTC"), [datetime(2027, 1, 1, tzinfo=UTC)]),
        (OneShotTrigger("2027-02-01T09:00:00+00:00", "UTC"), [datetime(2027, 2, 1, 9, tzinfo=UTC)]),
        (OneShotTrigger("2025-02-01T09:00:00+00:00", "UTC"), []),
    ],
    ids=["yearly", "one_shot_within_the_window", "one_shot_before_it"],
)
def test_the_window_bounds_a_sparse_rule(trigger: Trigger, expected: list[datetime]) -> None:
    before = datetime(2027, 3, 1, tzinfo=UTC)
    counting = Counting(trigger)
    found = fires_before(counting, before, 5, earliest=before - YEAR)
    assert found.complete
    assert [fire.at for fire in found.fires] == expected
    assert found.since == before - YEAR
    assert counting.calls < 30


def test_a_spent_budget_is_reported_and_what_is_returned_is_still_a_tail() -> None:
    trigger = CronTrigger("* * * 1 1 *", BERLIN)
    before = datetime(2027, 3, 1, tzinfo=UTC)
    found = fires_before(trigger, before, 50, earliest=before - YEAR, budget=100)
    assert not found.complete
    assert len(found.fires) < 50
    assert [fire.at for fire in found.fires] == _oracle(trigger, found.since, before)


def test_an_empty_window() -> None:
    before = datetime(2027, 3, 1, tzinfo=UTC)
    found = fires_before(CronTrigger("* * * * *", "UTC"), before, 5, earliest=before)
    assert found.fires == ()
    assert found.complete


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        fires_before(
            CronTrigger("* * * * *", "UTC"), datetime(2027, 3, 1), 5, earliest=datetime(2026, 3, 1, tzinfo=UTC)
        )


# --- calendar verdicts -----------------------------------------------------------------------

CALENDAR = BusinessCalendar(weekend=frozenset({5, 6}), holidays={date(2027, 12, 24): "Christmas Eve"})
FRIDAY_EVE = Fire(datetime(2027, 12, 24, 7, tzinfo=UTC))  # 08:00 in Berlin


@pytest.mark.parametrize(
    ("policy", "moved"),
    [
        ("SKIP", None),
        ("NEXT_BUSINESS_DAY", datetime(2027, 12, 27, 7, tzinfo=UTC)),  # Monday 08:00
        ("PREVIOUS_BUSINESS_DAY", datetime(2027, 12, 23, 7, tzinfo=UTC)),  # Thursday 08:00
    ],
    ids=["skip", "next_business_day", "previous_business_day"],
)
def test_calendar_verdict(policy: str, moved: datetime | None) -> None:
    verdict = calendar_verdict(FRIDAY_EVE, calendar=CALENDAR, policy=policy, timezone=BERLIN)
    assert verdict is not None
    assert verdict.day == date(2027, 12, 24)
    assert verdict.reason == "Christmas Eve"
    assert (verdict.moved.at if verdict.moved else None) == moved
    if verdict.moved is not None:
        assert verdict.moved.kind == "CALENDAR_SHIFT"
        assert verdict.moved.moved_from == "2027-12-24"


def test_a_business_day_has_no_verdict() -> None:
    fire = Fire(datetime(2027, 12, 23, 7, tzinfo=UTC))
    assert calendar_verdict(fire, calendar=CALENDAR, policy="SKIP", timezone=BERLIN) is None


def test_the_local_day_decides() -> None:
    # 23:30 UTC on Thursday the 23rd is 00:30 on Christmas Eve in Berlin.
    fire = Fire(datetime(2027, 12, 23, 23, 30, tzinfo=UTC))
    verdict = calendar_verdict(fire, calendar=CALENDAR, policy="SKIP", timezone=BERLIN)
    assert verdict is not None
    assert verdict.day == date(2027, 12, 24)
    assert calendar_verdict(fire, calendar=CALENDAR, policy="SKIP", timezone="UTC") is None


def test_calendar_skips_lists_the_dropped_fires_up_to_the_limit() -> None:
    daily = CronTrigger("0 8 * * *", BERLIN)
    after, until = datetime(2027, 12, 20, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
    skips, complete = calendar_skips(daily, after, until, calendar=CALENDAR, policy="SKIP", timezone=BERLIN, limit=10)
    assert complete
    assert [skip.verdict.day for skip in skips] == [date(2027, 12, 24), date(2027, 12, 25), date(2027, 12, 26)]
    assert skips[1].verdict.reason == "Weekend (Saturday)"
    cut, complete = calendar_skips(daily, after, until, calendar=CALENDAR, policy="SKIP", timezone=BERLIN, limit=2)
    assert not complete
    assert len(cut) == 2
