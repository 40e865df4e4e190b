"""What every trigger is, and the search they share over local wall-time candidates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from schedules.engine.zones import TRANSITION_WINDOW, require_aware, to_local, transition_near

# Wall-time candidates a search may look at before it gives up: far more than any rule that
# fires at all needs, and a hard stop for one that never does.
MAX_CANDIDATES = 100_000

# How often `_transitions` reads the offset: no zone has changed it twice within an hour.
_PROBE = timedelta(hours=1)
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Fire:
    """A fire time (UTC) and, when it is not where the rule alone puts it, why."""

    at: datetime
    note: str = ""
    kind: str = ""  # "DST_GAP", "CALENDAR_SHIFT": what moved it, for the preview's details
    moved_from: str = ""  # the wall time or date it was moved from


class Trigger(Protocol):
    """A rule that says when work fires. Immutable; never reads the clock."""

    def next_fire(self, after: datetime) -> Fire | None:
        """The first fire strictly after the aware instant ``after``, or None when exhausted."""
        ...


def next_after(trigger: Trigger, after: datetime) -> datetime | None:
    fire = trigger.next_fire(after)
    return fire.at if fire else None


def fires(trigger: Trigger, after: datetime, count: int) -> list[Fire]:
    """The next ``count`` fires after ``after`` (fewer when the trigger runs out)."""
    found: list[Fire] = []
    while len(found) < count:
        fire = trigger.next_fire(after)
        if fire is None:
            break
        found.append(fire)
        after = fire.at
    return found


def search(
    candidates: Callable[[datetime], Iterator[datetime]],
    resolve: Callable[[datetime], list[Fire]],
    after: datetime,
    tz: ZoneInfo,
) -> Fire | None:
    """The earliest fire after ``after`` among the fires of increasing wall-time candidates.

    ``candidates(start)`` yields naive wall times strictly after ``start`` in increasing order;
    ``resolve`` turns one into its fires: the instants that show it (all of them, or only the
    first of an overlap), or, for a wall time in a gap, nothing or instants at or after the
    gap's end and no later than the wall time read with the offset from before the gap. The
    walk relies on two more things every trigger's policy gives: the wall times of one gap all
    fire or all do not, and a later one never fires earlier.

    Away from a DST transition wall time and UTC keep their order, so the first hit wins. Near
    one, a later wall time can be an earlier instant (02:45 in the first pass of a repeated hour
    comes before 02:00 in the second), and a gap time can land after wall times that follow it.
    There the UTC axis is cut at the transitions into pieces with one offset each, in which wall
    time increases with the instant: each piece asks for its first candidate at or after the
    wall time it starts at (and, after a gap, for the first gap time that lands in it), and the
    first piece that holds a fire holds the answer. That costs a few candidates per piece, not
    every candidate within the window (``TRANSITION_WINDOW``) wider than any clock shift.
    """
    require_aware(after, "after")
    low = after.astimezone(UTC)
    budget = [MAX_CANDIDATES]
    # Near a transition: search piecewise, two windows at a time, until a fire or calm water.
    while transition_near(low, tz):
        fire = _first_between(candidates, resolve, low, low + 2 * TRANSITION_WINDOW, tz, budget)
        if fire is not None or budget[0] <= 0:
            return fire
        low += 2 * TRANSITION_WINDOW
    # Away from one, the first candidate that fires is the answer unless its fire is near one;
    # then only fires within a window before it can come earlier (from later wall times).
    for wall in candidates(to_local(low, tz)):
        budget[0] -= 1
        if budget[0] < 0:
            return None
        first = _earliest([fire for fire in resolve(wall) if fire.at > low])
        if first is None:
            continue
        if not transition_near(first.at, tz):
            return first
        since = max(low, first.at - TRANSITION_WINDOW)
        return _first_between(candidates, resolve, since, first.at, tz, budget) or first
    return None


def _earliest(found: list[Fire]) -> Fire | None:
    best: Fire | None = None
    for fire in found:
        if best is None or fire.at < best.at:
            best = fire
    return best


def _offset(instant: datetime, tz: ZoneInfo) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _transitions(low: datetime, high: datetime, tz: ZoneInfo) -> list[datetime]:
    """The instants in (low, high] at which the offset of ``tz`` changes, found by probing
    every ``_PROBE`` (no zone changes twice within one) and bisecting to the second."""
    found = []
    start, before = low, _offset(low, tz)
    while start < high:
        end = min(start + _PROBE, high)
        offset = _offset(end, tz)
        if offset != before:
            lower, upper = int(start.timestamp()), int(end.timestamp())
            # The change lies in (lower, upper]; bisect for the first second with the new offset.
            while upper - lower > 1:
                middle = (lower + upper) // 2
                if _offset(datetime.fromtimestamp(middle, UTC), tz) == before:
                    lower = middle
                else:
                    upper = middle
            found.append(datetime.fromtimestamp(upper, UTC))
        start, before = end, offset
    return found


def _walk(
    candidates: Callable[[datetime], Iterator[datetime]], start: datetime, inclusive: bool, budget: list[int]
) -> Iterator[datetime]:
    """Candidates after ``start`` (or at it, when ``inclusive``), counted against ``budget``."""
    for wall in candidates(start - _SECOND if inclusive else start):
        if wall < start:
            continue
        budget[0] -= 1
        if budget[0] < 0:
            return
        yield wall


def _first_between(
    candidates: Callable[[datetime], Iterator[datetime]],
    resolve: Callable[[datetime], list[Fire]],
    low: datetime,
    high: datetime,
    tz: ZoneInfo,
    budget: list[int],
) -> Fire | None:
    """The earliest fire in (low, high] (UTC), walked piece by piece between transitions."""
    best: Fire | None = None

    def consider(found: list[Fire]) -> None:
        nonlocal best
        for fire in found:
            if fire.at > low and (best is None or fire.at < best.at):
                best = fire

    def gap_fires(transition: datetime) -> None:
        """The first fire of the gap opened at ``transition`` (if it is one) after ``low``."""
        before, after = _offset(transition - _SECOND, tz), _offset(transition, tz)
        if after <= before:
            return
        start = (transition + before).replace(tzinfo=None)
        inclusive = start > (low + before).replace(tzinfo=None)
        start = max(start, (low + before).replace(tzinfo=None))  # earlier gap times fire by `low`
        end = (transition + after).replace(tzinfo=None)
        for wall in _walk(candidates, start, inclusive, budget):
            if wall >= end:
                return
            found = resolve(wall)
            consider(found)
            if not found or any(fire.at > low for fire in found):
                return  # no gap time fires, or later ones fire no earlier

    transitions = _transitions(low - TRANSITION_WINDOW, high, tz)
    for transition in transitions:
        if transition <= low:  # a gap just before `low` can land after it
            gap_fires(transition)
    cuts = [low, *(t for t in transitions if t > low)]
    for index, start in enumerate(cuts):
        end = cuts[index + 1] if index + 1 < len(cuts) else None
        if index > 0:
            gap_fires(start)
        offset = _offset(start, tz)
        first_wall = (start + offset).replace(tzinfo=None)
        last_wall = ((end if end is not None else high) + offset).replace(tzinfo=None)
        for wall in _walk(candidates, first_wall, index > 0, budget):
            if wall > last_wall or (end is not None and wall == last_wall):
                break
            found = resolve(wall)
            consider(found)
            if any(low < fire.at and start <= fire.at and (end is None or fire.at < end) for fire in found):
                break  # later wall times fire later within this piece
        if best is not None and (end is None or best.at < end):
            break  # every piece up to this one is searched: nothing earlier remains
        if budget[0] <= 0:
            break
    return best if best is not None and best.at <= high else None
