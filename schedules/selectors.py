from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.db.models.functions import Now
from django.utils import timezone
from django_celery_beat.models import PeriodicTasks

from calendars.engine import BusinessCalendar
from calendars.selectors import calendar_business_calendar
from runs.models import Run
from runs.selectors import run_list, runs_lease_expiries, runs_retry_times
from scheduler_project.models import OutboxEvent
from schedules.engine.base import Trigger
from schedules.engine.compose import build_trigger
from schedules.engine.spec import parse_trigger
from schedules.models import BeatLease, Job, Schedule


def job_list(*, tenant_id: str) -> QuerySet[Job]:
    return Job.objects.filter(tenant_id=tenant_id)


def schedule_list(*, tenant_id: str) -> QuerySet[Schedule]:
    return Schedule.objects.filter(tenant_id=tenant_id).select_related("job", "calendar")


def schedule_business_calendar(schedule: Schedule) -> BusinessCalendar | None:
    return calendar_business_calendar(calendar=schedule.calendar) if schedule.calendar is not None else None


def schedule_trigger(schedule: Schedule, *, calendar: BusinessCalendar | None = None) -> Trigger:
    """The engine's trigger for a schedule: its rule, time zone, calendar policy and bounds."""
    return build_trigger(
        parse_trigger(schedule.trigger),
        timezone=schedule.timezone,
        calendar=calendar if calendar is not None else schedule_business_calendar(schedule),
        calendar_policy=schedule.calendar_policy,
        start_at=schedule.start_at,
        end_at=schedule.end_at,
    )


def schedule_runs(*, schedule: Schedule) -> QuerySet[Run]:
    """The schedule's runs, newest slot first, on the ``(tenant_id, schedule, -scheduled_for)``
    index: bound them by time or slice them, never read them all."""
    return run_list(tenant_id=schedule.tenant_id).filter(schedule=schedule).order_by("-scheduled_for", "-id")


_ENABLED_BY_EVENT = {"scheduler.schedule.enabled": True, "scheduler.schedule.disabled": False}
_CREATED = "scheduler.schedule.created"


def schedule_enabled_changes(*, schedule: Schedule, since: datetime, limit: int = 100) -> list[tuple[datetime, bool]]:
    """When the schedule was created, paused and resumed, from its outbox events, oldest first:
    ``(when, enabled from then on)``. The last one at or before ``since`` (the state the window
    opens with) and at most ``limit`` after it; fewer, or none, once events are purged.
    """
    events = OutboxEvent.objects.filter(
        tenant_id=schedule.tenant_id,
        aggregate_type="schedule",
        aggregate_id=str(schedule.pk),
        type__in=[_CREATED, *_ENABLED_BY_EVENT],
    ).order_by("-id")
    rows = list(events.filter(occurred_at__gt=since).values_list("occurred_at", "type", "data")[:limit])
    rows += events.filter(occurred_at__lte=since).values_list("occurred_at", "type", "data")[:1]
    changes = []
    for occurred_at, kind, data in reversed(rows):
        enabled = _ENABLED_BY_EVENT.get(kind, data.get("enabled") if isinstance(data, dict) else None)
        if isinstance(enabled, bool):
            changes.append((occurred_at, enabled))
    return changes


@dataclass(frozen=True)
class BeatLeaseState:
    """The beat leader's lease, timed by the database's clock (the clock the lease is kept by)."""

    holder: str
    token: int
    age_seconds: float  # since the holder last renewed it
    expired_for_seconds: float  # 0 while it is valid

    @property
    def valid(self) -> bool:
        return self.expired_for_seconds == 0


def beat_lease_state(*, name: str = "beat") -> BeatLeaseState | None:
    """The lease, or None when no beat ever took it. One primary-key probe."""
    row = (
        BeatLease.objects.filter(name=name, renewed_at__isnull=False, expires_at__isnull=False)
        .values("holder", "token", "renewed_at", "expires_at", db_now=Now())
        .first()
    )
    if row is None or row["renewed_at"] is None or row["expires_at"] is None:  # (None: filtered out above)
        return None
    now = row["db_now"]
    return BeatLeaseState(
        holder=row["holder"],
        token=row["token"],
        age_seconds=round(max(0.0, (now - row["renewed_at"]).total_seconds()), 3),
        expired_for_seconds=round(max(0.0, (now - row["expires_at"]).total_seconds()), 3),
    )


def schedules_due_times() -> QuerySet[Schedule, datetime | None]:
    """When the enabled schedules are due, earliest first: a ``LIMIT 1`` of it is one probe of
    schedule_due_idx, whatever the number of schedules."""
    return (
        Schedule.objects.filter(enabled=True, next_fire_at__isnull=False)
        .order_by("next_fire_at")
        .values_list("next_fire_at", flat=True)
    )


@dataclass(frozen=True)
class BeatProbe:
    """What a beat's tick needs to know, read at one instant: when the earliest schedule, retry
    and (for the leader) lapsing run lease are due, and when an operator last changed
    django-celery-beat's periodic tasks (the leader serves them). None: there is none."""

    schedule: datetime | None
    retry: datetime | None
    lease_expiry: datetime | None = None
    periodic_change: datetime | None = None

    @property
    def earliest(self) -> datetime | None:
        """The first of the three moments the beat must act at (the periodic change is none)."""
        due = [at for at in (self.schedule, self.retry, self.lease_expiry) if at is not None]
        return min(due) if due else None


def _periodic_change() -> QuerySet[PeriodicTasks, datetime | None]:
    """django-celery-beat's change marker, the row its ``PeriodicTasks.last_change()`` reads."""
    return PeriodicTasks.objects.filter(ident=1).values_list("last_update", flat=True)


def _probes(*, leader: bool) -> list[QuerySet[Any, datetime | None]]:
    probes = [schedules_due_times(), runs_retry_times()]
    if leader:  # the leader takes back runs whose lease lapsed, and serves the periodic tasks
        probes += [runs_lease_expiries(), _periodic_change()]
    return probes


@functools.cache
def _probe_statement(*, leader: bool) -> tuple[str, tuple[Any, ...]]:
    """The probes as the scalar subqueries of one ``SELECT``, compiled once per process: the
    querysets above stay their only definition, and the idle tick pays no ORM compilation."""
    columns: list[str] = []
    params: list[Any] = []
    for probe in _probes(leader=leader):
        sql, probe_params = probe[:1].query.sql_with_params()
        columns.append(f"({sql})")
        params.extend(probe_params)
    return "SELECT " + ", ".join([*columns, "statement_timestamp()"]), tuple(params)


def beat_probe(*, leader: bool) -> BeatProbe:
    """Everything a beat's tick reads besides its lease, in one round trip on PostgreSQL: each
    value is a ``LIMIT 1`` index probe, flat in the number of schedules and runs. An idle tick
    learns from it that nothing is due (no probe of its own for due schedules, due retries or
    lapsed leases) and how long to sleep. Elsewhere (SQLite) one query per value."""
    if connection.vendor == "postgresql":
        sql, params = _probe_statement(leader=leader)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            *values, database_now = cursor.fetchone()
        probe = BeatProbe(*values)
        if probe.lease_expiry is None:
            return probe
        # Leases are set and read by the database's clock (runs.services._lease_expiry); the beat
        # sleeps by its own, so the earliest one is told in the beat's time: a beat whose clock
        # runs ahead would otherwise wake over and over before the lease had lapsed.
        return replace(probe, lease_expiry=probe.lease_expiry + (timezone.now() - database_now))
    return BeatProbe(*(probe.first() for probe in _probes(leader=leader)))
