"""Writes to jobs and schedules, and the dispatch of due schedules. Every write is atomic;
schedule changes and missed slots are reported as domain events in the same transaction."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, F, Q, When
from django.db.models.functions import Now
from django.utils import timezone

from calendars.engine import BusinessCalendar, InvalidCalendar
from calendars.models import Calendar
from runs.models import ACTIVE_STATUSES, FINAL_STATUSES, SLOT_KINDS, Run, RunKind, RunStatus
from runs.services import run_enqueue, run_event_build, run_route, runs_retry, runs_send_on_commit, runs_wake_waiting
from runs.targets.spec import InvalidTarget, parse_target
from scheduler_project import metrics
from scheduler_project.bulk import bulk_insert_new, bulk_update_columns
from scheduler_project.errors import Conflict, ValidationFailed
from scheduler_project.events import event_record, events_record
from schedules import selectors
from schedules.engine.base import Fire, Trigger, fires, next_after
from schedules.engine.business import calendar_verdict
from schedules.engine.compose import build_trigger, first_fire
from schedules.engine.errors import InvalidTrigger
from schedules.engine.lookback import calendar_skips, fires_before
from schedules.engine.spec import (
    BusinessDaySpec,
    FixedDelaySpec,
    OneShotSpec,
    TriggerSpec,
    dump_trigger,
    parse_trigger,
)
from schedules.models import BackoffStrategy, BeatLease, Job, MisfirePolicy, OverlapPolicy, Schedule
from schedules.selectors import schedule_business_calendar, schedule_trigger
from schedules.wakeup import beats_wake

logger = logging.getLogger(__name__)

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
    webhook_secret: str = "",
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
        required_capabilities=sorted(set(required_capabilities or [])),
        priority=priority,
        webhook_secret=webhook_secret,
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
    if "concurrency_limit" in data:  # a limit raised or removed frees slots for waiting runs
        runs_wake_waiting(now=timezone.now(), job_ids=[job.pk])
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
    was_enabled = schedule.enabled and not schedule._state.adding
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
    resumed = data.get("enabled") is True and not was_enabled
    if schedule._state.adding or resumed or TIMING_FIELDS & set(data):
        schedule.next_fire_at = _first_fire_or_fail(schedule)


# Fields whose change moves the schedule's next fire time.
TIMING_FIELDS = frozenset(
    {"trigger", "timezone", "calendar", "calendar_policy", "start_at", "end_at", "jitter_seconds"}
)


def _first_fire_or_fail(schedule: Schedule) -> datetime:
    """The schedule's next fire time from now (its jitter included); a 400 naming the cause
    when there is none."""
    now = timezone.now()
    fire_at = _next_fire(schedule, now=now)
    if fire_at is not None:
        return fire_at
    spec = parse_trigger(schedule.trigger)
    if isinstance(spec, OneShotSpec):
        raise ValidationFailed({"trigger.run_at": [f"{spec.run_at} is in the past; a one-shot must lie ahead."]})
    # Is it the rule itself, or what the bounds and the calendar leave of it?
    calendar = schedule_business_calendar(schedule) if isinstance(spec, BusinessDaySpec) else None
    plain = build_trigger(spec, timezone=schedule.timezone, calendar=calendar)
    if first_fire(spec, plain, now=now, created_at=schedule.created_at or now) is None:
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
    beats_wake()
    return schedule


@transaction.atomic
def schedule_update(*, schedule: Schedule, data: dict[str, Any]) -> Schedule:
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    was_enabled = schedule.enabled
    _resolve(schedule, data)
    schedule.save()
    _schedule_event(schedule, "updated")
    beats_wake()
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
    beats_wake()
    return schedule


def _next_fire(schedule: Schedule, *, now: datetime, trigger: Trigger | None = None) -> datetime | None:
    """When the schedule next fires from ``now``: its next slot plus its jitter."""
    fire = first_fire(
        parse_trigger(schedule.trigger),
        trigger or _engine_trigger(schedule),
        now=now,
        created_at=schedule.created_at or now,
        start_at=schedule.start_at,
    )
    return fire.at + _jitter(schedule) if fire else None


def schedule_run_finished(*, run: Run, finished_at: datetime) -> None:
    """A run of a schedule reached a final state. A FIXED_DELAY schedule's next slot follows the
    finish of its previous slot's run (the beat left next_fire_at empty until now). Runs inside
    the transaction that finished the run."""
    if run.kind != RunKind.SCHEDULED or run.schedule_id is None:
        return
    schedule = (
        Schedule.objects.select_for_update(of=("self",))
        .select_related("job", "calendar")
        .filter(pk=run.schedule_id, enabled=True, next_fire_at__isnull=True)
        .first()
    )
    if schedule is None or schedule.trigger.get("type") != "FIXED_DELAY":
        return
    try:
        fire = schedule_trigger(schedule).next_fire(finished_at)
    except (InvalidTrigger, InvalidCalendar):  # its calendar was edited into nonsense: leave it
        logger.warning("schedule %s: next fixed-delay slot cannot be computed", schedule.pk, exc_info=True)
        return
    schedule.next_fire_at = fire.at + _jitter(schedule) if fire else None
    schedule.save(update_fields=["next_fire_at", "updated_at"])
    beats_wake()


def schedule_refresh_next_fire(*, schedules: Iterable[Schedule]) -> None:
    """Recompute next_fire_at from now, e.g. after their calendar changed, and wake the beats.

    Schedules with the same rule share its engine trigger and its answer (as a dispatch batch
    does), and the rows are written by one statement: a calendar's edit refreshes all of its
    schedules inside the request."""
    now = timezone.now()
    trigger_of = _batch_triggers()
    changed = list(schedules)
    for schedule in changed:
        shared = trigger_or_400(lambda: trigger_of(schedule))  # noqa: B023 - called at once
        schedule.next_fire_at = _next_fire(schedule, now=now, trigger=shared)
        schedule.updated_at = now
    bulk_update_columns(Schedule, changed, ["next_fire_at", "updated_at"])
    if changed:
        beats_wake()


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    # Under the row lock, like every other writer of a schedule's events: an update committing
    # meanwhile gets the earlier event id, so the relay publishes it before this one.
    locked = Schedule.objects.select_for_update().filter(pk=schedule.pk).first()
    if locked is None:  # deleted meanwhile
        return
    _schedule_event(locked, "deleted")
    locked.delete()


# --- Dispatch: due schedules become runs --------------------------------------------------------

# Slots one schedule may produce in one dispatch: a catch-up after a long outage is bounded, and
# what lies beyond is skipped (RUN_ALL) or recorded as missed up to this many rows.
MAX_SLOTS_PER_DISPATCH = 1000
RUN_ALL_CAP = 100


def _jitter(schedule: Schedule) -> timedelta:
    """A fixed offset in [0, jitter_seconds] derived from the schedule's id: the same on every
    beat and every day, so schedules "on the hour" spread out without drifting."""
    if not schedule.jitter_seconds:
        return timedelta(0)
    digest = hashlib.sha256(str(schedule.pk).encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:4], "big") % (schedule.jitter_seconds + 1))


@dataclass
class _Plan:
    runs: list[Run]
    missed: list[Run]


def _plan_slots(schedule: Schedule, now: datetime, active: int, trigger: Trigger) -> _Plan:
    """Runs for the due slots of one schedule, by its misfire and overlap policies; advances
    its next_fire_at and last_fired_at."""
    assert schedule.next_fire_at is not None
    jitter = _jitter(schedule)
    grace = timedelta(seconds=schedule.misfire_grace_seconds)
    slots: list[datetime] = []
    slot: datetime | None = schedule.next_fire_at - jitter
    fixed_delay = schedule.trigger.get("type") == "FIXED_DELAY"
    while slot is not None and slot + jitter <= now and len(slots) < MAX_SLOTS_PER_DISPATCH:
        slots.append(slot)
        # A fixed delay's next slot follows the run's finish, not the slot.
        slot = None if fixed_delay else next_after(trigger, slot)
    if slot is not None and slot + jitter <= now:  # more than the bound: jump to the present
        slot = next_after(trigger, now - jitter)
    schedule.next_fire_at = slot + jitter if slot is not None else None
    schedule.last_fired_at = slots[-1] if slots else schedule.last_fired_at

    to_run: list[datetime] = slots
    missed: list[tuple[datetime, str]] = []
    policy = schedule.misfire_policy
    if policy == MisfirePolicy.RUN_ALL and len(slots) > RUN_ALL_CAP:
        to_run = slots[-RUN_ALL_CAP:]
        missed = [(s, f"catch-up capped at the latest {RUN_ALL_CAP} slots") for s in slots[:-RUN_ALL_CAP]]
    elif policy == MisfirePolicy.RUN_ONCE and len(slots) > 1:
        to_run = slots[-1:]
        missed = [(s, f"coalesced into the run of {slots[-1].isoformat()}") for s in slots[:-1]]
    elif policy == MisfirePolicy.SKIP:
        to_run = [s for s in slots if now - (s + jitter) <= grace]
        missed = [
            (s, f"late by more than the misfire grace of {schedule.misfire_grace_seconds} s")
            for s in slots
            if now - (s + jitter) > grace
        ]

    plan = _Plan(runs=[], missed=[])
    payload = _run_payload(schedule)
    for slot_at, reason in missed:
        plan.missed.append(_run(schedule, slot_at, payload, RunStatus.MISSED, reason))
    for slot_at in to_run:
        status, reason = _overlap(schedule, active)
        plan.runs.append(_run(schedule, slot_at, payload, status, reason))
        if status == RunStatus.QUEUED:
            active += 1
    if fixed_delay and not any(run.status == RunStatus.QUEUED for run in plan.runs):
        # No run will finish to set the next slot (this one was missed or skipped): the delay
        # counts from now, or the schedule would never fire again.
        after = next_after(trigger, now)
        schedule.next_fire_at = after + jitter if after is not None else None
    return plan


def _overlap(schedule: Schedule, active: int) -> tuple[str, str]:
    """The status a new slot's run gets, given the schedule's runs that have not finished:
    QUEUED when it is to run (its message goes out once the batch commits), or SKIPPED."""
    policy = schedule.overlap_policy
    if policy == OverlapPolicy.SKIP and active:
        return RunStatus.SKIPPED, "the previous run is still active (overlap policy SKIP)"
    if policy == OverlapPolicy.BUFFER_ONE and active >= 2:
        return RunStatus.SKIPPED, "one run is active and one already waits (overlap policy BUFFER_ONE)"
    return RunStatus.QUEUED, ""


@functools.cache
def _run_defaults() -> tuple[dict[str, Any], dict[str, Callable[[], Any]]]:
    """A run's column defaults in the model's field order, and the callables that make a fresh
    one for each run (a new id, a new dict)."""
    fields = Run._meta.concrete_fields
    made = {field.attname: field.default for field in fields if field.has_default() and callable(field.default)}
    return {field.attname: None if field.attname in made else field.get_default() for field in fields}, made


def _run(schedule: Schedule, slot: datetime, payload: dict[str, Any], status: str, reason: str) -> Run:
    """A slot's run, built from positional values as ``Model.from_db`` builds a row's instance:
    Django's keyword construction, a default looked up per field, cost 15 µs a run (a tenth of
    the beat's time in a burst, bench/beat.py), this 9 µs with the slot's id and time."""
    now = timezone.now()
    defaults, made = _run_defaults()
    values: dict[str, Any] = {
        **defaults,
        **{name: make() for name, make in made.items()},
        "tenant_id": schedule.tenant_id,
        "job_id": schedule.job_id,
        "schedule_id": schedule.pk,
        "kind": RunKind.SCHEDULED,
        "scheduled_for": slot,
        "status": status,
        "payload": payload,
        "reason": reason,
        "queued_at": now if status == RunStatus.QUEUED else None,
        "finished_at": now if status in (RunStatus.MISSED, RunStatus.SKIPPED) else None,
    }
    # django-stubs takes a starred argument for the first field alone
    return Run(*values.values())  # type: ignore[misc]


def _cancel_previous(schedules: list[Schedule]) -> None:
    """CANCEL_PREVIOUS: a new slot cancels its schedule's runs that have not started."""
    ids = [s.pk for s in schedules if s.overlap_policy == OverlapPolicy.CANCEL_PREVIOUS]
    if ids:
        Run.objects.filter(
            schedule_id__in=ids, status__in=(RunStatus.SCHEDULED, RunStatus.QUEUED, RunStatus.RETRYING)
        ).update(
            status=RunStatus.CANCELLED,
            reason="cancelled by a newer slot (overlap policy CANCEL_PREVIOUS)",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )


