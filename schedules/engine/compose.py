"""From a schedule's settings to one trigger: the rule, its calendar policy, its bounds.

Everything that answers "when does this schedule fire?" — the beat, the API's next_fire_at and
the preview — builds its trigger here, so what a tenant previews is what runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from schedules.engine.base import Fire, Trigger
from schedules.engine.business import BoundedTrigger, BusinessDays, BusinessDayTrigger, CalendarPolicyTrigger
from schedules.engine.cron import CronTrigger
from schedules.engine.errors import InvalidTrigger
from schedules.engine.rrule import RRuleTrigger
from schedules.engine.simple import FixedDelayTrigger, OneShotTrigger
from schedules.engine.spec import (
    BusinessDaySpec,
    CronSpec,
    FixedDelaySpec,
    OneShotSpec,
    RRuleSpec,
    TriggerSpec,
)
from schedules.engine.zones import require_aware


def build_trigger(
    spec: TriggerSpec,
    *,
    timezone: str,
    calendar: BusinessDays | None = None,
    calendar_policy: str = "SKIP",
    start_at: datetime | None = None,
    end_at: datetime | None = None,
) -> Trigger:
    """The trigger a schedule fires by. Raises :class:`InvalidTrigger` (paths relative to the
    trigger document) when the rule cannot be used."""
    for value, name in ((start_at, "start_at"), (end_at, "end_at")):
        if value is not None:
            require_aware(value, name)
    trigger: Trigger
    if isinstance(spec, CronSpec):
        trigger = CronTrigger(spec.expression, timezone)
    elif isinstance(spec, RRuleSpec):
        trigger = RRuleTrigger(spec.rrule, timezone, spec.dtstart, spec.rdate, spec.exdate)
    elif isinstance(spec, FixedDelaySpec):
        trigger = FixedDelayTrigger(spec.delay_seconds)
    elif isinstance(spec, OneShotSpec):
        trigger = OneShotTrigger(spec.run_at, timezone)
    elif isinstance(spec, BusinessDaySpec):
        if calendar is None:
            raise InvalidTrigger(
                {"type": ["A BUSINESS_DAY trigger counts business days: give the schedule a calendar."]}
            )
        trigger = BusinessDayTrigger(spec.day, time.fromisoformat(spec.at), timezone, calendar, spec.months)
    else:  # pragma: no cover - the spec union is closed
        raise TypeError(spec)
    if calendar is not None and not isinstance(spec, BusinessDaySpec):
        trigger = CalendarPolicyTrigger(trigger, calendar, calendar_policy, timezone)
    if isinstance(spec, FixedDelaySpec):
        start_at = None  # a fixed delay's start is its first fire, set by first_fire() below
    if start_at is not None or end_at is not None:
        trigger = BoundedTrigger(trigger, start_at, end_at)
    return trigger


def first_fire(
    spec: TriggerSpec,
    trigger: Trigger,
    *,
    now: datetime,
    created_at: datetime,
    start_at: datetime | None = None,
) -> Fire | None:
    """The first fire of a schedule looked at ``now``: for FIXED_DELAY its ``start_at``, else
    its creation plus the delay; for every other rule the first fire after ``now``."""
    for value, name in ((now, "now"), (created_at, "created_at"), (start_at, "start_at")):
        if value is not None:
            require_aware(value, name)
    if isinstance(spec, FixedDelaySpec):
        # Instants in UTC: a timedelta added to a zoned datetime would be added in wall time.
        anchor = max(start_at or created_at.astimezone(UTC) + timedelta(seconds=spec.delay_seconds), now)
        anchor = anchor.astimezone(UTC)
        # A fixed delay fires `delay` after what it is given: give it the anchor minus the delay,
        # so the calendar policy and end_at still apply to the first fire.
        return trigger.next_fire(anchor - timedelta(seconds=spec.delay_seconds))
    return trigger.next_fire(now)
