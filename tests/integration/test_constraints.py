"""Invariants the database itself enforces, whoever writes (services, beat, admin, a shell),
and the indexes the hot queries rely on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from calendars.models import Calendar
from runs import selectors as run_selectors
from runs.models import Run, RunKind
from schedules.models import Schedule
from tests.factories import (
    OTHER_TENANT,
    TENANT,
    CalendarDateFactory,
    CalendarFactory,
    JobFactory,
    RunFactory,
    ScheduleFactory,
)

pytestmark = pytest.mark.django_db

SLOT = datetime(2027, 3, 1, 2, tzinfo=UTC)


def _violates(constraint: str, create: Callable[[], Any]) -> None:
    """``create()`` fails on the database constraint named ``constraint`` (and nothing else)."""
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        create()
    assert excinfo.value.__cause__.diag.constraint_name == constraint


def _allowed(create: Callable[[], Any]) -> None:
    with transaction.atomic():
        create()


# --- runs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "allowed"),
    [
        (RunKind.SCHEDULED, RunKind.SCHEDULED, False),
        (RunKind.SCHEDULED, RunKind.BACKFILL, False),
        (RunKind.BACKFILL, RunKind.SCHEDULED, False),
        (RunKind.BACKFILL, RunKind.BACKFILL, False),
        (RunKind.SCHEDULED, RunKind.MANUAL, True),
        (RunKind.MANUAL, RunKind.SCHEDULED, True),
        (RunKind.MANUAL, RunKind.MANUAL, True),
    ],
    ids=[
        "scheduled_twice",
        "backfill_after_scheduled",
        "scheduled_after_backfill",
        "backfill_twice",
        "manual_after_scheduled",
        "scheduled_after_manual",
        "manual_twice",
    ],
)
def test_one_run_per_schedule_slot(first: str, second: str, allowed: bool) -> None:
    schedule = ScheduleFactory()
    RunFactory(schedule=schedule, kind=first, scheduled_for=SLOT)

    def again() -> Run:
        return RunFactory(schedule=schedule, kind=second, scheduled_for=SLOT)

    if allowed:
        _allowed(again)
        assert Run.objects.filter(schedule=schedule, scheduled_for=SLOT).count() == 2
    else:
        _violates("run_one_per_schedule_slot", again)


def test_slot_uniqueness_is_per_schedule_and_instant() -> None:
    schedule = ScheduleFactory()
    RunFactory(schedule=schedule, scheduled_for=SLOT)

    _allowed(lambda: RunFactory(schedule=schedule, scheduled_for=SLOT + timedelta(seconds=1)))
    _allowed(lambda: RunFactory(schedule=ScheduleFactory(job=schedule.job), scheduled_for=SLOT))


def test_runs_of_deleted_schedules_do_not_collide() -> None:
    """Detached runs (schedule NULL) keep their slot; NULLs never conflict."""
    job = JobFactory()
    RunFactory(schedule=None, job=job, scheduled_for=SLOT)

    _allowed(lambda: RunFactory(schedule=None, job=job, scheduled_for=SLOT))


@pytest.mark.parametrize(
    ("tenant", "key", "allowed"),
    [
        (TENANT, "kpi-2027-03-01", False),
        (OTHER_TENANT, "kpi-2027-03-01", True),
        (TENANT, "kpi-2027-03-02", True),
    ],
    ids=["same_tenant_same_key", "other_tenant_same_key", "same_tenant_other_key"],
)
def test_run_idempotency_key_unique_per_tenant(tenant: str, key: str, allowed: bool) -> None:
    RunFactory(kind=RunKind.MANUAL, idempotency_key="kpi-2027-03-01")

    def again() -> Run:
        return RunFactory(tenant_id=tenant, kind=RunKind.MANUAL, idempotency_key=key)

    if allowed:
        _allowed(again)
    else:
        _violates("run_idempotency_key_unique_per_tenant", again)


def test_runs_without_idempotency_key_are_unlimited() -> None:
    job = JobFactory()
    for _ in range(3):
        _allowed(lambda: RunFactory(schedule=None, job=job, kind=RunKind.MANUAL, idempotency_key=None))

    assert Run.objects.filter(job=job, idempotency_key__isnull=True).count() == 3


# --- jobs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenant", "allowed"), [(TENANT, False), (OTHER_TENANT, True)], ids=["same_tenant", "other_tenant"]
)
def test_job_key_unique_per_tenant(tenant: str, allowed: bool) -> None:
    JobFactory(key="analytics.kpi_rebuild")

    def again() -> Any:
        return JobFactory(tenant_id=tenant, key="analytics.kpi_rebuild")

    if allowed:
        _allowed(again)
    else:
        _violates("job_key_unique_per_tenant", again)


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"max_attempts": 0}, "job_max_attempts_positive"),
        ({"timeout_seconds": 0}, "job_timeout_positive"),
        ({"backoff_base_seconds": 60, "backoff_max_seconds": 59}, "job_backoff_cap_above_base"),
        ({"concurrency_limit": 0}, "job_concurrency_limit_positive"),
        ({"priority": 10}, "job_priority_0_9"),
    ],
    ids=["max_attempts_zero", "timeout_zero", "backoff_cap_below_base", "concurrency_limit_zero", "priority_10"],
)
def test_job_check_constraint_refuses(fields: dict[str, int], constraint: str) -> None:
    _violates(constraint, lambda: JobFactory(**fields))


@pytest.mark.parametrize(
    "fields",
    [
        {"max_attempts": 1},
        {"backoff_base_seconds": 60, "backoff_max_seconds": 60},
        {"concurrency_limit": None},
        {"concurrency_limit": 1},
        {"priority": 0},
        {"priority": 9},
    ],
    ids=[
        "max_attempts_one",
        "backoff_cap_equals_base",
        "no_concurrency_limit",
        "concurrency_limit_one",
        "priority_0",
        "priority_9",
    ],
)
def test_job_check_constraint_boundary_allowed(fields: dict[str, Any]) -> None:
    _allowed(lambda: JobFactory(**fields))


# --- schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start_at", "end_at", "allowed"),
    [
        (SLOT, SLOT - timedelta(seconds=1), False),
        (SLOT, SLOT, False),
        (SLOT, SLOT + timedelta(seconds=1), True),
        (None, SLOT, True),
        (SLOT, None, True),
    ],
    ids=["end_before_start", "end_equals_start", "end_after_start", "open_start", "open_end"],
)
def test_schedule_end_after_start(start_at: datetime | None, end_at: datetime | None, allowed: bool) -> None:
    def create() -> Schedule:
        return ScheduleFactory(start_at=start_at, end_at=end_at)

    if allowed:
        _allowed(create)
    else:
        _violates("schedule_end_after_start", create)


# --- calendars ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenant", "allowed"), [(TENANT, False), (OTHER_TENANT, True)], ids=["same_tenant", "other_tenant"]
)
def test_calendar_name_unique_per_tenant(tenant: str, allowed: bool) -> None:
    CalendarFactory(name="Bavaria")

    def again() -> Calendar:
        return CalendarFactory(tenant_id=tenant, name="Bavaria")

    if allowed:
        _allowed(again)
    else:
        _violates("calendar_name_unique_per_tenant", again)


def test_calendar_date_unique_per_calendar() -> None:
    calendar = CalendarFactory()
    CalendarDateFactory(calendar=calendar, date=date(2027, 12, 24))

    _violates("calendar_date_unique", lambda: CalendarDateFactory(calendar=calendar, date=date(2027, 12, 24)))
    _allowed(lambda: CalendarDateFactory(calendar=CalendarFactory(), date=date(2027, 12, 24)))


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"country": "US", "market": "NYSE"}, "calendar_country_or_market"),
        ({"country": "", "subdivision": "BY"}, "calendar_subdivision_needs_country"),
        ({"country": "", "subdivision": "BY", "market": "NYSE"}, "calendar_subdivision_needs_country"),
    ],
    ids=["country_and_market", "subdivision_without_country", "subdivision_with_market_only"],
)
def test_calendar_check_constraint_refuses(fields: dict[str, str], constraint: str) -> None:
    _violates(constraint, lambda: CalendarFactory(**fields))


@pytest.mark.parametrize(
    "fields",
    [
        {"country": "DE"},
        {"country": "DE", "subdivision": "BY"},
        {"country": "", "market": "NYSE"},
        {"country": ""},
    ],
    ids=["country", "country_with_subdivision", "market", "weekend_only"],
)
def test_calendar_check_constraint_allowed(fields: dict[str, str]) -> None:
    _allowed(lambda: CalendarFactory(**fields))


# --- indexes --------------------------------------------------------------------------------


def _plan(queryset: QuerySet[Any]) -> str:
    """PostgreSQL's plan for ``queryset`` with sequential scans priced out, so that the planner
    shows which index it can use even on the handful of rows a test has."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # ends with the test's transaction
    return queryset.explain()