class _SharedTrigger:
    """An engine trigger and the fires it has answered, shared by the schedules of one dispatch
    batch with the same rule: schedules due at the same moment mostly share their rule ("on the
    hour"), and a trigger is a pure value, so each rule is built and asked once per batch."""

    def __init__(self, trigger: Trigger) -> None:
        self.trigger = trigger
        self.fires: dict[datetime, Fire | None] = {}

    def next_fire(self, after: datetime) -> Fire | None:
        if after not in self.fires:
            self.fires[after] = self.trigger.next_fire(after)
        return self.fires[after]


def _batch_triggers() -> Callable[[Schedule], _SharedTrigger]:
    """``trigger_of(schedule)`` for one batch (one transaction: calendars cannot change under it)."""
    shared: dict[tuple[Any, ...], _SharedTrigger] = {}

    def trigger_of(schedule: Schedule) -> _SharedTrigger:
        key = (
            json.dumps(schedule.trigger, sort_keys=True),
            schedule.timezone,
            schedule.calendar_id,
            schedule.calendar_policy,
            schedule.start_at,
            schedule.end_at,
        )
        if key not in shared:
            shared[key] = _SharedTrigger(schedule_trigger(schedule))
        return shared[key]

    return trigger_of


def schedule_dispatch_due(*, now: datetime, limit: int = 500) -> list[UUID]:
    """Claim up to ``limit`` due schedules, write their slots' runs, advance them, commit, and
    enqueue the runs after the commit. Returns the ids of the runs to execute.

    The runs to execute are written ``QUEUED`` with a marker of their batch, which goes once their
    messages are sent (:func:`runs.services.runs_send_on_commit`): a beat that dies in between
    leaves the marker, and the sweeper sends them.

    Several beats may call this at once: ``SKIP LOCKED`` hands each due schedule to one of them,
    and the run ledger's unique ``(schedule, scheduled_for)`` refuses a second run for a slot
    whatever happens (a stale beat, a clock skew, a retry after a lost commit).
    """
    # The beat calls this only when its probe saw a due schedule (schedules.selectors.beat_probe),
    # so there is no probe of its own here: it was a round trip on every dispatching tick.
    due = Schedule.objects.filter(enabled=True, next_fire_at__lte=now)
    with transaction.atomic():
        schedules = list(
            due.select_for_update(skip_locked=True, of=("self",))
            .select_related("calendar")
            .prefetch_related("calendar__dates")
            .order_by("next_fire_at")[:limit]
        )
        if not schedules:
            return []
        # One instance per job, not per schedule: a batch's schedules share a few jobs.
        jobs = Job.objects.in_bulk({schedule.job_id for schedule in schedules})
        for schedule in schedules:
            schedule.job = jobs[schedule.job_id]
        needs_active = [s.pk for s in schedules if s.overlap_policy in (OverlapPolicy.SKIP, OverlapPolicy.BUFFER_ONE)]
        active = (
            dict(
                Run.objects.filter(schedule_id__in=needs_active, status__in=ACTIVE_STATUSES)
                .values_list("schedule_id")
                .annotate(count=Count("id"))
            )
            if needs_active
            else {}
        )
        _cancel_previous(schedules)
        runs: list[Run] = []
        trigger_of = _batch_triggers()
        for schedule in schedules:
            try:
                plan = _plan_slots(schedule, now, active.get(schedule.pk, 0), trigger_of(schedule))
            except (InvalidTrigger, InvalidCalendar) as exc:
                # A rule that no longer reads (a holidays upgrade dropped its market): pause it
                # rather than let it block the queue; the event tells its owner.
                schedule.enabled = False
                schedule.next_fire_at = None
                _schedule_event(schedule, "disabled")
                logger.warning("schedule %s disabled: %s", schedule.pk, exc)
                continue
            runs += plan.runs + plan.missed
        written = bulk_insert_new(Run, runs)
        events_record(
            [
                run_event_build(run=run, event="missed", reason=run.reason)
                for run in runs
                if run.pk in written and run.status == RunStatus.MISSED
            ]
        )
        for run in runs:
            if run.pk in written and run.status in (RunStatus.MISSED, RunStatus.SKIPPED):
                metrics.run_recorded_final(tenant_id=run.tenant_id, job_key=jobs[run.job_id].key, status=run.status)
        _advance(schedules)
        routes = [run_route(r.pk, jobs[r.job_id]) for r in runs if r.pk in written and r.status == RunStatus.QUEUED]
        runs_send_on_commit(routes=routes)
    return [pk for pk, _, _ in routes]


