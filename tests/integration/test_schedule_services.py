"""Schedule and calendar services on real PostgreSQL: every write records its domain event in the
same transaction, a refused write leaves nothing behind, and deletes keep the run history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from calendars import services as calendar_services
from calendars.models import Calendar
from runs.models import Run
from scheduler_project.errors import Conflict, ValidationFailed
from scheduler_project.events import event_record
from scheduler_project.models import OutboxEvent
from schedules import services
from schedules.models import Schedule
from tests.factories import (
    OTHER_TENANT,
    TENANT,
    CalendarFactory,
    JobFactory,
    RunFactory,
    ScheduleFactory,
)

CRON = {"type": "CRON", "expression": "0 2 * * *"}


def _events(schedule_id: Any = None) -> list[OutboxEvent]:
    events = OutboxEvent.objects.order_by("id")
    if schedule_id is not None:
        events = events.filter(aggregate_type="schedule", aggregate_id=str(schedule_id))
    return list(events)


def _types(schedule_id: Any = None) -> list[str]:
    return [event.type for event in _events(schedule_id)]


def _schedule_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "KPI rebuild 02:00", "job": JobFactory().pk, "trigger": CRON}
    data.update(overrides)
    return data


class _Abort(Exception):
    """Raised to roll back the caller's transaction."""


# --- services -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_schedule_create_records_one_created_event() -> None:
    data = _schedule_data(timezone="Europe/Berlin")

    schedule = services.schedule_create(tenant_id=TENANT, data=data)

    [event] = _events()
    assert event.type == "scheduler.schedule.created"
    assert event.tenant_id == TENANT
    assert event.aggregate_type == "schedule"
    assert event.aggregate_id == str(schedule.pk)
    assert event.published_at is None
    assert event.data["id"] == str(schedule.pk)
    assert event.data["name"] == "KPI rebuild 02:00"
    assert event.data["job"] == str(data["job"])
    assert event.data["enabled"] is True
    assert event.data["timezone"] == "Europe/Berlin"
    assert event.data["trigger"] == schedule.trigger
    assert event.data["trigger"]["expression"] == "0 2 * * *"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "renamed"}, ["scheduler.schedule.updated"]),
        ({"enabled": True}, ["scheduler.schedule.updated"]),
        ({"enabled": False}, ["scheduler.schedule.updated", "scheduler.schedule.disabled"]),
        ({"enabled": False, "name": "paused"}, ["scheduler.schedule.updated", "scheduler.schedule.disabled"]),
    ],
    ids=["rename", "enabled_unchanged", "disable", "disable_and_rename"],
)
def test_schedule_update_records_updated_and_enabled_change(change: dict[str, Any], expected: list[str]) -> None:
    schedule = ScheduleFactory(enabled=True)

    updated = services.schedule_update(schedule=schedule, data=change)

    assert _types(schedule.pk) == expected
    for event in _events(schedule.pk):
        assert event.tenant_id == TENANT
        assert event.data["enabled"] is updated.enabled
        assert event.data["name"] == updated.name


@pytest.mark.django_db
def test_schedule_update_enable_records_enabled() -> None:
    schedule = ScheduleFactory(enabled=False)

    services.schedule_update(schedule=schedule, data={"enabled": True})

    assert _types(schedule.pk) == ["scheduler.schedule.updated", "scheduler.schedule.enabled"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("initially", "enabled", "expected"),
    [
        (True, False, ["scheduler.schedule.disabled"]),
        (False, True, ["scheduler.schedule.enabled"]),
        (True, True, []),
        (False, False, []),
    ],
    ids=["disable", "enable", "enable_enabled_is_noop", "disable_disabled_is_noop"],
)
def test_schedule_set_enabled_is_idempotent(initially: bool, enabled: bool, expected: list[str]) -> None:
    schedule = ScheduleFactory(enabled=initially, tenant_id=OTHER_TENANT)

    result = services.schedule_set_enabled(schedule=schedule, enabled=enabled)
    services.schedule_set_enabled(schedule=schedule, enabled=enabled)  # a repeat changes nothing

    assert result.enabled is enabled
    schedule.refresh_from_db()
    assert schedule.enabled is enabled
    assert _types(schedule.pk) == expected
    assert all(event.tenant_id == OTHER_TENANT for event in _events(schedule.pk))


