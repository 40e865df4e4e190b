"""CRON triggers: five fields, or six with seconds first, evaluated in an IANA time zone.

croniter does the matching (names, ranges, lists, steps, ``L`` and ``W`` in day-of-month, ``#``
in day-of-week). We feed it naive *wall* times and apply the DST policy ourselves, because
croniter's own handling of aware datetimes fires a fixed-time job twice in a repeated hour.

Day fields, Vixie semantics: when both day fields are restricted, either matches; a field that
starts with ``*`` (``*``, ``*/2``) or is ``?`` is not restricted, and then both must match
(``0 0 */2 * MON``: odd days that are Mondays). croniter gets two cases wrong, so the engine does
not use its ``day_or``: it ORs a ``*/2`` field (it counts any field whose values are not all of
them as restricted), and with both fields restricted it drops the day-of-month when the
day-of-week has ``#`` (``0 9 15 * 5#3`` fires on third Fridays only) and the day-of-week when
the day-of-month has ``W``. So an OR is walked as two croniter iterations, one per day field
(the other set to ``*``), merged; an AND is one iteration with ``day_or=False``. croniter also
reads a range with equal ends (``5-5``, ``MON-MON``) as the whole field, a wrap-around range;
in cron it is that one value, so such a range reaches croniter as the value alone.

DST policy (as cronie, the cron of most Linux distributions, does it):

- a job at a fixed wall time (neither the minute nor the hour field starts with ``*``) whose
  time does not exist on a spring-forward day fires once, at the first valid instant after the
  gap (``30 2 * * *`` in Europe/Berlin on 2027-03-28 fires at 03:00 CEST);
- a fixed wall time that occurs twice on a fall-back day fires once, at its first occurrence;
- a job whose minute or hour field is a wildcard or a step (``*/15 * * * *``, ``0 * * * *``)
  follows real elapsed time: nothing in the gap, both passes of the repeated hour.

For comparison: croniter alone fires fixed-time jobs twice in the repeated hour; Quartz skips a
fire whose time falls in the gap; Kubernetes CronJobs (robfig/cron) skip the gap and may run
twice in the overlap; Temporal documents that a schedule near a transition may run 0, 1 or 2
times. The cronie rule keeps "once a day" meaning once a day.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from schedules.engine.base import Fire, search
from schedules.engine.errors import InvalidTrigger
from schedules.engine.zones import WallTime, classify, gap_end, occurrences

# croniter searches at most this many years for a match: Feb 29 can be eight years apart
# (2096 -> 2104), so nine finds every rule that fires at all and stops on those that never do.
MAX_YEARS_BETWEEN_MATCHES = 9

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_start: int = 0  # the number of the first name


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY_OF_MONTH = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS, 1)
_DAY_OF_WEEK = _Field("day-of-week", 0, 7, _DAYS, 0)  # 0 and 7 are Sunday

_ITEM = re.compile(r"^(?P<base>\*|\?|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[^/]*))?$")


def _value(token: str, spec: _Field) -> int:
    upper = token.upper()
    if upper in spec.names:
        return spec.names.index(upper) + spec.names_start
    if not token.isdigit():
        known = f" or a name ({', '.join(spec.names)})" if spec.names else ""
        raise ValueError(f"{spec.name} {token!r} is not a number{known}")
    value = int(token)
    if not spec.low <= value <= spec.high:
        raise ValueError(f"{spec.name} {value} is out of range {spec.low}-{spec.high}")
    return value


def _check_field(text: str, spec: _Field) -> None:
    for item in text.split(","):
        if not item:
            raise ValueError(f"{spec.name} field {text!r} has an empty list item")
        upper = item.upper()
        if spec is _DAY_OF_MONTH and (upper == "L" or re.fullmatch(r"\d+W", upper)):
            if upper != "L":
                _value(upper[:-1], spec)
            continue
        if spec is _DAY_OF_WEEK and "#" in item:
            day, _, nth = item.partition("#")
            _value(day, spec)
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise ValueError(f"day-of-week {item!r}: the occurrence after # must be 1-5")
            continue
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"{spec.name} {item!r} is not a value, range, list or step")
        base, step = match["base"], match["step"]
        if base == "?" and spec not in (_DAY_OF_MONTH, _DAY_OF_WEEK):
            raise ValueError(f"'?' is only allowed in the day fields, not in {spec.name}")
        if base not in ("*", "?"):
            low, _, high = base.partition("-")
            first = _value(low, spec)
            if high:
                last = _value(high, spec)
                if last < first:
                    raise ValueError(f"{spec.name} range {base} runs backwards")
        if step is not None:
            size = spec.high - spec.low + 1
            if not step.isdigit() or not 1 <= int(step) <= size:
                raise ValueError(f"{spec.name} step {step!r} must be a number from 1 to {size}")


def _specs(seconds: bool) -> tuple[_Field, ...]:
    return (_SECOND,) * seconds + (_MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK)


def _for_croniter(expression: str, seconds: bool) -> str:
    """A checked expression with each equal-ended range (``5-5``, ``MON-MON/2``) written as its
    one value, which croniter would otherwise take for the whole field."""
    fields = []
    for text, spec in zip(expression.split(), _specs(seconds), strict=True):
        items = []
        for item in text.split(","):
            match = _ITEM.match(item)
            if match and "-" in match["base"]:
                low, _, high = match["base"].partition("-")
                if _value(low, spec) == _value(high, spec):
                    item = low
            items.append(item)
        fields.append(",".join(items))
    return " ".join(fields)


def check_expression(expression: str) -> tuple[str, bool, bool]:
    """Validate a cron expression; return (normalised expression, has seconds, fixed time).

    Raises :class:`InvalidTrigger` on ``expression`` with a message naming the field and value.
    """
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise InvalidTrigger(
            {
                "expression": [
                    "Must have 5 fields (minute hour day-of-month month day-of-week) or 6 with "
                    f"seconds first; got {len(fields)}."
                ]
            }
        )
    seconds = len(fields) == 6
    try:
        for text, spec in zip(fields, _specs(seconds), strict=True):
            _check_field(text, spec)
        normalised = " ".join(fields)
        croniter(normalised, datetime(2000, 1, 1), second_at_beginning=seconds)
    except ValueError as exc:  # our own checks, and croniter's CroniterError (a ValueError)
        message = str(exc) if not isinstance(exc, CroniterError) else f"Not a valid cron expression: {exc}"
        raise InvalidTrigger({"expression": [message[0].upper() + message[1:] + "."]}) from None
    minute, hour = fields[1 if seconds else 0], fields[2 if seconds else 1]
    fixed_time = not minute.startswith("*") and not hour.startswith("*")
    return normalised, seconds, fixed_time


@dataclass(frozen=True)
class CronTrigger:
    """Fires when a cron expression matches the wall clock in ``timezone``; DST as above."""

    expression: str
    timezone: str
    _seconds: bool = field(init=False, repr=False, compare=False)
    _fixed_time: bool = field(init=False, repr=False, compare=False)
    _day_or: bool = field(init=False, repr=False, compare=False)
    _matching: str = field(init=False, repr=False, compare=False)  # what croniter is given
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        normalised, seconds, fixed_time = check_expression(self.expression)
        object.__setattr__(self, "expression", normalised)
        object.__setattr__(self, "_seconds", seconds)
        object.__setattr__(self, "_fixed_time", fixed_time)
        day_of_month, day_of_week = normalised.split()[-3], normalised.split()[-1]
        restricted = not day_of_month.startswith(("*", "?")) and not day_of_week.startswith(("*", "?"))
        object.__setattr__(self, "_day_or", restricted)
        object.__setattr__(self, "_matching", _for_croniter(normalised, seconds))
        object.__setattr__(self, "_tz", ZoneInfo(self.timezone))

    def _walk(self, expression: str, start: datetime) -> Iterator[datetime]:
        matches = croniter(
            expression,
            start,
            ret_type=datetime,
            day_or=False,
            max_years_between_matches=MAX_YEARS_BETWEEN_MATCHES,
            second_at_beginning=self._seconds,
        )
        try:
            while True:
                yield matches.get_next(datetime)
        except CroniterBadDateError:  # no match within the search bound: the rule is spent
            return

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        if not self._day_or:
            yield from self._walk(self._matching, start)
            return
        # Vixie OR: the days of the day-of-month field and those of the day-of-week field, merged.
        fields = self._matching.split()
        by_month_day = " ".join([*fields[:-1], "*"])
        by_week_day = " ".join([*fields[:-3], "*", *fields[-2:]])
        previous = None
        for wall in heapq.merge(self._walk(by_month_day, start), self._walk(by_week_day, start)):
            if wall != previous:
                yield wall
                previous = wall

    def _resolve(self, wall: datetime) -> list[Fire]:
        if not self._fixed_time:
            return [Fire(at) for at in occurrences(wall, self._tz)]
        kind = classify(wall, self._tz)
        if kind is WallTime.GAP:
            at = gap_end(wall, self._tz)
            shown = at.astimezone(self._tz).strftime("%H:%M")
            return [
                Fire(
                    at,
                    note=f"{wall:%H:%M} does not exist on {wall:%Y-%m-%d} in {self.timezone} (DST gap); "
                    f"fired at the first valid instant after it, {shown}.",
                    kind="DST_GAP",
                    moved_from=wall.isoformat(),
                )
            ]
        return [Fire(occurrences(wall, self._tz)[0])]  # an ambiguous time: its first occurrence

    def next_fire(self, after: datetime) -> Fire | None:
        return search(self._candidates, self._resolve, after, self._tz)