def _advance(schedules: list[Schedule]) -> None:
    """Write the batch's next_fire_at, last_fired_at and enabled in one statement."""
    bulk_update_columns(Schedule, schedules, ["next_fire_at", "last_fired_at", "enabled"])


def schedule_next_due() -> datetime | None:
    """When the earliest enabled schedule is due (one index probe)."""
    return selectors.schedules_due_times().first()


def beat_lease_acquire(*, holder: str, ttl: timedelta, name: str = "beat") -> int | None:
    """Take or renew the lease; the fencing token when ``holder`` leads, else None.

    One conditional UPDATE decides, against the database's clock, so beats with skewed clocks
    agree: the current holder renews; anyone takes an expired lease, bumping the token.
    On PostgreSQL this is one round trip, as it runs on every tick of every beat.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {BeatLease._meta.db_table} AS lease
                    (name, holder, token, acquired_at, renewed_at, expires_at)
                VALUES (%s, %s, 1, statement_timestamp(), statement_timestamp(),
                        statement_timestamp() + make_interval(secs => %s))
                ON CONFLICT (name) DO UPDATE SET
                    token = CASE WHEN lease.holder = excluded.holder THEN lease.token ELSE lease.token + 1 END,
                    acquired_at = CASE WHEN lease.holder = excluded.holder THEN lease.acquired_at
                                       ELSE excluded.acquired_at END,
                    holder = excluded.holder,
                    renewed_at = excluded.renewed_at,
                    expires_at = excluded.expires_at
                WHERE lease.holder = excluded.holder OR lease.expires_at IS NULL
                    OR lease.expires_at < excluded.renewed_at
                RETURNING lease.token
                """,
                [name, holder, ttl.total_seconds()],
            )
            row = cursor.fetchone()
        return row[0] if row else None
    BeatLease.objects.get_or_create(name=name)
    taken = BeatLease.objects.filter(
        Q(holder=holder) | Q(expires_at__isnull=True) | Q(expires_at__lt=Now()), name=name
    ).update(
        token=Case(When(holder=holder, then=F("token")), default=F("token") + 1),
        acquired_at=Case(When(holder=holder, then=F("acquired_at")), default=Now()),
        holder=holder,
        renewed_at=Now(),
        expires_at=Now() + ttl,
    )
    if not taken:
        return None
    return BeatLease.objects.values_list("token", flat=True).get(name=name)


