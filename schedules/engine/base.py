"""What every trigger is, and the search they share over local wall-time candidates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from schedules.engine.zones import TRANSITION_WINDOW, require_aware, to_local, transition_near

# Wall-time candidates a search may look at before it gives up: far more than any rule that
# fires at all needs, and a hard stop for one that never does.
MAX_CANDIDATES = 100_000


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
    ``resolve`` turns one into its fires (none in a gap, two in an overlap for elapsed-time
    rules). Away from a DST transition wall time and UTC keep their order, so the first hit
    wins. Near one, a later wall time can be an earlier instant (02:45 in the first pass of a
    repeated hour comes before 02:00 in the second), so the search looks both ways by a window
    wider than any clock shift.
    """
    require_aware(after, "after")
    near = transition_near(after, tz)
    start = to_local(after, tz) - (TRANSITION_WINDOW if near else TRANSITION_WINDOW * 0)
    best: Fire | None = None
    horizon: datetime | None = None
    for index, wall in enumerate(candidates(start)):
        if horizon is not None and wall > horizon:
            break
        if index >= MAX_CANDIDATES:
            break
        for fire in resolve(wall):
            if fire.at > after and (best is None or fire.at < best.at):
                best = fire
        if best is not None and horizon is None:
            if not transition_near(best.at, tz):
                break
            horizon = to_local(best.at, tz) + TRANSITION_WINDOW
    return best
