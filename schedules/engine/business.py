"""Business days: calendar policies around any trigger, business-day positions, and bounds.

A calendar policy decides what happens to a fire that falls on a non-business day (a weekend
day, a holiday of the calendar's country or market, a custom holiday):

- ``SKIP``: it does not fire;
- ``NEXT_BUSINESS_DAY`` / ``PREVIOUS_BUSINESS_DAY``: it fires at the same local wall time on
  the next / previous business day. Several fires that land on the same instant fire once, so
  fire times stay strictly increasing and never repeat; a fire that would move to before the
  instant the search starts from is dropped (it belongs to the past).

A FIXED_DELAY's fires are its chain of slots from the previous run's finish (finish + delay,
+ 2 delays, ...): a 12-hour delay finishing Friday 17:00 has its slot on Saturday 05:00, which
SKIP follows on to Monday 05:00, NEXT_BUSINESS_DAY moves to Monday 05:00, and
PREVIOUS_BUSINESS_DAY cannot move before the finish, so it too fires on Monday 05:00.

``BusinessDayTrigger`` fires on the n-th business day of a month ("the 3rd business day",
``day: 3``) or the n-th from its end ("the last business day", ``day: -1``), something no
cron or RRULE can say, because holidays are not in their vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from schedules.engine.base import Fire, Trigger
from schedules.engine.errors import InvalidTrigger
from schedules.engine.simple import FixedDelayTrigger
from schedules.engine.zones import (
    TRANSITION_WINDOW,
    WallTime,
    classify,
    require_aware,
    resolve_rfc5545,
    to_local,
    transition_near,
)

POLICIES = ("SKIP", "NEXT_BUSINESS_DAY", "PREVIOUS_BUSINESS_DAY")
# How many landing days (or fires, for SKIP) a search walks before it calls a rule spent, and
# how far past ``after`` SKIP follows fires that all fall on non-business days (as far as
# BusinessDayTrigger looks): a daily weekend rule under SKIP is refused in a quarter second, not
# after a hundred thousand fires.
MAX_BUSINESS_DAYS = 800
MAX_SKIPPED_FIRES = 100_000
SKIP_HORIZON = timedelta(days=366 * 30)


class BusinessDays(Protocol):
    """What the engine needs of a business calendar (calendars.engine.BusinessCalendar)."""

    def is_business_day(self, day: date) -> bool: ...

    def non_business_reason(self, day: date) -> str | None: ...

    def next_business_day(self, day: date) -> date: ...

    def previous_business_day(self, day: date) -> date: ...

    def nth_business_day(self, year: int, month: int, n: int) -> date | None: ...


def _wall_fire(day: date, wall: time, tz: ZoneInfo, timezone: str) -> Fire:
    local = datetime.combine(day, wall)
    at = resolve_rfc5545(local, tz)
    if classify(local, tz) is WallTime.GAP:
        note = (
            f"{local:%H:%M} does not exist on {day} in {timezone} (DST gap); read with the offset "
            f"from before the gap, {at.astimezone(tz):%H:%M}."
        )
        return Fire(at, note=note, kind="DST_GAP", moved_from=local.isoformat())
    return Fire(at)


def _moved(
    fire: Fire, day: date, target: date, calendar: BusinessDays, policy: str, tz: ZoneInfo, timezone: str
) -> Fire:
    """``fire`` (on the non-business ``day``) at the same wall time on ``target``."""
    moved = _wall_fire(target, to_local(fire.at, tz).time(), tz, timezone)
    reason = calendar.non_business_reason(day) or "not a business day"
    direction = "next" if policy == "NEXT_BUSINESS_DAY" else "previous"
    return Fire(
        moved.at,
        note=f"Moved from {day} ({reason}) to the {direction} business day {target}.",
        kind="CALENDAR_SHIFT",
        moved_from=day.isoformat(),
    )


@dataclass(frozen=True)
class CalendarVerdict:
    """What a calendar policy does to one fire of the rule that falls on a non-business day."""

    day: date  # the fire's local day
    reason: str  # why that day is not a business day ("Christmas Day", "Weekend (Saturday)")
    policy: str
    moved: Fire | None  # where NEXT/PREVIOUS_BUSINESS_DAY moves it; None under SKIP


def calendar_verdict(fire: Fire, *, calendar: BusinessDays, policy: str, timezone: str) -> CalendarVerdict | None:
    """None when ``fire`` lands on a business day, else what ``policy`` does with it: the same
    reasoning :class:`CalendarPolicyTrigger` applies, for one fire, to explain it. A moved fire
    that lands on the instant of another fire of the rule fires once there."""
    if policy not in POLICIES:
        raise ValueError(f"unknown calendar policy {policy!r}")
    require_aware(fire.at, "fire.at")
    tz = ZoneInfo(timezone)
    day = to_local(fire.at, tz).date()
    if calendar.is_business_day(day):
        return None
    reason = calendar.non_business_reason(day) or "not a business day"
    if policy == "SKIP":
        return CalendarVerdict(day, reason, policy, None)
    forward = policy == "NEXT_BUSINESS_DAY"
    target = (calendar.next_business_day if forward else calendar.previous_business_day)(day)
    return CalendarVerdict(day, reason, policy, _moved(fire, day, target, calendar, policy, tz, timezone))


@dataclass(frozen=True)
class CalendarPolicyTrigger:
    """``inner``'s fires, kept off the calendar's non-business days by ``policy``."""

    inner: Trigger
    calendar: BusinessDays
    policy: str
    timezone: str
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown calendar policy {self.policy!r}")
        object.__setattr__(self, "_tz", ZoneInfo(self.timezone))

    def next_fire(self, after: datetime) -> Fire | None:
        require_aware(after, "after")
        if isinstance(self.inner, FixedDelayTrigger):
            return self._next_in_chain(after)
        if self.policy == "SKIP":
            return self._next_skipping(after)
        return self._next_shifted(after)

    def _next_in_chain(self, after: datetime) -> Fire | None:
        """A fixed delay's next slot depends on ``after`` (the previous run's finish), so it has
        no fires of its own on a given day: the walks below would count the delay from a day's
        start. Follow its slots instead (after + delay, + 2 delays, ...) and apply the policy to
        them: SKIP keeps the first on a business day, NEXT/PREVIOUS move each to the same wall
        time on the next/previous business day and keep the earliest after ``after``."""
        horizon = after.astimezone(UTC) + SKIP_HORIZON
        best: Fire | None = None
        slot = self.inner.next_fire(after)
        for _ in range(MAX_SKIPPED_FIRES):
            if slot is None or slot.at > horizon:
                break
            day = to_local(slot.at, self._tz).date()
            if best is not None:  # no later slot can land earlier
                best_day = to_local(best.at, self._tz).date()
                if self.policy != "PREVIOUS_BUSINESS_DAY" and slot.at > best.at:
                    break
                if day > best_day and (
                    self.calendar.is_business_day(day) or self.calendar.previous_business_day(day) > best_day
                ):
                    break
            if self.calendar.is_business_day(day):
                landing: Fire | None = slot
            elif self.policy == "SKIP":
                landing = None
            else:
                forward = self.policy == "NEXT_BUSINESS_DAY"
                target = (self.calendar.next_business_day if forward else self.calendar.previous_business_day)(day)
                landing = self._moved(slot, day, target)
            if landing is not None and landing.at > after and (best is None or landing.at < best.at):
                best = landing
            slot = self.inner.next_fire(slot.at)
        return best

    def _moved(self, fire: Fire, day: date, target: date) -> Fire:
        return _moved(fire, day, target, self.calendar, self.policy, self._tz, self.timezone)

    def _day_start(self, day: date) -> datetime:
        """Just before the first instant of a local day, as an ``after`` for the inner trigger."""
        return resolve_rfc5545(datetime.combine(day, time.min), self._tz) - timedelta(microseconds=1)

    def _next_skipping(self, after: datetime) -> Fire | None:
        horizon = after.astimezone(UTC) + SKIP_HORIZON
        for _ in range(MAX_SKIPPED_FIRES):
            fire = self.inner.next_fire(after)
            if fire is None:
                return None
            day = to_local(fire.at, self._tz).date()
            if self.calendar.is_business_day(day):
                return fire
            if fire.at > horizon:
                return None
            after = max(fire.at, self._day_start(day + timedelta(days=1)))  # the rest of that day is off too
        return None

    def _next_shifted(self, after: datetime) -> Fire | None:
        """Walk business days B from the day of ``after``; the fires landing on B are B's own and
        those moved to B from the non-business days beside it. After a B without one, go straight
        to the day the inner trigger's next fire lands on: no fire lands between (a rule that
        fires every four years must not run out of business days on the way)."""
        forward = self.policy == "NEXT_BUSINESS_DAY"
        day = to_local(after, self._tz).date()
        target = day if self.calendar.is_business_day(day) else self.calendar.next_business_day(day)
        for _ in range(MAX_BUSINESS_DAYS):
            if forward:  # the non-business days just before B move forward to it
                first = self.calendar.previous_business_day(target) + timedelta(days=1)
                moved_days = [first + timedelta(days=n) for n in range((target - first).days)]
            else:  # the non-business days just after B move back to it
                last = self.calendar.next_business_day(target)
                moved_days = [target + timedelta(days=n) for n in range(1, (last - target).days)]
            fire = self._first_landing(target, moved_days, after)
            if fire is not None:
                return fire
            following = self.inner.next_fire(self._day_start(max([target, *moved_days]) + timedelta(days=1)))
            if following is None:
                return None  # the inner trigger is spent
            day = to_local(following.at, self._tz).date()
            if self.calendar.is_business_day(day):
                target = day
            elif forward:
                target = self.calendar.next_business_day(day)
            else:  # later than the last target: `day` is past the business day after it
                target = self.calendar.previous_business_day(day)
        return None

    def _first_landing(self, target: date, moved_days: list[date], after: datetime) -> Fire | None:
        """The earliest fire after ``after`` that lands on ``target``: one inner search for the
        target's own fires and one per moved day, whatever the inner trigger's frequency (a few
        more on the day of ``after`` when a transition is near it)."""
        local_after = to_local(after, self._tz)
        landing: list[Fire] = []
        own = self.inner.next_fire(max(after, self._day_start(target)))
        if own is not None and to_local(own.at, self._tz).date() == target:
            landing.append(own)
        for day in moved_days:
            # On the day of `after` itself only wall times later than it can still land later
            # (wall times a clock shift earlier, near a transition, where their order and the
            # instants' differ: 02:30 moved into a spring-forward gap lands at 03:30).
            since = self._day_start(day)
            if target == local_after.date():
                wall_after = datetime.combine(day, local_after.time())
                window = TRANSITION_WINDOW if transition_near(after, self._tz) else timedelta(0)
                since = max(since, resolve_rfc5545(wall_after - window, self._tz))
            fire = self.inner.next_fire(since)
            while fire is not None and to_local(fire.at, self._tz).date() == day:
                moved = self._moved(fire, day, target)
                if moved.at > after:
                    landing.append(moved)
                    break
                fire = self.inner.next_fire(fire.at)
        return min(landing, key=lambda fire: (fire.at, fire.kind != "")) if landing else None


@dataclass(frozen=True)
class BusinessDayTrigger:
    """Fires at ``at`` (local wall time) on the ``day``-th business day of each month in
    ``months``: ``day=3`` the third, ``day=-1`` the last, ``day=-2`` the one before it.

    A wall time in a DST gap is read as RFC 5545 does (the offset from before the gap).
    """

    day: int
    at: time
    timezone: str
    calendar: BusinessDays
    months: tuple[int, ...] = tuple(range(1, 13))
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.day == 0 or not -23 <= self.day <= 23:
            raise InvalidTrigger({"day": ["Must be 1..23 (from the month's start) or -1..-23 (from its end)."]})
        object.__setattr__(self, "_tz", ZoneInfo(self.timezone))

    def next_fire(self, after: datetime) -> Fire | None:
        require_aware(after, "after")
        local = to_local(after, self._tz)
        year, month = local.year, local.month
        for _ in range(12 * 30):  # thirty years of months: a position that exists shows up
            if month in self.months:
                day = self.calendar.nth_business_day(year, month, self.day)
                if day is not None:
                    fire = _wall_fire(day, self.at, self._tz, self.timezone)
                    if fire.at > after:
                        return fire
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return None


@dataclass(frozen=True)
class BoundedTrigger:
    """``inner``'s fires from ``start_at`` (inclusive) up to ``end_at`` (inclusive)."""

    inner: Trigger
    start_at: datetime | None = None
    end_at: datetime | None = None

    def __post_init__(self) -> None:
        for value, name in ((self.start_at, "start_at"), (self.end_at, "end_at")):
            if value is not None:
                require_aware(value, name)

    def next_fire(self, after: datetime) -> Fire | None:
        require_aware(after, "after")
        if self.start_at is not None and after < self.start_at:
            after = self.start_at.astimezone(UTC) - timedelta(microseconds=1)  # in UTC, not wall time
        fire = self.inner.next_fire(after)
        if fire is None or (self.end_at is not None and fire.at > self.end_at):
            return None
        return fire
