"""RRULE triggers (RFC 5545): a recurrence rule with DTSTART as local time in a time zone.

The rule may be given as its value (``FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1``, with
``dtstart``, ``rdate`` and ``exdate`` beside it) or as a text block of ``DTSTART;TZID=...:``,
``RRULE:``, ``RDATE:`` and ``EXDATE:`` lines. ``dateutil.rrule`` expands it; we keep it in
naive wall time and turn each occurrence into an instant ourselves, because dateutil's own
TZID handling (its ``tz`` zones) reads a wall time in a spring-forward gap with the offset
*after* the gap, an hour early.

DST policy (RFC 5545 section 3.3.5): a local time that does not exist (in a spring-forward
gap) is read with the UTC offset from before the gap, so 02:30 becomes 03:30 on a one-hour
gap; an ambiguous local time (in a repeated hour) means its first occurrence. Two occurrences
that land on the same instant fire once. ``UNTIL`` (a UTC instant, as RFC 5545 requires with a
local DTSTART) bounds the occurrences' *instants*: near a transition wall time and UTC do not
keep their order (02:30 on a spring-forward day is after an UNTIL of 03:15 local time), so
dateutil gets a bound a little later in wall time and each occurrence is checked as an instant.

Two things dateutil does not do, done here:

- *Cost flat in the age of DTSTART.* dateutil walks every period from DTSTART, so a daily rule
  started ten years ago takes hundreds of times longer to answer than a fresh one. Unless the
  rule has a COUNT (which counts from DTSTART), we re-anchor it on a period boundary just before
  the instant asked about, with every implicit BYxxx value (taken from DTSTART) made explicit,
  which yields the same occurrences.
- *A bounded answer to "does this ever fire?"* dateutil searches up to year 9999 for a rule that
  never matches (``FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30`` takes seconds, a minutely one hours).
  ``check_satisfiable`` refuses such rules up front: impossible month days, BYSETPOS beyond what
  a period holds, steps that can never reach the requested hour or weekday, and a yearly probe
  of the day filters, which is cheap because a year is one period.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from dateutil.rrule import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, YEARLY, rruleset, weekday
from dateutil.rrule import rrule as Recurrence  # our field is called rrule

from schedules.engine.base import Fire, search
from schedules.engine.errors import InvalidTrigger
from schedules.engine.zones import TRANSITION_WINDOW, WallTime, classify, resolve_rfc5545, to_local

_FREQS = {"YEARLY": YEARLY, "MONTHLY": MONTHLY, "WEEKLY": WEEKLY, "DAILY": DAILY, "HOURLY": HOURLY}
_FREQS |= {"MINUTELY": MINUTELY, "SECONDLY": SECONDLY}
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_LIST_RANGES = {
    "BYSECOND": (0, 59, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (-31, 31, True),
    "BYYEARDAY": (-366, 366, True),
    "BYWEEKNO": (-53, 53, True),
    "BYSETPOS": (-366, 366, True),
}
_KNOWN = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST", *_LIST_RANGES}
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_STAMP = re.compile(r"^(\d{8})(?:T(\d{6}))?(Z?)$")
MAX_COUNT = 100_000


def _fail(path: str, message: str) -> InvalidTrigger:
    return InvalidTrigger({path: [message]})


def _parse_stamp(text: str, path: str) -> tuple[datetime, bool]:
    """An RFC 5545 DATE or DATE-TIME; returns (naive value, is UTC)."""
    match = _STAMP.match(text.strip())
    if match is None:
        raise _fail(path, f"{text!r} is not an RFC 5545 date-time such as 20270101T090000.")
    try:
        value = datetime.strptime(match[1] + (match[2] or "000000"), "%Y%m%d%H%M%S")
    except ValueError:
        raise _fail(path, f"{text!r} is not a valid date-time.") from None
    return value, match[3] == "Z"


@dataclass
class _Block:
    rules: list[str] = field(default_factory=list)
    dtstart: datetime | None = None
    rdate: list[datetime] = field(default_factory=list)
    exdate: list[datetime] = field(default_factory=list)


def _parse_block(text: str, timezone: str) -> _Block:
    """Split the ``rrule`` field into its lines (or take it as a single rule value)."""
    body = re.sub(r"\r?\n[ \t]", "", text.strip())  # unfold continuation lines
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if len(lines) == 1 and ":" not in lines[0]:
        return _Block(rules=[lines[0]])
    block = _Block()
    tz = ZoneInfo(timezone)
    for line in lines:
        head, sep, value = line.partition(":")
        if not sep:
            raise _fail("rrule", f"Line {line!r} has no ':'; expected DTSTART, RRULE, RDATE or EXDATE lines.")
        name, *params = head.split(";")
        name = name.upper()
        for param in params:
            key, _, tzid = param.partition("=")
            if key.upper() == "TZID" and tzid != timezone:
                raise _fail(
                    "rrule",
                    f"{name}'s TZID {tzid} differs from the schedule's timezone {timezone}; "
                    f'set "timezone": "{tzid}" or leave TZID out.',
                )
        if name == "RRULE":
            block.rules.append(value)
        elif name in ("DTSTART", "RDATE", "EXDATE"):
            stamps = []
            for item in value.split(","):
                stamp, utc = _parse_stamp(item, "rrule")
                stamps.append(to_local(stamp.replace(tzinfo=UTC), tz) if utc else stamp)
            if name == "DTSTART":
                if block.dtstart is not None or len(stamps) != 1:
                    raise _fail("rrule", "Give exactly one DTSTART.")
                block.dtstart = stamps[0]
            else:
                (block.rdate if name == "RDATE" else block.exdate).extend(stamps)
        elif name == "EXRULE":
            raise _fail("rrule", "EXRULE is deprecated by RFC 5545 and not supported; use EXDATE.")
        else:
            raise _fail("rrule", f"Unknown line {name!r}; expected DTSTART, RRULE, RDATE or EXDATE.")
    if not block.rules:
        raise _fail("rrule", "The block has no RRULE line.")
    return block


def _int(value: str, key: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", value):
        raise _fail("rrule", f"{key}={value!r} is not an integer.")
    return int(value)


def _parse_rule(text: str, tz: ZoneInfo) -> dict[str, Any]:
    """Check one RRULE value and turn it into dateutil ``rrule`` keyword arguments."""
    text = text.removeprefix("RRULE:").strip().rstrip(";")
    parts: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        key = key.strip().upper()
        if not sep or not value:
            raise _fail("rrule", f"{part!r} is not a NAME=VALUE pair.")
        if key not in _KNOWN:
            raise _fail("rrule", f"Unknown rule part {key}.")
        if key in parts:
            raise _fail("rrule", f"{key} is given twice.")
        parts[key] = value.strip().upper()
    if "FREQ" not in parts:
        raise _fail("rrule", "FREQ is required (YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY or SECONDLY).")
    if parts["FREQ"] not in _FREQS:
        raise _fail("rrule", f"FREQ={parts['FREQ']} is not one of {', '.join(_FREQS)}.")
    kwargs: dict[str, Any] = {"freq": _FREQS[parts["FREQ"]]}
    if "COUNT" in parts and "UNTIL" in parts:
        raise _fail("rrule", "COUNT and UNTIL must not both be given (RFC 5545 section 3.3.10).")
    if "INTERVAL" in parts:
        kwargs["interval"] = _int(parts["INTERVAL"], "INTERVAL")
        if not 1 <= kwargs["interval"] <= 10_000:
            raise _fail("rrule", "INTERVAL must be between 1 and 10000.")
    if "COUNT" in parts:
        kwargs["count"] = _int(parts["COUNT"], "COUNT")
        if not 1 <= kwargs["count"] <= MAX_COUNT:
            raise _fail("rrule", f"COUNT must be between 1 and {MAX_COUNT}.")
    if "UNTIL" in parts:
        until, utc = _parse_stamp(parts["UNTIL"], "rrule")
        if not utc:
            raise _fail(
                "rrule",
                "UNTIL must be a UTC date-time ending in Z when DTSTART is a local time "
                "(RFC 5545 section 3.3.10), e.g. UNTIL=20271231T230000Z.",
            )
        # dateutil's bound is in wall time; `_until_bounded` applies the instant (see the docstring).
        kwargs["until"] = to_local(until.replace(tzinfo=UTC), tz) + TRANSITION_WINDOW
        kwargs["until_at"] = until.replace(tzinfo=UTC)
    if "WKST" in parts:
        if parts["WKST"] not in _WEEKDAYS:
            raise _fail("rrule", f"WKST={parts['WKST']} is not a weekday (MO ... SU).")
        kwargs["wkst"] = _WEEKDAYS.index(parts["WKST"])
    for key, (low, high, signed) in _LIST_RANGES.items():
        if key in parts:
            numbers = [_int(v, key) for v in parts[key].split(",")]
            for number in numbers:
                if not low <= number <= high or (signed and number == 0):
                    bounds = f"{low}..{high}" + (" and not 0" if signed else "")
                    raise _fail("rrule", f"{key} value {number} is out of range {bounds}.")
            kwargs[key.lower()] = numbers
    if "BYDAY" in parts:
        days = []
        for item in parts["BYDAY"].split(","):
            match = _BYDAY.match(item)
            if match is None:
                raise _fail("rrule", f"BYDAY value {item!r} is not a weekday such as MO, -1FR or 2TU.")
            nth = int(match[1]) if match[1] else None
            if nth is not None and (nth == 0 or abs(nth) > 53):
                raise _fail("rrule", f"BYDAY value {item!r}: the ordinal must be 1..53 or -53..-1.")
            if nth is not None and kwargs["freq"] not in (MONTHLY, YEARLY):
                raise _fail("rrule", f"BYDAY value {item!r}: an ordinal needs FREQ=MONTHLY or YEARLY.")
            within_month = kwargs["freq"] == MONTHLY or "bymonth" in kwargs
            if nth is not None and within_month and abs(nth) > 5:
                raise _fail("rrule", f"BYDAY value {item!r}: a month has at most 5 of each weekday.")
            days.append(weekday(_WEEKDAYS.index(match[2]), nth))
        kwargs["byweekday"] = days
    if "bysetpos" in kwargs and not any(k.startswith("by") and k != "bysetpos" for k in kwargs):
        raise _fail("rrule", "BYSETPOS needs another BYxxx part to select from (RFC 5545).")
    return kwargs


def _explicit(rule: Recurrence) -> dict[str, Any]:
    """The rule's parameters with the values dateutil derived from DTSTART spelt out."""
    days: list[weekday] = [weekday(d) for d in rule._byweekday or ()]
    days += [weekday(d, n) for d, n in rule._bynweekday or ()]
    monthdays = list(rule._bymonthday or ()) + list(rule._bynmonthday or ())
    return {
        "freq": rule._freq,
        "interval": rule._interval,
        "wkst": rule._wkst,
        "until": rule._until,
        "bysetpos": rule._bysetpos,
        "bymonth": rule._bymonth,
        "bymonthday": monthdays or None,
        "byyearday": rule._byyearday,
        "byeaster": rule._byeaster,
        "byweekno": rule._byweekno,
        "byweekday": days or None,
        "byhour": sorted(rule._byhour) if rule._byhour else None,
        "byminute": sorted(rule._byminute) if rule._byminute else None,
        "bysecond": sorted(rule._bysecond) if rule._bysecond else None,
        "cache": False,
    }


