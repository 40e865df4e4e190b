"""The trigger JSON contract: parse and serialise versioned trigger documents.

This is the one place where trigger JSON becomes trigger objects and back. It checks the
*shape* of a trigger (its type, required fields, field types, unknown fields); the trigger
classes give the fields their meaning. Pure Python: no Django, no Celery.

Stored form::

    {"version": 1, "type": "CRON", "expression": "0 2 * * *"}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schedules.engine.errors import InvalidTrigger

SPEC_VERSION = 1
TRIGGER_TYPES = ("CRON", "RRULE", "FIXED_DELAY", "ONE_SHOT", "BUSINESS_DAY")
# A fixed delay longer than a year is almost certainly a unit mistake.
MAX_DELAY_SECONDS = 366 * 24 * 3600
MAX_TEXT = 4096
MAX_DATES = 1000


@dataclass(frozen=True)
class CronSpec:
    expression: str
    type: str = field(default="CRON", init=False)


@dataclass(frozen=True)
class RRuleSpec:
    rrule: str
    dtstart: str | None = None
    rdate: tuple[str, ...] = ()
    exdate: tuple[str, ...] = ()
    type: str = field(default="RRULE", init=False)


@dataclass(frozen=True)
class FixedDelaySpec:
    delay_seconds: int
    type: str = field(default="FIXED_DELAY", init=False)


@dataclass(frozen=True)
class OneShotSpec:
    run_at: str
    type: str = field(default="ONE_SHOT", init=False)


@dataclass(frozen=True)
class BusinessDaySpec:
    day: int
    at: str
    months: tuple[int, ...] = tuple(range(1, 13))
    type: str = field(default="BUSINESS_DAY", init=False)


TriggerSpec = CronSpec | RRuleSpec | FixedDelaySpec | OneShotSpec | BusinessDaySpec


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise InvalidTrigger(self.errors)


def _text(data: Mapping[str, Any], name: str, errors: _Errors, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            errors.add(name, "This field is required.")
        return None
    if not isinstance(value, str):
        errors.add(name, f"Must be a string, not {type(value).__name__}.")
        return None
    if not value.strip():
        errors.add(name, "Must not be blank.")
        return None
    if len(value) > MAX_TEXT:
        errors.add(name, f"Must be at most {MAX_TEXT} characters.")
        return None
    return value.strip()


def _iso_datetime(value: str, path: str, errors: _Errors, *, offset: str) -> str | None:
    """Check an ISO 8601 date-time; ``offset`` is "forbidden" or "optional"."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors.add(path, f"{value!r} is not an ISO 8601 date-time (YYYY-MM-DDTHH:MM[:SS]).")
        return None
    if offset == "forbidden" and parsed.tzinfo is not None:
        errors.add(path, "Must be a local time without a UTC offset; the schedule's time zone applies.")
        return None
    return value


def _date_list(data: Mapping[str, Any], name: str, errors: _Errors) -> tuple[str, ...]:
    value = data.get(name, [])
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.add(name, f"Must be a list of local date-times, not {type(value).__name__}.")
        return ()
    if len(value) > MAX_DATES:
        errors.add(name, f"Must hold at most {MAX_DATES} entries.")
        return ()
    dates = []
    for index, item in enumerate(value):
        path = f"{name}.{index}"
        if not isinstance(item, str):
            errors.add(path, f"Must be a string, not {type(item).__name__}.")
            continue
        if _iso_datetime(item, path, errors, offset="forbidden") is not None:
            dates.append(item)
    return tuple(dates)


def _parse_cron(data: Mapping[str, Any], errors: _Errors) -> CronSpec | None:
    expression = _text(data, "expression", errors)
    if expression is None:
        return None
    fields = expression.split()
    if len(fields) not in (5, 6):
        errors.add(
            "expression",
            f"Must have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds "
            f"first; got {len(fields)}.",
        )
        return None
    return CronSpec(expression=" ".join(fields))


def _parse_rrule(data: Mapping[str, Any], errors: _Errors) -> RRuleSpec | None:
    rule = _text(data, "rrule", errors)
    dtstart = _text(data, "dtstart", errors, required=False)
    if dtstart is not None:
        dtstart = _iso_datetime(dtstart, "dtstart", errors, offset="forbidden")
    rdate = _date_list(data, "rdate", errors)
    exdate = _date_list(data, "exdate", errors)
    if rule is None:
        return None
    if dtstart is None and "dtstart" not in errors.errors and "DTSTART" not in rule.upper():
        errors.add("dtstart", "Required unless the rrule block carries a DTSTART line.")
        return None
    return RRuleSpec(rrule=rule, dtstart=dtstart, rdate=rdate, exdate=exdate)