def beat_lease_release(*, holder: str, name: str = "beat") -> None:
    BeatLease.objects.filter(name=name, holder=holder).update(expires_at=Now())


# --- Manual trigger and backfill --------------------------------------------------------------

BACKFILL_MODES = ("missing", "failed", "all")
# Slots a backfill may touch at once (settings.BACKFILL_MAX_SLOTS overrides it).
BACKFILL_MAX_SLOTS = 1000
_NOT_EXECUTED = (RunStatus.MISSED, RunStatus.SKIPPED)
_UNSUCCESSFUL = (RunStatus.FAILED, RunStatus.DEAD, RunStatus.CANCELLED)


def _run_payload(schedule: Schedule, override: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**schedule.job.payload, **schedule.payload, **(override or {})}


@transaction.atomic
def schedule_trigger_now(
    *, schedule: Schedule, payload: dict[str, Any] | None = None, idempotency_key: str | None = None
) -> tuple[Run, bool]:
    """Run the schedule's job now, outside its slots. Returns (run, created).

    With an idempotency key, a repeated request returns the run the first one made; a key
    already used for another schedule is a conflict. A paused schedule can still be triggered.
    """
    if idempotency_key:
        existing = Run.objects.filter(tenant_id=schedule.tenant_id, idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.schedule_id != schedule.pk:
                raise Conflict("This Idempotency-Key was already used for another schedule.")
            return existing, False
    run = Run(
        tenant_id=schedule.tenant_id,
        job_id=schedule.job_id,
        schedule=schedule,
        kind=RunKind.MANUAL,
        scheduled_for=timezone.now(),
        status=RunStatus.SCHEDULED,
        payload=_run_payload(schedule, payload),
        idempotency_key=idempotency_key or None,
    )
    try:
        with transaction.atomic():
            run.save()
    except IntegrityError:  # the same key, sent twice at once: the other request won
        existing = Run.objects.get(tenant_id=schedule.tenant_id, idempotency_key=idempotency_key)
        if existing.schedule_id != schedule.pk:
            raise Conflict("This Idempotency-Key was already used for another schedule.") from None
        return existing, False
    transaction.on_commit(lambda: run_enqueue(run_ids=[run.pk]))
    return run, True


@dataclass(frozen=True)
class BackfillSlot:
    scheduled_for: datetime
    action: str  # "create", "rerun" or "keep"
    run: Run | None


def schedule_backfill(
    *, schedule: Schedule, start: datetime, end: datetime, mode: str = "missing", dry_run: bool = False
) -> list[BackfillSlot]:
    """Runs of kind BACKFILL for the schedule's slots in [start, end] (both included).

    ``missing``: slots with no run, or whose run never executed (MISSED, SKIPPED); ``failed``:
    slots whose run FAILED, went DEAD or was CANCELLED; ``all``: every slot whose run is not
    active. A slot's existing run is run again as a new attempt series (its history stays);
    a slot without one gets a new run. Idempotent: a second call finds nothing left to do.
    """
    errors: dict[str, list[str]] = {}
    if mode not in BACKFILL_MODES:
        errors["mode"] = [f"Must be one of {', '.join(BACKFILL_MODES)}."]
    if end < start:
        errors["end"] = ["Must not be before start."]
    elif end > timezone.now():
        errors["end"] = ["Must not be in the future: future slots are the beat's to run."]
    if schedule.trigger.get("type") == "FIXED_DELAY":
        errors["schedule"] = ["A FIXED_DELAY schedule has no slots: its runs follow each other's finish."]
    if errors:
        raise ValidationFailed(errors)
    if not schedule.enabled:
        raise Conflict("The schedule is paused; resume it before backfilling.")
    limit = getattr(settings, "BACKFILL_MAX_SLOTS", BACKFILL_MAX_SLOTS)
    trigger = _engine_trigger(schedule)
    jitter_free: list[datetime] = []
    slot = next_after(trigger, start - timedelta(microseconds=1))
    while slot is not None and slot <= end:
        if len(jitter_free) == limit:
            raise ValidationFailed(
                {"end": [f"The range holds more than {limit} slots; backfill it in smaller ranges."]}
            )
        jitter_free.append(slot)
        slot = next_after(trigger, slot)

    with transaction.atomic():
        existing = {
            run.scheduled_for: run
            for run in Run.objects.select_for_update().filter(
                schedule=schedule, kind__in=SLOT_KINDS, scheduled_for__in=jitter_free
            )
        }
        wanted = {"missing": _NOT_EXECUTED, "failed": _UNSUCCESSFUL, "all": FINAL_STATUSES}[mode]
        plan: list[BackfillSlot] = []
        for at in jitter_free:
            run = existing.get(at)
            if run is None:
                plan.append(BackfillSlot(at, "create" if mode in ("missing", "all") else "keep", None))
            elif run.status in wanted:
                plan.append(BackfillSlot(at, "rerun", run))
            else:
                plan.append(BackfillSlot(at, "keep", run))
        if dry_run:
            return plan
        created = [
            Run(
                tenant_id=schedule.tenant_id,
                job_id=schedule.job_id,
                schedule=schedule,
                kind=RunKind.BACKFILL,
                scheduled_for=item.scheduled_for,
                status=RunStatus.SCHEDULED,
                payload=_run_payload(schedule),
            )
            for item in plan
            if item.action == "create"
        ]
        try:
            with transaction.atomic():
                Run.objects.bulk_create(created)
        except IntegrityError:  # the beat or another backfill wrote one of these slots just now
            raise Conflict("Another writer created runs for some of these slots meanwhile; try again.") from None
        rerun = [item.run.pk for item in plan if item.action == "rerun" and item.run is not None]
        runs_retry(run_ids=rerun, statuses=wanted)
        by_slot = {run.scheduled_for: run for run in created}
        by_slot |= {run.scheduled_for: run for run in Run.objects.filter(pk__in=rerun)}
        plan = [
            BackfillSlot(item.scheduled_for, item.action, by_slot.get(item.scheduled_for, item.run)) for item in plan
        ]
        new_ids = [run.pk for run in created]
        transaction.on_commit(lambda: run_enqueue(run_ids=new_ids))
    return plan


def trigger_or_400(build: Callable[[], Trigger]) -> Trigger:
    """Build a trigger, turning the engine's refusals into 400s on the right fields."""
    try:
        return build()
    except InvalidTrigger as exc:
        raise ValidationFailed(_prefixed("trigger", exc.errors)) from None
    except InvalidCalendar as exc:
        raise ValidationFailed({"calendar": [str(exc)]}) from None


def _engine_trigger(schedule: Schedule) -> Trigger:
    return trigger_or_400(lambda: schedule_trigger(schedule))


# --- Explain: why did, will, or didn't a schedule fire ------------------------------------------

# How far back `last` looks at most, and how many slots it may list.
EXPLAIN_LOOKBACK = timedelta(days=366)
EXPLAIN_MAX_COUNT = 50
# A due slot not dispatched this long after its time means no beat is dispatching it.
EXPLAIN_OVERDUE = timedelta(seconds=60)
EXPLAIN_STATES = ("active", "paused", "not_started", "ended", "exhausted", "invalid")
EXPLAIN_OUTCOMES = ("fired", "missed", "skipped_overlap", "skipped_calendar", "paused", "not_recorded")

_MISFIRE_TEXT = {
    MisfirePolicy.RUN_ONCE: "When several slots are due at once (the beat was down or behind), only the latest "
    "runs; the earlier ones are recorded MISSED (coalesced).",
    MisfirePolicy.RUN_ALL: "When several slots are due at once, each runs, the latest {cap} at most; older ones "
    "are recorded MISSED.",
    MisfirePolicy.SKIP: "A slot dispatched more than {grace} s (misfire_grace_seconds) after its time is "
    "recorded MISSED instead of running.",
}
_OVERLAP_TEXT = {
    OverlapPolicy.ALLOW: "A slot runs even while earlier runs are still active.",
    OverlapPolicy.SKIP: "A slot whose previous run is still active is recorded SKIPPED instead of running.",
    OverlapPolicy.BUFFER_ONE: "At most one run is active and one waits: a slot beyond that is recorded SKIPPED.",
    OverlapPolicy.CANCEL_PREVIOUS: "A new slot cancels the schedule's runs that have not started (CANCELLED).",
}


@dataclass(frozen=True)
class ScheduleState:
    code: str  # one of EXPLAIN_STATES
    message: str
    errors: dict[str, list[str]]


@dataclass(frozen=True)
class ExplainedSlot:
    """One slot of the recent past and what became of it. Times are in the schedule's zone."""

    slot: datetime
    outcome: str  # one of EXPLAIN_OUTCOMES
    reason: str
    run: Run | None = None
    moved_from: str | None = None  # the day (calendar) or wall time (DST gap) the rule alone gives
    moved_to: datetime | None = None  # where the calendar policy moved a skipped slot


@dataclass(frozen=True)
class UpcomingSkip:
    slot: datetime  # the rule's own fire, on a non-business day
    day: date
    reason: str
    moved_to: datetime | None
    message: str


@dataclass(frozen=True)
class PolicyExplanation:
    policy: str
    description: str
    grace_seconds: int | None = None  # misfire
    active_runs: int | None = None  # overlap


@dataclass(frozen=True)
class JitterExplanation:
    seconds: int
    max_seconds: int
    description: str


@dataclass
class ScheduleExplanation:
    """What :func:`schedule_explain` finds. ``trigger`` and ``next_after`` are for the preview
    of the next fires (the API's preview helper renders them into ``preview``)."""

    timezone: str
    now: datetime
    state: ScheduleState
    last: list[ExplainedSlot]
    last_since: datetime
    manual_runs: list[Run]
    trigger: Trigger | None
    next_after: datetime
    calendar_skips: list[UpcomingSkip]
    calendar_skips_complete: bool
    jitter: JitterExplanation | None
    misfire: PolicyExplanation
    overlap: PolicyExplanation
    notes: list[str]
    preview: dict[str, Any]  # {"fire_times": [...], "details": [...]}


@dataclass(frozen=True)
class _Rules:
    spec: TriggerSpec
    calendar: BusinessCalendar | None
    trigger: Trigger  # with the calendar policy and the bounds: what the beat fires
    raw: Trigger  # the rule alone (and its bounds): its own slots, before the calendar policy


def _explain_rules(schedule: Schedule) -> _Rules:
    """The schedule's triggers with and without its calendar policy; ValidationFailed (with
    the fields at fault) when they cannot be built."""
    calendars: list[BusinessCalendar | None] = []

    def with_policy() -> Trigger:
        calendars.append(schedule_business_calendar(schedule))
        return schedule_trigger(schedule, calendar=calendars[0])

    trigger = trigger_or_400(with_policy)
    spec = parse_trigger(schedule.trigger)
    calendar = calendars[0]
    # A BUSINESS_DAY rule counts on its calendar and has no calendar policy: it keeps it.
    raw = trigger_or_400(
        lambda: build_trigger(
            spec,
            timezone=schedule.timezone,
            calendar=calendar if isinstance(spec, BusinessDaySpec) else None,
            start_at=schedule.start_at,
            end_at=schedule.end_at,
        )
    )
    return _Rules(spec, calendar, trigger, raw)


def schedule_explain(*, schedule: Schedule, count: int, now: datetime) -> ScheduleExplanation:
    """Why the schedule did, will, or did not fire: its state, its last ``count`` slots as of
    ``now`` and what became of each, and what applies to its next fires.

    Bounded whatever the history: the rule's slots are found by :func:`fires_before` within
    ``EXPLAIN_LOOKBACK`` and a budget of engine calls, and the runs read are those of that
    window, ``count`` at most of each kind.
    """
    if not 1 <= count <= EXPLAIN_MAX_COUNT:
        raise ValidationFailed({"count": [f"Must be between 1 and {EXPLAIN_MAX_COUNT}."]})
    tz = ZoneInfo(schedule.timezone)
    jitter = _jitter(schedule)
    notes: list[str] = []
    rules: _Rules | None = None
    errors: dict[str, list[str]] = {}
    try:
        rules = _explain_rules(schedule)
    except ValidationFailed as exc:
        errors = exc.errors

    # The slots of the rule alone and those the beat fires (its calendar policy applied), in
    # the window (since, now] that holds the rule's last `count` slots.
    since = now - EXPLAIN_LOOKBACK
    raw_fires: dict[datetime, Fire] = {}
    fired: dict[datetime, Fire] = {}
    if rules is not None and isinstance(rules.spec, FixedDelaySpec):
        notes.append(
            "A FIXED_DELAY schedule has no slots of its own (each follows the previous run's finish): "
            "`last` lists its runs."
        )
    elif rules is not None:
        looked = fires_before(rules.raw, now, count, earliest=since)
        since = looked.since
        beat = fires_before(rules.trigger, now, count, earliest=since)
        raw_fires = {fire.at: fire for fire in looked.fires}
        fired = {fire.at: fire for fire in beat.fires}
        if not (looked.complete and beat.complete):
            notes.append("The look-back reached its work limit: `last` may leave out older slots.")
    runs = selectors.schedule_runs(schedule=schedule).filter(scheduled_for__gt=since, scheduled_for__lte=now)
    slot_runs = {run.scheduled_for: run for run in runs.filter(kind__in=SLOT_KINDS)[:count]}
    manual_runs = list(runs.filter(kind=RunKind.MANUAL)[:count])

    changes = selectors.schedule_enabled_changes(schedule=schedule, since=since)
    if not schedule.enabled:  # paused since its last change at the latest
        changes = sorted([*changes, (schedule.updated_at, False)])
    last = [
        _explain_slot(
            at,
            schedule=schedule,
            rules=rules,
            run=slot_runs.get(at),
            raw=raw_fires.get(at),
            fire=fired.get(at),
            changes=changes,
            jitter=jitter,
            now=now,
            tz=tz,
        )
        for at in sorted(set(raw_fires) | set(fired) | set(slot_runs))[-count:]
    ]

    next_fire = None
    skips: list[UpcomingSkip] = []
    skips_complete = True
    if rules is not None:
        next_fire = first_fire(
            rules.spec, rules.trigger, now=now, created_at=schedule.created_at or now, start_at=schedule.start_at
        )
        upcoming = fires(rules.trigger, now, count)  # the range the preview of `next` covers
        if upcoming and rules.calendar is not None and not isinstance(rules.spec, BusinessDaySpec | FixedDelaySpec):
            skips, skips_complete = _upcoming_skips(schedule, rules, now, upcoming[-1].at, count, tz)
        if isinstance(rules.spec, FixedDelaySpec):
            notes.append(
                "`next` assumes a run that finishes now, and each later one finishing the moment it starts: a "
                "FIXED_DELAY schedule's real fires follow each run's finish."
            )
    else:
        notes.append("The trigger cannot be evaluated (see `state.errors`): nothing will fire until it is fixed.")
    state = _explain_state(schedule, rules, next_fire, errors, jitter, now, tz)
    if state.code == "paused":
        notes.append("Paused: `next` shows the fires it would have if resumed now; none fires while it is paused.")

    active = selectors.schedule_runs(schedule=schedule).filter(status__in=ACTIVE_STATUSES).count()
    overlap_text = _OVERLAP_TEXT[OverlapPolicy(schedule.overlap_policy)]
    if active and schedule.overlap_policy != OverlapPolicy.ALLOW:
        overlap_text += f" Runs active now: {active}."
    return ScheduleExplanation(
        timezone=schedule.timezone,
        now=now.astimezone(tz),
        state=state,
        last=last,
        last_since=since.astimezone(tz),
        manual_runs=manual_runs,
        trigger=rules.trigger if rules is not None else None,
        next_after=now,
        calendar_skips=skips,
        calendar_skips_complete=skips_complete,
        jitter=_explain_jitter(schedule, jitter),
        misfire=PolicyExplanation(
            schedule.misfire_policy,
            _MISFIRE_TEXT[MisfirePolicy(schedule.misfire_policy)].format(
                cap=RUN_ALL_CAP, grace=schedule.misfire_grace_seconds
            ),
            grace_seconds=schedule.misfire_grace_seconds,
        ),
        overlap=PolicyExplanation(schedule.overlap_policy, overlap_text, active_runs=active),
        notes=notes,
        preview={"fire_times": [], "details": []},
    )


def _local(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).isoformat()


def _run_outcome(run: Run) -> tuple[str, str]:
    if run.status == RunStatus.MISSED:
        return "missed", f"Missed by the misfire policy: {run.reason or 'no reason recorded'}."
    if run.status == RunStatus.SKIPPED:
        return "skipped_overlap", f"Skipped by the overlap policy: {run.reason or 'no reason recorded'}."
    how = "Backfilled" if run.kind == RunKind.BACKFILL else "Fired"
    why = f" ({run.reason})" if run.reason else ""
    return "fired", f"{how}: run {run.pk} is {run.status}{why}."


def _paused_at(changes: list[tuple[datetime, bool]], at: datetime) -> bool:
    enabled: bool | None = None
    for when, state in changes:
        if when > at:
            break
        enabled = state
    return enabled is False


def _explain_slot(
    at: datetime,
    *,
    schedule: Schedule,
    rules: _Rules | None,
    run: Run | None,
    raw: Fire | None,
    fire: Fire | None,
    changes: list[tuple[datetime, bool]],
    jitter: timedelta,
    now: datetime,
    tz: ZoneInfo,
) -> ExplainedSlot:
    """What became of the slot at ``at``: its run if it has one, else why it has none."""
    local = at.astimezone(tz)
    moved_from = (fire.moved_from or None) if fire is not None else None
    if run is not None:
        outcome, reason = _run_outcome(run)
        if fire is not None and fire.note:
            reason += f" {fire.note}"
        if raw is None and fire is None and rules is not None:
            reason += " This instant is no slot of the current trigger: the trigger was changed since."
        return ExplainedSlot(local, outcome, reason, run=run, moved_from=moved_from)
    if schedule.created_at is not None and at < schedule.created_at:
        created = _local(schedule.created_at, tz)
        return ExplainedSlot(local, "not_recorded", f"No run: the schedule was created later, at {created}.")
    if fire is None and raw is not None and rules is not None and rules.calendar is not None:
        verdict = calendar_verdict(raw, calendar=rules.calendar, policy=schedule.calendar_policy, timezone=tz.key)
        if verdict is not None:
            if verdict.moved is None:
                reason = f"{verdict.day} is not a business day ({verdict.reason}): calendar policy SKIP drops it."
                return ExplainedSlot(local, "skipped_calendar", reason)
            moved = verdict.moved.at.astimezone(tz)
            reason = (
                f"{verdict.day} is not a business day ({verdict.reason}): calendar policy "
                f"{verdict.policy} moves it to {moved.isoformat()}."
            )
            return ExplainedSlot(local, "skipped_calendar", reason, moved_to=moved)
    if _paused_at(changes, at):
        return ExplainedSlot(
            local, "paused", "No run: the schedule was paused then; slots passed while paused are not fired."
        )
    if at + jitter > now:
        return ExplainedSlot(
            local,
            "not_recorded",
            f"No run yet: with its jitter it is dispatched at {_local(at + jitter, tz)}.",
            moved_from=moved_from,
        )
    if schedule.enabled and schedule.next_fire_at is not None and at + jitter >= schedule.next_fire_at:
        return ExplainedSlot(
            local,
            "not_recorded",
            f"No run yet: due since {_local(at + jitter, tz)} and not dispatched by a beat yet.",
            moved_from=moved_from,
        )
    return ExplainedSlot(
        local,
        "not_recorded",
        "No run recorded: no beat dispatched this slot (was the beat down, or the schedule paused or changed then?).",
        moved_from=moved_from,
    )


def _upcoming_skips(
    schedule: Schedule, rules: _Rules, after: datetime, until: datetime, limit: int, tz: ZoneInfo
) -> tuple[list[UpcomingSkip], bool]:
    assert rules.calendar is not None
    found, complete = calendar_skips(
        rules.raw,
        after,
        until,
        calendar=rules.calendar,
        policy=schedule.calendar_policy,
        timezone=schedule.timezone,
        limit=limit,
    )
    skips = []
    for skip in found:
        verdict = skip.verdict
        moved = verdict.moved.at.astimezone(tz) if verdict.moved is not None else None
        action = f"moves it to {moved.isoformat()}" if moved is not None else "drops it"
        message = f"{verdict.day} is not a business day ({verdict.reason}): calendar policy {verdict.policy} {action}."
        skips.append(UpcomingSkip(skip.fire.at.astimezone(tz), verdict.day, verdict.reason, moved, message))
    return skips, complete


def _explain_state(
    schedule: Schedule,
    rules: _Rules | None,
    next_fire: Fire | None,
    errors: dict[str, list[str]],
    jitter: timedelta,
    now: datetime,
    tz: ZoneInfo,
) -> ScheduleState:
    if rules is None:
        problems = "; ".join(f"{path}: {' '.join(messages)}" for path, messages in errors.items())
        return ScheduleState("invalid", f"Invalid: the trigger cannot be evaluated ({problems}).", errors)
    due = schedule.next_fire_at
    if schedule.enabled and due is not None and due <= now:
        # A slot the beat has yet to dispatch: it will be, whatever comes after it.
        late = " Is a beat running?" if now - due > EXPLAIN_OVERDUE else ""
        return ScheduleState("active", f"Active: due since {_local(due, tz)} and not dispatched yet.{late}", {})
    also_paused = "" if schedule.enabled else " It is also paused."
    if schedule.end_at is not None and schedule.end_at <= now:
        return ScheduleState("ended", f"Ended: its end_at {_local(schedule.end_at, tz)} has passed.{also_paused}", {})
    if next_fire is None:
        if isinstance(rules.spec, OneShotSpec):
            why = f"its one-shot time {rules.spec.run_at} has passed, so it fires no more"
        elif schedule.end_at is not None:
            why = f"no fire time is left before its end_at {_local(schedule.end_at, tz)}"
        else:
            why = "the rule has no fire time after now (its UNTIL or COUNT is spent, or the calendar leaves none)"
        return ScheduleState("exhausted", f"Exhausted: {why}.{also_paused}", {})
    if not schedule.enabled:
        return ScheduleState(
            "paused",
            "Paused (enabled is false): nothing fires until it is resumed, and then from the moment it "
            "is resumed on; slots passed while paused are not fired.",
            {},
        )
    upcoming = _local(next_fire.at, tz)
    dispatched = f", dispatched at {_local(next_fire.at + jitter, tz)} with its jitter" if jitter else ""
    if schedule.start_at is not None and schedule.start_at > now:
        return ScheduleState(
            "not_started",
            f"Not started: its start_at {_local(schedule.start_at, tz)} lies ahead; the first fire is at "
            f"{upcoming}{dispatched}.",
            {},
        )
    return ScheduleState("active", f"Active: the next fire is at {upcoming}{dispatched}.", {})


def _explain_jitter(schedule: Schedule, jitter: timedelta) -> JitterExplanation | None:
    if not schedule.jitter_seconds:
        return None
    seconds = int(jitter.total_seconds())
    return JitterExplanation(
        seconds,
        schedule.jitter_seconds,
        f"Each fire is dispatched {seconds} s after its time: a fixed offset in [0, {schedule.jitter_seconds}] s "
        "derived from the schedule's id, the same for every fire. Runs keep the fire time as their slot.",
    )