def _period_start(freq: int, anchor: datetime, wkst: int) -> datetime:
    """The start of the period (of the rule's frequency) that contains ``anchor``."""
    if freq == YEARLY:
        return datetime(anchor.year, 1, 1)
    if freq == MONTHLY:
        return datetime(anchor.year, anchor.month, 1)
    if freq == WEEKLY:
        day = anchor.date() - timedelta(days=(anchor.weekday() - wkst) % 7)
        return datetime.combine(day, datetime.min.time())
    if freq == DAILY:
        return datetime.combine(anchor.date(), datetime.min.time())
    if freq == HOURLY:
        return anchor.replace(minute=0, second=0, microsecond=0)
    if freq == MINUTELY:
        return anchor.replace(second=0, microsecond=0)
    return anchor.replace(microsecond=0)


def _shift(start: datetime, freq: int, periods: int) -> datetime:
    if freq in (YEARLY, MONTHLY):
        shifted: datetime = start + relativedelta(**{"years" if freq == YEARLY else "months": periods})
        return shifted
    unit = {WEEKLY: timedelta(weeks=1), DAILY: timedelta(days=1), HOURLY: timedelta(hours=1)}
    unit |= {MINUTELY: timedelta(minutes=1), SECONDLY: timedelta(seconds=1)}
    return start + unit[freq] * periods


