"""Looking back from an instant, and around it: what the explain endpoint needs of the engine.

A trigger only answers "what comes after": :func:`fires_before` finds the last fires before an
instant by walking forward from ever earlier starts (a minute, four, sixteen, ... back), within
a bounded window and a budget of engine calls, so a rule that fires every second and one that
fires once a year both cost a few dozen calls. :func:`calendar_skips` lists the fires of a rule
that a calendar policy drops or moves. Pure Python: no Django, no clock (callers pass the time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from schedules.engine.base import Fire, Trigger
from schedules.engine.business import BusinessDays, CalendarVerdict, calendar_verdict
from schedules.engine.zones import require_aware

# Engine calls one look-back may make: ~0.1 ms each, so a pathological rule (a burst of
# per-second fires on one day of the year) costs a fifth of a second, not a scan of the year.
LOOKBACK_STEPS = 2_000
_FIRST_SPAN = timedelta(minutes=1)
_GROWTH = 4
_RESOLUTION = timedelta(microseconds=1)


@dataclass(frozen=True)
class Lookback:
    """The last fires before an instant, oldest first.

    ``fires`` are all the fires of the trigger in ``(since, before]``. ``complete`` is False
    when the budget ran out first: then there may be fewer fires than asked for although the
    window held more.
    """

    fires: tuple[Fire, ...]
    since: datetime
    complete: bool = True


def _walk(trigger: Trigger, start: datetime, before: datetime, limit: int, budget: list[int]) -> list[Fire] | None:
    """The fires in (start, before]; None when there are more than ``limit`` or the budget ran out."""
    found: list[Fire] = []
    after = start
    while budget[0] > 0:
        budget[0] -= 1
        fire = trigger.next_fire(after)
        if fire is None or fire.at > before:
            return found
        if len(found) == limit:
            return None
        found.append(fire)
        after = fire.at
    return None


def fires_before(
    trigger: Trigger, before: datetime, count: int, *, earliest: datetime, budget: int = LOOKBACK_STEPS
) -> Lookback:
    """The last ``count`` fires in ``(earliest, before]`` (a fire at ``before`` included).

    Walks forward from ``before - span`` with a span that grows fourfold while it holds fewer
    than ``count`` fires; a span that holds too many to walk (more than ``2 * count + 16``)
    is bisected with the last one that held too few. ``since`` is the instant just before the
    fires returned: the fire before them, or where the walk started.
    """
    require_aware(before, "before")
    require_aware(earliest, "earliest")
    if count < 1:
        raise ValueError("count must be at least 1")
    widest = before - earliest
    if widest <= timedelta(0):
        return Lookback((), before)
    steps = [budget]
    # A walk that finds more than this gives up: bisection probes stay cheap.
    limit = 2 * count + 16
    low, high = timedelta(0), None  # spans known to hold too few fires / too many to walk
    span = min(_FIRST_SPAN, widest)
    best = Lookback((), before, complete=False)
    while steps[0] > 0:
        start = before - span
        walked = _walk(trigger, start, before, limit, steps)
        if walked is not None:
            if len(walked) >= count:
                since = walked[-count - 1].at if len(walked) > count else start
                return Lookback(tuple(walked[-count:]), since)
            if span >= widest:
                return Lookback(tuple(walked), start)
            best = Lookback(tuple(walked), start, complete=False)
            low = span
        elif steps[0] > 0:
            high = span
        else:
            break
        if high is None:
            span = min(span * _GROWTH, widest)
        elif high - low <= _RESOLUTION:
            break
        else:
            span = low + (high - low) / 2
    return best


@dataclass(frozen=True)
class CalendarSkip:
    """A fire of the rule that the calendar policy dropped or moved."""

    fire: Fire
    verdict: CalendarVerdict


def calendar_skips(
    trigger: Trigger,
    after: datetime,
    until: datetime,
    *,
    calendar: BusinessDays,
    policy: str,
    timezone: str,
    limit: int,
    budget: int = LOOKBACK_STEPS,
) -> tuple[list[CalendarSkip], bool]:
    """The fires of ``trigger`` (a rule without its calendar policy) in ``(after, until]`` that
    fall on a non-business day, with what ``policy`` does to each; at most ``limit``. The flag
    is True when the list is complete, False when the limit or the budget cut it short."""
    require_aware(after, "after")
    require_aware(until, "until")
    found: list[CalendarSkip] = []
    for _ in range(budget):
        fire = trigger.next_fire(after)
        if fire is None or fire.at > until:
            return found, True
        verdict = calendar_verdict(fire, calendar=calendar, policy=policy, timezone=timezone)
        if verdict is not None:
            if len(found) == limit:
                return found, False
            found.append(CalendarSkip(fire, verdict))
        after = fire.at
    return found, False