@pytest.mark.django_db
def test_schedule_delete_records_deleted_and_keeps_runs() -> None:
    schedule = ScheduleFactory()
    runs = [RunFactory(schedule=schedule) for _ in range(3)]
    schedule_id = schedule.pk

    services.schedule_delete(schedule=schedule)

    assert not Schedule.objects.filter(pk=schedule_id).exists()
    [event] = _events(schedule_id)
    assert event.type == "scheduler.schedule.deleted"
    assert event.tenant_id == TENANT
    assert event.data["id"] == str(schedule_id)
    kept = Run.objects.filter(pk__in=[run.pk for run in runs])
    assert kept.count() == 3
    assert set(kept.values_list("schedule_id", flat=True)) == {None}
    assert set(kept.values_list("job_id", flat=True)) == {schedule.job_id}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"trigger": {"type": "CRON", "expression": "0 2 * *"}}, "trigger.expression"),
        ({"trigger": {"type": "RRULE", "rrule": "FREQ=DAILY"}}, "trigger.dtstart"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"job": "00000000-0000-0000-0000-000000000000"}, "job"),
        ({"start_at": datetime(2027, 3, 1, tzinfo=UTC), "end_at": datetime(2027, 2, 1, tzinfo=UTC)}, "end_at"),
    ],
    ids=["cron_four_fields", "rrule_without_dtstart", "unknown_timezone", "unknown_job", "end_before_start"],
)
def test_schedule_create_refused_leaves_no_row_and_no_event(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        services.schedule_create(tenant_id=TENANT, data=_schedule_data(**data))

    assert field in excinfo.value.errors
    assert not Schedule.objects.exists()
    assert _events() == []


@pytest.mark.django_db
def test_schedule_create_refuses_job_of_other_tenant() -> None:
    foreign_job = JobFactory(tenant_id=OTHER_TENANT)

    with pytest.raises(ValidationFailed) as excinfo:
        services.schedule_create(tenant_id=TENANT, data=_schedule_data(job=foreign_job.pk))

    assert "job" in excinfo.value.errors
    assert not Schedule.objects.exists()
    assert _events() == []


@pytest.mark.django_db
def test_schedule_update_refused_changes_nothing() -> None:
    schedule = ScheduleFactory(name="before")
    before = Schedule.objects.values().get(pk=schedule.pk)

    with pytest.raises(ValidationFailed):
        services.schedule_update(schedule=schedule, data={"name": "after", "timezone": "Nowhere/Nothing"})

    assert Schedule.objects.values().get(pk=schedule.pk) == before
    assert _events() == []


# --- transactions (real commits and rollbacks) ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_event_record_outside_a_transaction_raises() -> None:
    with pytest.raises(RuntimeError, match="transaction"):
        event_record(
            tenant_id=TENANT, type="scheduler.schedule.created", aggregate_type="schedule", aggregate_id=1, data={}
        )

    assert _events() == []


@pytest.mark.django_db(transaction=True)
def test_schedule_create_commits_row_and_event_together() -> None:
    schedule = services.schedule_create(tenant_id=TENANT, data=_schedule_data())

    assert Schedule.objects.filter(pk=schedule.pk).exists()
    assert _types(schedule.pk) == ["scheduler.schedule.created"]


@pytest.mark.django_db(transaction=True)
def test_schedule_create_rolled_back_by_caller_leaves_neither() -> None:
    """The event is part of the caller's transaction: no event for a change that never happened."""
    data = _schedule_data()

    def create_then_fail() -> None:
        with transaction.atomic():
            services.schedule_create(tenant_id=TENANT, data=data)
            raise _Abort

    with pytest.raises(_Abort):
        create_then_fail()

    assert not Schedule.objects.exists()
    assert _events() == []


# --- calendars ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_calendar_delete_of_calendar_in_use_conflicts_and_deletes_nothing() -> None:
    calendar = CalendarFactory()
    schedule = ScheduleFactory(calendar=calendar)

    with pytest.raises(Conflict):
        calendar_services.calendar_delete(calendar=calendar)

    assert Calendar.objects.filter(pk=calendar.pk).exists()
    assert Schedule.objects.get(pk=schedule.pk).calendar_id == calendar.pk


# --- through the API ------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_create_records_event(api: APIClient) -> None:
    job = JobFactory()

    response = api.post(
        "/api/v1/schedules",
        {"name": "KPI rebuild 02:00", "job": str(job.pk), "trigger": CRON, "timezone": "Europe/Berlin"},
        format="json",
    )

    assert response.status_code == 201, response.content
    schedule_id = response.json()["id"]
    [event] = _events(schedule_id)
    assert event.type == "scheduler.schedule.created"
    assert event.tenant_id == TENANT
    assert event.data["job"] == str(job.pk)


@pytest.mark.django_db
def test_api_refused_create_records_no_event(api: APIClient) -> None:
    response = api.post(
        "/api/v1/schedules",
        {"name": "broken", "job": str(JobFactory().pk), "trigger": {"type": "CRON", "expression": "0 2 * *"}},
        format="json",
    )

    assert response.status_code == 400
    assert "trigger.expression" in response.json()["errors"]
    assert not Schedule.objects.exists()
    assert _events() == []


@pytest.mark.django_db
def test_api_delete_keeps_runs_visible_detached(api: APIClient) -> None:
    schedule = ScheduleFactory()
    runs = {str(RunFactory(schedule=schedule).pk) for _ in range(2)}

    response = api.delete(f"/api/v1/schedules/{schedule.pk}")

    assert response.status_code == 204
    assert api.get(f"/api/v1/schedules/{schedule.pk}").status_code == 404
    listed = api.get("/api/v1/runs").json()["results"]
    assert {run["id"] for run in listed} == runs
    assert all(run["schedule"] is None for run in listed)
    assert all(run["job"] == str(schedule.job_id) for run in listed)
    assert _types(schedule.pk) == ["scheduler.schedule.deleted"]


@pytest.mark.django_db
def test_api_delete_calendar_in_use_answers_409(api: APIClient) -> None:
    calendar = CalendarFactory()
    schedule = ScheduleFactory(calendar=calendar)

    response = api.delete(f"/api/v1/calendars/{calendar.pk}")

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 409
    assert Calendar.objects.filter(pk=calendar.pk).exists()
    assert Schedule.objects.get(pk=schedule.pk).calendar_id == calendar.pk
    assert api.get(f"/api/v1/calendars/{calendar.pk}").status_code == 200


@pytest.mark.django_db
def test_api_delete_unused_calendar(api: APIClient) -> None:
    calendar = CalendarFactory()

    response = api.delete(f"/api/v1/calendars/{calendar.pk}")

    assert response.status_code == 204
    assert not Calendar.objects.filter(pk=calendar.pk).exists()
