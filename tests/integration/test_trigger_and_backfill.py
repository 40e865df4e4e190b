"""Manual trigger and backfill through the API, on real PostgreSQL and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from runs.models import Run, RunKind, RunStatus
from schedules.models import Schedule
from tests.factories import OTHER_TENANT, JobFactory, RunFactory, ScheduleFactory

pytestmark = pytest.mark.django_db(transaction=True)
HOURLY = {"version": 1, "type": "CRON", "expression": "0 * * * *"}
START = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def schedule(queue: str) -> Schedule:
    job = JobFactory(queue=queue, payload={"scope": "all", "mode": "full"})
    return ScheduleFactory(job=job, trigger=HOURLY, timezone="UTC", payload={"mode": "fast"})


def _queued(queue: str) -> int:
    return int(redis.Redis.from_url(settings.REDIS_URL).llen(queue))


def test_trigger_creates_an_enqueued_manual_run(api: APIClient, schedule: Schedule, queue: str) -> None:
    response = api.post(f"/api/v1/schedules/{schedule.pk}/trigger", {"payload": {"mode": "debug"}}, format="json")
    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert run.kind == RunKind.MANUAL
    assert run.status == RunStatus.QUEUED
    assert run.payload == {"scope": "all", "mode": "debug"}
    assert _queued(queue) == 1


def test_trigger_without_a_body_and_on_a_paused_schedule(api: APIClient, schedule: Schedule) -> None:
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)
    response = api.post(f"/api/v1/schedules/{schedule.pk}/trigger")
    assert response.status_code == 202, response.content
    assert response.json()["payload"] == {"scope": "all", "mode": "fast"}


def test_idempotency_key_returns_the_same_run(api: APIClient, schedule: Schedule, queue: str) -> None:
    headers = {"HTTP_IDEMPOTENCY_KEY": "nightly-2026-05-01"}
    first = api.post(f"/api/v1/schedules/{schedule.pk}/trigger", format="json", **headers)
    again = api.post(f"/api/v1/schedules/{schedule.pk}/trigger", format="json", **headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert Run.objects.filter(schedule=schedule).count() == 1
    assert _queued(queue) == 1
    other = ScheduleFactory(job=schedule.job, trigger=HOURLY)
    conflict = api.post(f"/api/v1/schedules/{other.pk}/trigger", format="json", **headers)
    assert conflict.status_code == 409


def test_idempotency_keys_are_per_tenant(client_for: Any, schedule: Schedule) -> None:
    foreign = ScheduleFactory(tenant_id=OTHER_TENANT, trigger=HOURLY)
    headers = {"HTTP_IDEMPOTENCY_KEY": "same-key"}
    assert client_for().post(f"/api/v1/schedules/{schedule.pk}/trigger", **headers).status_code == 202
    assert client_for(OTHER_TENANT).post(f"/api/v1/schedules/{foreign.pk}/trigger", **headers).status_code == 202


@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        ({"payload": [1]}, {}, "payload"),
        ([], {}, "non_field_errors"),
        ({"priority": 1}, {}, "priority"),
        ({}, {"HTTP_IDEMPOTENCY_KEY": "x" * 201}, "Idempotency-Key"),
    ],
    ids=["payload_not_object", "body_not_object", "unknown_field", "key_too_long"],
)
def test_trigger_bad_input(api: APIClient, schedule: Schedule, body: Any, headers: Any, field: str) -> None:
    response = api.post(f"/api/v1/schedules/{schedule.pk}/trigger", body, format="json", **headers)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Run.objects.exists()


def _backfill(api: APIClient, schedule: Schedule, **body: Any) -> Any:
    return api.post(f"/api/v1/schedules/{schedule.pk}/backfill", body, format="json")


def test_backfill_creates_one_run_per_missing_slot_and_is_idempotent(
    api: APIClient, schedule: Schedule, queue: str
) -> None:
    RunFactory(
        schedule=schedule, job=schedule.job, scheduled_for=START + timedelta(hours=1), status=RunStatus.SUCCEEDED
    )
    missed = RunFactory(
        schedule=schedule, job=schedule.job, scheduled_for=START + timedelta(hours=2), status=RunStatus.MISSED
    )
    end = START + timedelta(hours=3)
    response = _backfill(api, schedule, start=START.isoformat(), end=end.isoformat())
    assert response.status_code == 202, response.content
    actions = [(slot["scheduled_for"], slot["action"]) for slot in response.json()["slots"]]
    assert actions == [
        ("2026-05-01T00:00:00Z", "create"),
        ("2026-05-01T01:00:00Z", "keep"),
        ("2026-05-01T02:00:00Z", "rerun"),
        ("2026-05-01T03:00:00Z", "create"),
    ]
    created = Run.objects.filter(schedule=schedule, kind=RunKind.BACKFILL)
    assert sorted(run.scheduled_for for run in created) == [START, end]
    missed.refresh_from_db()
    assert missed.status == RunStatus.QUEUED
    assert missed.series == 2
    assert _queued(queue) == 3

    again = _backfill(api, schedule, start=START.isoformat(), end=end.isoformat())
    assert {slot["action"] for slot in again.json()["slots"]} == {"keep"}
    assert Run.objects.filter(schedule=schedule).count() == 4
    assert _queued(queue) == 3


def test_backfill_failed_mode_and_dry_run(api: APIClient, schedule: Schedule, queue: str) -> None:
    failed = RunFactory(schedule=schedule, job=schedule.job, scheduled_for=START, status=RunStatus.FAILED)
    body = {"start": START.isoformat(), "end": (START + timedelta(hours=1)).isoformat(), "mode": "failed"}
    dry = _backfill(api, schedule, dry_run=True, **body)
    assert dry.status_code == 200
    assert [slot["action"] for slot in dry.json()["slots"]] == ["rerun", "keep"]
    failed.refresh_from_db()
    assert failed.status == RunStatus.FAILED
    assert _queued(queue) == 0

    assert _backfill(api, schedule, **body).status_code == 202
    failed.refresh_from_db()
    assert failed.status == RunStatus.QUEUED
    assert failed.series == 2


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"start": "2026-05-02T00:00:00Z", "end": "2026-05-01T00:00:00Z"}, 400, "end"),
        ({"start": "2026-05-01T00:00:00Z", "end": "2026-08-01T00:00:00Z"}, 400, "end"),
        ({"start": "2026-05-01T00:00:00", "end": "2026-05-02T00:00:00Z"}, 400, "start"),
        ({"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z", "mode": "some"}, 400, "mode"),
        ({"end": "2026-05-02T00:00:00Z"}, 400, "start"),
        ({"start": "2026-05-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}, 400, "end"),
    ],
    ids=["reversed_range", "too_many_slots", "naive_start", "unknown_mode", "missing_start", "end_in_the_future"],
)
def test_backfill_bad_input(api: APIClient, schedule: Schedule, body: Any, status: int, field: str) -> None:
    response = _backfill(api, schedule, **body)
    assert response.status_code == status, response.content
    assert field in response.json()["errors"]
    assert not Run.objects.exists()


def test_backfill_refuses_a_paused_schedule(api: APIClient, schedule: Schedule) -> None:
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)
    response = _backfill(api, schedule, start=START.isoformat(), end=(START + timedelta(hours=1)).isoformat())
    assert response.status_code == 409
    assert not Run.objects.exists()


def test_backfill_slot_cap_is_configurable(api: APIClient, schedule: Schedule, settings: Any) -> None:
    settings.BACKFILL_MAX_SLOTS = 2
    body = {"start": START.isoformat(), "end": (START + timedelta(hours=2)).isoformat()}
    assert _backfill(api, schedule, **body).status_code == 400
    body["end"] = (START + timedelta(hours=1)).isoformat()
    assert _backfill(api, schedule, **body).status_code == 202