def _parse_fixed_delay(data: Mapping[str, Any], errors: _Errors) -> FixedDelaySpec | None:
    value = data.get("delay_seconds")
    if value is None:
        errors.add("delay_seconds", "This field is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add("delay_seconds", f"Must be an integer, not {type(value).__name__}.")
        return None
    if not 1 <= value <= MAX_DELAY_SECONDS:
        errors.add("delay_seconds", f"Must be between 1 and {MAX_DELAY_SECONDS} seconds.")
        return None
    return FixedDelaySpec(delay_seconds=value)


def _parse_one_shot(data: Mapping[str, Any], errors: _Errors) -> OneShotSpec | None:
    run_at = _text(data, "run_at", errors)
    if run_at is None:
        return None
    checked = _iso_datetime(run_at, "run_at", errors, offset="optional")
    return OneShotSpec(run_at=checked) if checked else None


_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(:([0-5]\d))?$")


def _parse_business_day(data: Mapping[str, Any], errors: _Errors) -> BusinessDaySpec | None:
    day, at, months = data.get("day"), data.get("at"), data.get("months", list(range(1, 13)))
    ok = True
    if isinstance(day, bool) or not isinstance(day, int) or day == 0 or not -23 <= day <= 23:
        errors.add("day", "Must be an integer 1..23 (n-th business day of the month) or -1..-23 (from its end).")
        ok = False
    if not isinstance(at, str) or not _TIME.match(at):
        errors.add("at", "Must be a local wall time HH:MM or HH:MM:SS, e.g. 09:00.")
        ok = False
    if (
        not isinstance(months, list)
        or not months
        or any(isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 12 for m in months)
        or len(set(months)) != len(months)
    ):
        errors.add("months", "Must be a non-empty list of distinct month numbers 1..12.")
        ok = False
    if not ok or not isinstance(day, int) or not isinstance(at, str):
        return None
    return BusinessDaySpec(day=day, at=at, months=tuple(sorted(months)))


_PARSERS: dict[str, tuple[Callable[[Mapping[str, Any], _Errors], TriggerSpec | None], frozenset[str]]] = {
    "CRON": (_parse_cron, frozenset({"expression"})),
    "RRULE": (_parse_rrule, frozenset({"rrule", "dtstart", "rdate", "exdate"})),
    "FIXED_DELAY": (_parse_fixed_delay, frozenset({"delay_seconds"})),
    "ONE_SHOT": (_parse_one_shot, frozenset({"run_at"})),
    "BUSINESS_DAY": (_parse_business_day, frozenset({"day", "at", "months"})),
}


def parse_trigger(data: Any) -> TriggerSpec:
    """Build a trigger from its JSON document; raise :class:`InvalidTrigger` with every problem."""
    errors = _Errors()
    if not isinstance(data, Mapping):
        errors.add("", f"Must be an object with a 'type', not {type(data).__name__}.")
        errors.raise_if_any()
    version = data.get("version", SPEC_VERSION)
    if version != SPEC_VERSION or isinstance(version, bool):
        errors.add("version", f"Unsupported trigger version {version!r}; this service reads version {SPEC_VERSION}.")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _PARSERS:  # a list or object is unhashable
        choices = ", ".join(TRIGGER_TYPES)
        errors.add(
            "type", f"Must be one of {choices}; got {kind!r}." if kind is not None else "This field is required."
        )
        errors.raise_if_any()
    parser, allowed = _PARSERS[kind]
    for unknown in sorted(set(data) - allowed - {"type", "version"}):
        errors.add(str(unknown), f"Unknown field for a {kind} trigger.")
    trigger = parser(data, errors)
    errors.raise_if_any()
    assert trigger is not None  # every parser records an error when it returns None
    return trigger


def dump_trigger(trigger: TriggerSpec) -> dict[str, Any]:
    """The stored (and API) form of a trigger, with its spec version."""
    document: dict[str, Any] = {"version": SPEC_VERSION, "type": trigger.type}
    if isinstance(trigger, CronSpec):
        document["expression"] = trigger.expression
    elif isinstance(trigger, RRuleSpec):
        document["rrule"] = trigger.rrule
        if trigger.dtstart is not None:
            document["dtstart"] = trigger.dtstart
        document["rdate"] = list(trigger.rdate)
        document["exdate"] = list(trigger.exdate)
    elif isinstance(trigger, FixedDelaySpec):
        document["delay_seconds"] = trigger.delay_seconds
    elif isinstance(trigger, OneShotSpec):
        document["run_at"] = trigger.run_at
    else:
        document.update(day=trigger.day, at=trigger.at, months=list(trigger.months))
    return document