def _periods_between(freq: int, first: datetime, second: datetime) -> int:
    """Whole periods of ``freq`` from the period start ``first`` to ``second`` (floor)."""
    if freq == YEARLY:
        return second.year - first.year
    if freq == MONTHLY:
        return (second.year - first.year) * 12 + second.month - first.month
    seconds = {WEEKLY: 604_800, DAILY: 86_400, HOURLY: 3600, MINUTELY: 60, SECONDLY: 1}[freq]
    return math.floor((second - first).total_seconds() / seconds)


def _local(text: str, path: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(path, f"{text!r} is not an ISO 8601 local date-time.") from None
    if value.tzinfo is not None:
        raise _fail(path, "Must be a local time without a UTC offset; the schedule's time zone applies.")
    return value


@dataclass(frozen=True)
class RRuleTrigger:
    """Fires at the occurrences of an RFC 5545 recurrence in ``timezone``; DST per RFC 5545."""

    rrule: str
    timezone: str
    dtstart: str | None = None
    rdate: tuple[str, ...] = ()
    exdate: tuple[str, ...] = ()
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)
    _rules: tuple[dict[str, Any], ...] = field(init=False, repr=False, compare=False)
    _start: datetime = field(init=False, repr=False, compare=False)
    _rdates: tuple[datetime, ...] = field(init=False, repr=False, compare=False)
    _exdates: frozenset[datetime] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tz = ZoneInfo(self.timezone)
        block = _parse_block(self.rrule, self.timezone)
        if block.dtstart is not None and self.dtstart is not None:
            raise _fail("dtstart", "The rrule block already has a DTSTART; give it in one place only.")
        start = block.dtstart or (_local(self.dtstart, "dtstart") if self.dtstart else None)
        if start is None:
            raise _fail("dtstart", "Required unless the rrule block carries a DTSTART line.")
        start = start.replace(microsecond=0)
        rules = []
        for text in block.rules:
            kwargs = _parse_rule(text, tz)
            until_at = kwargs.pop("until_at", None)
            try:
                compiled = Recurrence(dtstart=start, cache=False, **kwargs)
            except (ValueError, TypeError) as exc:
                raise _fail("rrule", f"Not a valid recurrence rule: {str(exc).rstrip('.')}.") from None
            check_satisfiable(compiled)
            rules.append({**_explicit(compiled), "count": compiled._count, "until_at": until_at})
        rdates = [*block.rdate, *(_local(d, f"rdate.{i}") for i, d in enumerate(self.rdate))]
        exdates = [*block.exdate, *(_local(d, f"exdate.{i}") for i, d in enumerate(self.exdate))]
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_rules", tuple(rules))
        object.__setattr__(self, "_start", start)
        object.__setattr__(self, "_rdates", tuple(sorted(rdates)))
        object.__setattr__(self, "_exdates", frozenset(exdates))

    def _rule_near(self, spec: dict[str, Any], anchor: datetime) -> Recurrence:
        """The rule, re-anchored on a period boundary at most two periods before ``anchor``."""
        params = dict(spec)
        params.pop("until_at")
        freq, interval, count = params["freq"], params["interval"], params.pop("count")
        dtstart = self._start
        if count is None and anchor > self._start:
            origin = _period_start(freq, self._start, params["wkst"])
            behind = _periods_between(freq, origin, anchor) - 2 * interval
            if behind > 0:
                candidate = _shift(origin, freq, behind - behind % interval)
                if candidate > self._start:  # the original DTSTART's own period keeps DTSTART
                    dtstart = candidate
        rule: Recurrence = Recurrence(dtstart=dtstart, count=count, **params)
        return rule

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        rules = rruleset(cache=False)
        for spec in self._rules:
            rule = self._rule_near(spec, start)
            until = spec["until_at"]
            # rruleset takes any iterable of wall times in increasing order.
            rules.rrule(rule if until is None else self._until_bounded(rule, until))
        for value in self._rdates:
            if value > start:
                rules.rdate(value)
        for value in self._exdates:
            rules.exdate(value)
        found: Iterator[datetime] = rules.xafter(start, inc=False)
        return found

    def _until_bounded(self, rule: Recurrence, until: datetime) -> Iterator[datetime]:
        """The rule's wall times whose instants are not after UNTIL (dateutil's own bound is a
        transition window later, in wall time)."""
        for wall in rule:
            if resolve_rfc5545(wall, self._tz) <= until:
                yield wall

    def _resolve(self, wall: datetime) -> list[Fire]:
        at = resolve_rfc5545(wall, self._tz)
        if classify(wall, self._tz) is WallTime.GAP:
            shown = at.astimezone(self._tz).strftime("%H:%M")
            note = (
                f"{wall:%H:%M} does not exist on {wall:%Y-%m-%d} in {self.timezone} (DST gap); read with "
                f"the offset from before the gap (RFC 5545), {shown}."
            )
            return [Fire(at, note=note, kind="DST_GAP", moved_from=wall.isoformat())]
        return [Fire(at)]

    def next_fire(self, after: datetime) -> Fire | None:
        return search(self._candidates, self._resolve, after, self._tz)


