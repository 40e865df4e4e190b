"""scheduler_project.bulk on PostgreSQL: bulk_insert_new writes the rows the ORM writes, skips a
row a unique constraint refuses and tells which were written; bulk_update_columns writes what the
ORM's bulk_update writes, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.forms.models import model_to_dict

from runs.models import Run, RunKind, RunStatus
from scheduler_project.bulk import bulk_insert_new, bulk_update_columns
from schedules.models import Schedule
from tests.factories import RunFactory, ScheduleFactory

SLOT = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)

# Filled in by the database or the clock, not compared.
STAMPS = ("created_at", "updated_at")


def _run(schedule: Schedule, slot: datetime, **fields: Any) -> Run:
    values: dict[str, Any] = {
        "tenant_id": schedule.tenant_id,
        "job_id": schedule.job_id,
        "schedule": schedule,
        "kind": RunKind.SCHEDULED,
        "scheduled_for": slot,
        "status": RunStatus.SCHEDULED,
        "payload": {"region": "eu"},
    }
    values.update(fields)
    return Run(**values)


def _row(run: Run) -> dict[str, Any]:
    row = model_to_dict(Run.objects.get(pk=run.pk), exclude=STAMPS)
    row["id"] = run.pk
    return row


@pytest.mark.django_db
def test_rows_come_out_as_the_orm_writes_them() -> None:
    schedule = ScheduleFactory()
    varied = [
        _run(schedule, SLOT, payload={"n": 1, "nested": {"ok": True}}, reason="", idempotency_key=None),
        _run(
            schedule,
            SLOT + timedelta(minutes=1),
            status=RunStatus.MISSED,
            payload={"n": 2},
            reason="late",
            finished_at=SLOT + timedelta(hours=1),
            idempotency_key="key-2",
        ),
        _run(schedule, SLOT + timedelta(minutes=2), payload={}, outcome={"response_status": 200}, attempt=2),
    ]
    twins = [_run(schedule, run.scheduled_for + timedelta(days=1), **_fields(run)) for run in varied]

    written = bulk_insert_new(Run, varied)
    Run.objects.bulk_create(twins)

    assert written == {run.pk for run in varied}
    for run, twin in zip(varied, twins, strict=True):
        ours, orms = _row(run), _row(twin)
        # What must differ between the twins (the slot, the id, a key unique per tenant): as given.
        for name in ("scheduled_for", "id", "idempotency_key"):
            assert (ours.pop(name), orms.pop(name)) == (getattr(run, name), getattr(twin, name))
        assert ours == orms
    stored = Run.objects.get(pk=varied[0].pk)
    assert stored.updated_at is not None
    assert stored.created_at == varied[0].created_at  # auto_now_add set on the instance, as the ORM does


def _fields(run: Run) -> dict[str, Any]:
    return {
        "status": run.status,
        "payload": run.payload,
        "reason": run.reason,
        "finished_at": run.finished_at,
        "idempotency_key": f"twin-{run.idempotency_key}" if run.idempotency_key else None,
        "outcome": run.outcome,
        "attempt": run.attempt,
    }


@pytest.mark.django_db
def test_a_row_a_unique_constraint_refuses_is_skipped_and_not_reported() -> None:
    schedule = ScheduleFactory()
    existing = RunFactory(schedule=schedule, scheduled_for=SLOT, status=RunStatus.SUCCEEDED)
    again, new = _run(schedule, SLOT), _run(schedule, SLOT + timedelta(minutes=1))

    written = bulk_insert_new(Run, [again, new])

    assert written == {new.pk}
    assert set(Run.objects.filter(schedule=schedule).values_list("pk", flat=True)) == {existing.pk, new.pk}
    assert Run.objects.get(pk=existing.pk).status == RunStatus.SUCCEEDED


@pytest.mark.django_db
def test_one_row_and_columns_holding_one_value() -> None:
    schedule = ScheduleFactory()
    [run] = runs = [_run(schedule, SLOT, payload={"only": True})]

    assert bulk_insert_new(Run, runs) == {run.pk}
    assert Run.objects.get(pk=run.pk).payload == {"only": True}
    assert bulk_insert_new(Run, []) == set()


@pytest.mark.django_db
def test_equal_values_of_different_types_stay_apart() -> None:
    """True == 1 in Python; the JSON documents true and 1 are not the same."""
    schedule = ScheduleFactory()
    runs = [
        _run(schedule, SLOT, outcome=True),
        _run(schedule, SLOT + timedelta(minutes=1), outcome=1),
        _run(schedule, SLOT + timedelta(minutes=2), outcome=1.0),
    ]

    bulk_insert_new(Run, runs)

    stored = [Run.objects.get(pk=run.pk).outcome for run in runs]
    assert [(type(value), value) for value in stored] == [(bool, True), (int, 1), (float, 1.0)]


@pytest.mark.django_db
def test_a_model_with_columns_the_database_computes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Such a column would be written with the Python placeholder, not left to the database."""
    schedule = ScheduleFactory()
    monkeypatch.setattr(Run._meta.get_field("reason"), "has_db_default", lambda: True)

    with pytest.raises(NotImplementedError, match=r"runs\.Run has columns the database computes"):
        bulk_insert_new(Run, [_run(schedule, SLOT)])
    assert not Run.objects.filter(schedule=schedule).exists()


@pytest.mark.django_db
def test_bulk_update_columns_writes_the_fields_named_as_bulk_update_does() -> None:
    schedule = ScheduleFactory()
    ours = [
        RunFactory(schedule=schedule, job=schedule.job, scheduled_for=SLOT + timedelta(minutes=n)) for n in range(3)
    ]
    orms = [
        RunFactory(schedule=schedule, job=schedule.job, scheduled_for=SLOT + timedelta(days=1, minutes=n))
        for n in range(3)
    ]
    changes: list[dict[str, Any]] = [
        {"status": RunStatus.QUEUED, "payload": {"n": 1, "nested": {"ok": True}}, "queued_at": SLOT, "reason": ""},
        {"status": RunStatus.SKIPPED, "payload": {}, "queued_at": None, "reason": "overlap"},
        {"status": RunStatus.QUEUED, "payload": {"n": 3}, "queued_at": SLOT + timedelta(hours=1), "reason": "x"},
    ]
    for runs in (ours, orms):
        for run, change in zip(runs, changes, strict=True):
            for name, value in change.items():
                setattr(run, name, value)
            run.attempt = 7  # changed in memory, not named: stays as stored
    fields = ["status", "payload", "queued_at", "reason"]

    bulk_update_columns(Run, ours, fields)
    Run.objects.bulk_update(orms, fields)

    def stored(run: Run) -> dict[str, Any]:
        return {k: v for k, v in _row(run).items() if k not in ("id", "scheduled_for")}

    assert [stored(run) for run in ours] == [stored(run) for run in orms]
    assert [stored(run)["payload"] for run in ours] == [change["payload"] for change in changes]
    assert {stored(run)["attempt"] for run in ours} == {0}
