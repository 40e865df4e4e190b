"""ONE_SHOT and FIXED_DELAY triggers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from schedules.engine.base import Fire
from schedules.engine.errors import InvalidTrigger
from schedules.engine.zones import WallTime, classify, require_aware, resolve_rfc5545


@dataclass(frozen=True)
class OneShotTrigger:
    """Fires once at ``run_at``, then is exhausted.

    ``run_at`` with a UTC offset is that instant. Without one it is a wall time in
    ``timezone``, read as RFC 5545 reads local times: a time in a spring-forward gap takes the
    offset from before the gap, an ambiguous time means its first occurrence.
    """

    run_at: str
    timezone: str
    _fire: Fire = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            value = datetime.fromisoformat(self.run_at)
        except ValueError:
            raise InvalidTrigger({"run_at": [f"{self.run_at!r} is not an ISO 8601 date-time."]}) from None
        if value.tzinfo is not None:
            fire = Fire(value.astimezone(UTC))
        else:
            tz = ZoneInfo(self.timezone)
            at = resolve_rfc5545(value, tz)
            if classify(value, tz) is WallTime.GAP:
                note = (
                    f"{value:%H:%M} does not exist on {value:%Y-%m-%d} in {self.timezone} (DST gap); read "
                    f"with the offset from before the gap (RFC 5545), {at.astimezone(tz):%H:%M}."
                )
                fire = Fire(at, note=note, kind="DST_GAP", moved_from=value.isoformat())
            else:
                fire = Fire(at)
        object.__setattr__(self, "_fire", fire)

    def next_fire(self, after: datetime) -> Fire | None:
        require_aware(after, "after")
        return self._fire if self._fire.at > after else None


@dataclass(frozen=True)
class FixedDelayTrigger:
    """Fires ``delay_seconds`` of elapsed time after the previous run *finished*.

    ``next_fire(after)`` takes the finish of the previous run as ``after``. Elapsed time knows
    no DST: a six-hour delay is six hours across a transition, whatever the wall clock shows.
    The first fire is the schedule's ``start_at``, else its creation plus the delay.
    """

    delay_seconds: int

    def next_fire(self, after: datetime) -> Fire | None:
        require_aware(after, "after")
        # In UTC: Python adds a timedelta to a zoned datetime in wall time (23:00 CET + 6 h is 05:00
        # CEST on a spring-forward night, five hours later).
        return Fire(after.astimezone(UTC) + timedelta(seconds=self.delay_seconds))