# --- is the rule satisfiable at all? ----------------------------------------------------------

_DAY_SECONDS = 86_400
_UNIT_SECONDS = {HOURLY: 3600, MINUTELY: 60, SECONDLY: 1}
_PROBE_FROM = datetime(2000, 1, 1)  # a leap year: the probe sees Feb 29 within 400 years


def check_satisfiable(rule: Recurrence) -> None:
    """Refuse a rule that can never produce an occurrence, in bounded time."""
    never = "The rule never produces an occurrence"
    months = rule._bymonth or tuple(range(1, 13))
    monthdays = [*(rule._bymonthday or ()), *(rule._bynmonthday or ())]
    if monthdays and not any(abs(day) <= calendar.monthrange(2000, m)[1] for m in months for day in monthdays):
        raise _fail("rrule", f"{never}: no month in BYMONTH has the days in BYMONTHDAY.")
    if rule._bysetpos:
        largest = _largest_period(rule)
        if all(abs(pos) > largest for pos in rule._bysetpos):
            raise _fail("rrule", f"{never}: BYSETPOS asks for more than the {largest} candidates a period holds.")
    freq, interval = rule._freq, rule._interval
    if freq in _UNIT_SECONDS:
        step = math.gcd(interval * _UNIT_SECONDS[freq], _DAY_SECONDS)
        start = rule._dtstart
        origin = start.hour * 3600 + start.minute * 60 + start.second
        hours = rule._byhour or set(range(24))
        minutes = rule._byminute or set(range(60))
        seconds = rule._bysecond or set(range(60))
        if freq == HOURLY:
            reachable = any((h * 3600 + start.minute * 60 + start.second - origin) % step == 0 for h in hours)
        elif freq == MINUTELY:
            reachable = any((h * 3600 + m * 60 + start.second - origin) % step == 0 for h in hours for m in minutes)
        else:
            reachable = any(
                (h * 3600 + m * 60 + s - origin) % step == 0 for h in hours for m in minutes for s in seconds
            )
        if not reachable:
            raise _fail("rrule", f"{never}: INTERVAL={interval} never reaches the hours and minutes asked for.")
    if freq == DAILY and interval % 7 == 0 and rule._byweekday and rule._dtstart.weekday() not in rule._byweekday:
        raise _fail("rrule", f"{never}: every {interval} days from DTSTART always falls on the same weekday.")
    if _has_day_filter(rule):
        _probe_days(rule)


