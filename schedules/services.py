"""Writes to jobs and schedules. Every write is atomic and reports itself as a domain event."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from calendars.engine import InvalidCalendar
from calendars.models import Calendar
from runs.targets.spec import InvalidTarget, parse_target
from scheduler_project.errors import ValidationFailed
from scheduler_project.events import event_record
from schedules.engine.compose import build_trigger, first_fire
from schedules.engine.errors import InvalidTrigger
from schedules.engine.spec import OneShotSpec, dump_trigger, parse_trigger
from schedules.models import BackoffStrategy, Job, Schedule
from schedules.selectors import schedule_business_calendar, schedule_trigger

_BACKOFF_FIELDS = {
    "strategy": "backoff_strategy",
    "base_seconds": "backoff_base_seconds",
    "max_seconds": "backoff_max_seconds",
}


def _prefixed(prefix: str, errors: dict[str, list[str]]) -> dict[str, list[str]]:
    return {f"{prefix}.{path}" if path else prefix: messages for path, messages in errors.items()}


def _target(data: Any) -> dict[str, Any]:
    try:
        return parse_target(data)
    except InvalidTarget as exc:
        raise ValidationFailed(_prefixed("target", exc.errors)) from None


def _check_job(job: Job) -> None:
    if job.backoff_max_seconds < job.backoff_base_seconds:
        raise ValidationFailed({"backoff.max_seconds": ["Must not be smaller than backoff.base_seconds."]})


def _save_job(job: Job) -> None:
    try:
        with transaction.atomic():
            job.save()
    except IntegrityError:
        raise ValidationFailed({"key": ["A job with this key already exists."]}) from None


@transaction.atomic
def job_create(
    *,
    tenant_id: str,
    key: str,
    name: str,
    target: dict[str, Any],
    description: str = "",
    payload: dict[str, Any] | None = None,
    max_attempts: int = 3,
    backoff: dict[str, Any] | None = None,
    timeout_seconds: int = 300,
    concurrency_limit: int | None = None,
    queue: str = "default",
    required_capabilities: list[str] | None = None,
    priority: int = 5,
) -> Job:
    backoff = backoff or {}
    job = Job(
        tenant_id=tenant_id,
        key=key,
        name=name,
        description=description,
        target=_target(target),
        payload=payload or {},
        max_attempts=max_attempts,
        backoff_strategy=backoff.get("strategy", BackoffStrategy.EXPONENTIAL_JITTER),
        backoff_base_seconds=backoff.get("base_seconds", 10),
        backoff_max_seconds=backoff.get("max_seconds", 600),
        timeout_seconds=timeout_seconds,
        concurrency_limit=concurrency_limit,
        queue=queue,
        required_capabilities=required_capabilities or [],
        priority=priority,
    )
    _check_job(job)
    _save_job(job)
    return job


@transaction.atomic
def job_update(*, job: Job, data: dict[str, Any]) -> Job:
    job = Job.objects.select_for_update().get(pk=job.pk)
    for field, value in data.items():
        if field == "backoff":
            for name, column in _BACKOFF_FIELDS.items():
                if name in value:
                    setattr(job, column, value[name])
        elif field == "target":
            job.target = _target(value)
        else:
            setattr(job, field, value)
    _check_job(job)
    _save_job(job)
    return job


def _schedule_event_data(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": str(schedule.pk),
        "name": schedule.name,
        "job": str(schedule.job_id),
        "enabled": schedule.enabled,
        "trigger": schedule.trigger,
        "timezone": schedule.timezone,
        "next_fire_at": schedule.next_fire_at.isoformat() if schedule.next_fire_at else None,
    }


def _schedule_event(schedule: Schedule, event: str) -> None:
    event_record(
        tenant_id=schedule.tenant_id,
        type=f"scheduler.schedule.{event}",
        aggregate_type="schedule",
        aggregate_id=schedule.pk,
        data=_schedule_event_data(schedule),
    )


def _resolve(schedule: Schedule, data: dict[str, Any]) -> None:
    """Apply validated input to a schedule, checking what needs the database or the engine."""
    errors: dict[str, list[str]] = {}
    tenant_id = schedule.tenant_id
    for field, value in data.items():
        if field == "job":
            job = Job.objects.filter(tenant_id=tenant_id, pk=value).first()
            if job is None:
                errors["job"] = [f"No job {value} in this tenant."]
            else:
                schedule.job = job
        elif field == "calendar":
            if value is None:
                schedule.calendar = None
            else:
                calendar = Calendar.objects.filter(tenant_id=tenant_id, pk=value).first()
                if calendar is None:
                    errors["calendar"] = [f"No calendar {value} in this tenant."]
                else:
                    schedule.calendar = calendar
        elif field == "trigger":
            try:
                schedule.trigger = dump_trigger(parse_trigger(value))
            except InvalidTrigger as exc:
                errors.update(_prefixed("trigger", exc.errors))
        elif field == "timezone":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory ("Europe")
                errors["timezone"] = [f"Unknown IANA time zone {value!r}."]
            schedule.timezone = value
        else:
            setattr(schedule, field, value)
    start_at: datetime | None = schedule.start_at
    end_at: datetime | None = schedule.end_at
    if start_at is not None and end_at is not None and end_at <= start_at:
        errors["end_at"] = ["Must be later than start_at."]
    if errors:
        raise ValidationFailed(errors)
    if schedule._state.adding or TIMING_FIELDS & set(data):
        schedule.next_fire_at = _first_fire_or_fail(schedule)


# Fields whose change moves the schedule's next fire time.
TIMING_FIELDS = frozenset({"trigger", "timezone", "calendar", "calendar_policy", "start_at", "end_at"})


def _first_fire_or_fail(schedule: Schedule) -> datetime:
    """The schedule's first fire from now; a 400 naming the cause when there is none."""
    now = timezone.now()
    spec = parse_trigger(schedule.trigger)
    created_at = schedule.created_at or now
    try:
        calendar = schedule_business_calendar(schedule)
        trigger = schedule_trigger(schedule, calendar=calendar)
        plain = build_trigger(spec, timezone=schedule.timezone)
    except InvalidTrigger as exc:
        raise ValidationFailed(_prefixed("trigger", exc.errors)) from None
    except InvalidCalendar as exc:
        raise ValidationFailed({"calendar": [str(exc)]}) from None
    fire = first_fire(spec, trigger, now=now, created_at=created_at, start_at=schedule.start_at)
    if fire is not None:
        return fire.at
    if first_fire(spec, plain, now=now, created_at=created_at) is None:
        if isinstance(spec, OneShotSpec):
            raise ValidationFailed({"trigger.run_at": [f"{spec.run_at} is in the past; a one-shot must lie ahead."]})
        raise ValidationFailed({"trigger": ["The rule has no fire time after now (is its UNTIL or COUNT spent?)."]})
    if schedule.end_at is not None:
        raise ValidationFailed({"end_at": [f"No fire time between now and end_at {schedule.end_at.isoformat()}."]})
    raise ValidationFailed({"calendar": ["Under this calendar and calendar_policy the rule never fires."]})