def test_due_query_uses_schedule_due_idx() -> None:
    now = datetime(2027, 3, 1, tzinfo=UTC)
    for hours in range(-3, 3):
        ScheduleFactory(next_fire_at=now + timedelta(hours=hours), enabled=hours % 2 == 0)

    plan = _plan(Schedule.objects.filter(enabled=True, next_fire_at__lte=now).order_by("next_fire_at"))

    assert "schedule_due_idx" in plan, plan


def test_runs_list_uses_run_tenant_slot_idx() -> None:
    for tenant in (TENANT, OTHER_TENANT):
        schedule = ScheduleFactory(tenant_id=tenant)
        for day in range(5):
            RunFactory(schedule=schedule, scheduled_for=SLOT + timedelta(days=day))
    # The runs list as the API asks for it: the tenant's selector, cursor order, one page.
    queryset = run_selectors.run_list(tenant_id=TENANT).order_by("-scheduled_for", "-id")[:51]

    plan = _plan(queryset)

    assert "run_tenant_slot_idx" in plan, plan
    assert "Sort" not in plan, plan  # the index delivers the order; no sort step


def _explain(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("page", ["first", "next", "previous"], ids=["first_page", "next_page", "previous_page"])
def test_runs_api_page_queries_use_run_tenant_slot_idx(api: APIClient, page: str) -> None:
    """The queries the runs API really sends, first page and cursor pages in both directions."""
    schedule = ScheduleFactory()
    for hour in range(6):
        RunFactory(schedule=schedule, scheduled_for=SLOT + timedelta(hours=hour))
    url = "/api/v1/runs?page_size=2"
    if page != "first":
        url = api.get(url).json()["next"]
    if page == "previous":
        url = api.get(url).json()["next"]
        url = api.get(url).json()["previous"]

    with CaptureQueriesContext(connection) as queries:
        assert api.get(url).status_code == 200
    [sql] = [q["sql"] for q in queries.captured_queries if 'FROM "runs_run"' in q["sql"]]

    plan = _explain(sql)
    assert "run_tenant_slot_idx" in plan, plan
    assert "Sort" not in plan, plan