def _has_day_filter(rule: Recurrence) -> bool:
    return any((rule._bymonth, rule._byweekno, rule._byyearday, rule._byeaster, rule._bymonthday, rule._bynmonthday))


def _largest_period(rule: Recurrence) -> int:
    """An upper bound on the candidates one period of the rule can hold (for BYSETPOS)."""
    hours, minutes, seconds = (len(values or (0,)) for values in (rule._byhour, rule._byminute, rule._bysecond))
    per_period_times = {HOURLY: minutes * seconds, MINUTELY: seconds, SECONDLY: 1}
    times = per_period_times.get(rule._freq, hours * minutes * seconds)
    days = {YEARLY: 366, MONTHLY: 31, WEEKLY: 7}.get(rule._freq, 1)
    weekdays = len(rule._byweekday or ()) + len(rule._bynweekday or ())
    if weekdays and not (rule._bymonthday or rule._bynmonthday or rule._byyearday or rule._byweekno):
        days = min(days, {YEARLY: 53, MONTHLY: 5, WEEKLY: 1}.get(rule._freq, 1) * weekdays)
    return days * times


def _probe_days(rule: Recurrence) -> None:
    """Does any day pass the rule's day filters? One yearly rule over 400 years answers it
    (the Gregorian calendar repeats every 400 years), in at most 400 periods."""
    weekdays = [weekday(d) for d in rule._byweekday or ()]
    weekdays += [weekday(d, n) for d, n in rule._bynweekday or ()]
    monthdays = [*(rule._bymonthday or ()), *(rule._bynmonthday or ())]
    probe = Recurrence(
        YEARLY,
        dtstart=_PROBE_FROM,
        until=_PROBE_FROM + relativedelta(years=400),
        bymonth=rule._bymonth,
        bymonthday=monthdays or None,
        byyearday=rule._byyearday,
        byweekno=rule._byweekno,
        byweekday=weekdays or None,
        byeaster=rule._byeaster,
        byhour=0,
        byminute=0,
        bysecond=0,
        cache=False,
    )
    if probe.after(_PROBE_FROM, inc=True) is None:
        raise _fail("rrule", "The rule never produces an occurrence: no day matches its BYxxx parts.")
