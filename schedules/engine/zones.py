"""Local wall time and UTC instants in IANA zones: gaps, overlaps and transitions.

Python's ``zoneinfo`` follows PEP 495: a wall time with ``fold=0`` in a spring-forward gap is
read with the offset from *before* the gap, and an ambiguous wall time with ``fold=0`` is its
*first* occurrence. That is exactly RFC 5545 section 3.3.5, so ``resolve_rfc5545`` is a thin
wrapper. What zoneinfo does not offer is a test for "does this wall time exist" and "where does
the gap end"; those are here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

# Since 1995 no zone has turned its clock back by more than three hours at once (Antarctica/
# Casey's 3-hour shifts, until 2023, are the largest; forward jumps such as Pacific/Apia's
# skipped day in 2011 make gaps, which never reorder wall times), so three hours is a safe
# window for every look-around here. Older history has larger ones (Antarctica/Vostok 1994).
TRANSITION_WINDOW = timedelta(hours=3)


class WallTime(Enum):
    NORMAL = "normal"
    GAP = "gap"  # does not exist: skipped by a spring-forward transition
    AMBIGUOUS = "ambiguous"  # exists twice: repeated by a fall-back transition


def require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def to_local(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall time an instant shows in ``tz`` (which of two folds is dropped)."""
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def classify(wall: datetime, tz: ZoneInfo) -> WallTime:
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return WallTime.NORMAL
    # In an overlap the first fold is the earlier instant; in a gap zoneinfo's folds cross.
    return WallTime.AMBIGUOUS if first < second else WallTime.GAP


def resolve_rfc5545(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant RFC 5545 gives a local wall time: a gap time takes the offset from before
    the gap (02:30 becomes 03:30 on a one-hour gap), an ambiguous time its first occurrence."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def occurrences(wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every instant at which the clock in ``tz`` shows ``wall``: none, one or two."""
    kind = classify(wall, tz)
    if kind is WallTime.GAP:
        return []
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if kind is WallTime.AMBIGUOUS:
        return [first, wall.replace(tzinfo=tz, fold=1).astimezone(UTC)]
    return [first]


def gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """For a wall time inside a gap: the instant the gap ends, the first valid instant after it."""
    low = int(wall.replace(tzinfo=tz, fold=1).timestamp())  # read with the offset after the gap
    high = int(wall.replace(tzinfo=tz, fold=0).timestamp())  # read with the offset before it
    before = datetime.fromtimestamp(low, UTC).astimezone(tz).utcoffset()
    # The transition lies in (low, high]; bisect for the first second whose offset differs.
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def transition_near(instant: datetime, tz: ZoneInfo) -> bool:
    """Whether the UTC offset of ``tz`` changes within the window around ``instant``."""
    instant = instant.astimezone(UTC)  # the window is elapsed time, not wall time
    offset = instant.astimezone(tz).utcoffset()
    return (instant - TRANSITION_WINDOW).astimezone(tz).utcoffset() != offset or (
        instant + TRANSITION_WINDOW
    ).astimezone(tz).utcoffset() != offset