@transaction.atomic
def schedule_create(*, tenant_id: str, data: dict[str, Any]) -> Schedule:
    """Create a schedule from validated API input (``job`` and ``calendar`` as ids)."""
    schedule = Schedule(tenant_id=tenant_id, timezone=settings.DEFAULT_TZ)
    _resolve(schedule, data)
    schedule.save()
    _schedule_event(schedule, "created")
    return schedule


@transaction.atomic
def schedule_update(*, schedule: Schedule, data: dict[str, Any]) -> Schedule:
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    was_enabled = schedule.enabled
    _resolve(schedule, data)
    schedule.save()
    _schedule_event(schedule, "updated")
    if schedule.enabled != was_enabled:
        _schedule_event(schedule, "enabled" if schedule.enabled else "disabled")
    return schedule


@transaction.atomic
def schedule_set_enabled(*, schedule: Schedule, enabled: bool) -> Schedule:
    """Pause or resume a schedule; a no-op (and no event) when it already is so.

    Resuming computes the next fire from now: slots that passed while paused are not fired.
    """
    schedule = Schedule.objects.select_for_update(of=("self",)).select_related("job", "calendar").get(pk=schedule.pk)
    if schedule.enabled == enabled:
        return schedule
    schedule.enabled = enabled
    if enabled:
        schedule.next_fire_at = _next_fire(schedule, now=timezone.now())
    schedule.save(update_fields=["enabled", "next_fire_at", "updated_at"])
    _schedule_event(schedule, "enabled" if enabled else "disabled")
    return schedule


def _next_fire(schedule: Schedule, *, now: datetime) -> datetime | None:
    fire = first_fire(
        parse_trigger(schedule.trigger),
        schedule_trigger(schedule),
        now=now,
        created_at=schedule.created_at,
        start_at=schedule.start_at,
    )
    return fire.at if fire else None


def schedule_refresh_next_fire(*, schedules: Iterable[Schedule]) -> None:
    """Recompute next_fire_at from now, e.g. after their calendar changed."""
    now = timezone.now()
    for schedule in schedules:
        schedule.next_fire_at = _next_fire(schedule, now=now)
        schedule.save(update_fields=["next_fire_at", "updated_at"])


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    _schedule_event(schedule, "deleted")
    schedule.delete()
