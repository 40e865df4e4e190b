"""On PostgreSQL a claim and a finish are one statement each (runs.services._claim_in_one_statement,
_finish_in_one_statement), with the ORM path behind them for what they do not cover. These pin that
both paths write the same rows, and that the statement leaves alone what it must leave alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import services
from runs.models import Run, RunAttempt, RunKind, RunStatus
from runs.targets.base import DeliveryError, FatalError, Receipt, RetryableError
from scheduler_project.models import OutboxEvent
from schedules.models import Schedule
from tests.factories import JobFactory, RunFactory, ScheduleFactory, WorkerFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement forms are PostgreSQL's"),
]

CLAIMED_AT = datetime(2027, 3, 1, 9, 0, 0, 250000, tzinfo=UTC)
FINISHED_AT = CLAIMED_AT + timedelta(seconds=2)


def _row(instance: Any, *leave_out: str) -> dict[str, Any]:
    return {
        f.attname: getattr(instance, f.attname)
        for f in type(instance)._meta.concrete_fields
        if f.attname not in leave_out
    }


def _written(run: Run) -> dict[str, Any]:
    """Every row the execution wrote for ``run``, but for ids and the clock readings of the moment
    (``updated_at``, an event's ``occurred_at``)."""
    ids = {str(run.pk): "<run>", str(run.job_id): "<job>", str(run.schedule_id): "<schedule>"}
    run.refresh_from_db()
    events = OutboxEvent.objects.filter(aggregate_type="run", aggregate_id=str(run.pk)).order_by("id")
    return {
        "run": _row(run, "id", "schedule_id", "created_at", "updated_at"),
        "attempts": [_row(attempt, "id", "run_id") for attempt in RunAttempt.objects.filter(run=run)],
        "events": [
            {
                **_row(event, "id", "event_id", "aggregate_id", "occurred_at", "data"),
                "data": {
                    key: ids.get(value, value) if isinstance(value, str) else value for key, value in event.data.items()
                },
            }
            for event in events
        ],
    }


def _run(scenario: str, job: Any) -> Run:
    fields: dict[str, Any] = {"job": job, "status": RunStatus.QUEUED, "payload": {"day": "2027-03-01"}}
    if scenario == "manual":
        return RunFactory(
            schedule=None, kind=RunKind.MANUAL, scheduled_for=CLAIMED_AT - timedelta(microseconds=5), **fields
        )
    if scenario == "slot":
        schedule = ScheduleFactory(job=job, trigger={"version": 1, "type": "CRON", "expression": "0 9 * * *"})
        return RunFactory(schedule=schedule, scheduled_for=datetime(2027, 3, 1, 9, tzinfo=UTC), **fields)
    return RunFactory(  # a second attempt: the first one's error is still on the run when it starts
        schedule=None,
        kind=RunKind.BACKFILL,
        scheduled_for=datetime(2027, 3, 1, 8, 59, 59, 120000, tzinfo=UTC),
        attempt=1,
        started_at=CLAIMED_AT - timedelta(minutes=1),
        error_type="HTTPError",
        error_message="answered 500",
        **fields,
    )


def _execute(run: Run, outcome: Receipt | DeliveryError) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Claim and finish ``run`` at fixed times: what it came to, the rows after the claim and
    after the finish, and the statements sent."""
    with CaptureQueriesContext(connection) as queries:
        before = timezone.now()
        claim = services.run_claim(run_id=run.pk, worker_name="w1@host", now=CLAIMED_AT)
        after = timezone.now()
        assert claim is not None
        claimed = _written(run)
        # The lease runs from the database's clock, whatever the worker's (CLAIMED_AT) says.
        term = timedelta(seconds=run.job.timeout_seconds + services._lease_grace().total_seconds())
        assert before + term <= claimed["run"]["lease_expires_at"] <= after + term
        claimed["run"]["lease_expires_at"] = "the database's now + timeout + grace"
        if isinstance(outcome, Receipt):
            status = services.run_attempt_succeeded(claim=claim, receipt=outcome, now=FINISHED_AT)
        else:
            status = services.run_attempt_failed(claim=claim, error=outcome, now=FINISHED_AT)
    statements = [query["sql"] for query in queries.captured_queries if not query["sql"].startswith("PREPARE")]
    return status, [claimed, _written(run)], statements


@pytest.mark.parametrize(
    ("scenario", "outcome", "status"),
    [
        ("manual", Receipt(status=200, latency_ms=7, excerpt='{"ok": true}', detail={"sequence": 4}), "SUCCEEDED"),
        ("slot", FatalError("answered 404", status=404, latency_ms=3, excerpt="not here"), "FAILED"),
        ("second attempt", RetryableError("answered 503", status=503, retry_after=90), "RETRYING"),
    ],
)
def test_both_paths_write_the_same_rows(
    monkeypatch: pytest.MonkeyPatch, scenario: str, outcome: Receipt | DeliveryError, status: str
) -> None:
    """The same run, claimed and finished through either path, leaves the same run, attempt and
    event rows: the started event's document built in SQL (``scheduled_for`` as isoformat() writes
    it, with and without microseconds; the error of the attempt before), the worker looked up."""
    worker = WorkerFactory(name="w1@host", tenant_id="")
    job = JobFactory(backoff_strategy="FIXED", backoff_base_seconds=30, backoff_max_seconds=30, max_attempts=3)
    monkeypatch.setattr(services, "_in_one_statement", lambda: False)
    orm_status, orm_written, _ = _execute(_run(scenario, job), outcome)
    monkeypatch.undo()

    result, written, statements = _execute(_run(scenario, job), outcome)

    assert result == orm_status == status
    assert written == orm_written
    claimed = written[0]["run"]
    assert (claimed["status"], claimed["worker_id"]) == (RunStatus.RUNNING, worker.pk)
    assert written[1]["events"][0]["type"] == "scheduler.run.started"
    # Besides _written's reads, the claim and the finish: one statement each, nothing of the ORM path.
    assert [s.split()[0] for s in statements if not s.startswith("SELECT")] == ["EXECUTE", "EXECUTE"]


def test_a_duplicate_delivery_of_a_claimed_run_is_one_statement_and_changes_nothing() -> None:
    run = RunFactory(job=JobFactory(), schedule=None, status=RunStatus.QUEUED)
    assert services.run_claim(run_id=run.pk, worker_name="w1@host") is not None
    written = _written(run)

    with CaptureQueriesContext(connection) as queries:
        assert services.run_claim(run_id=run.pk, worker_name="w2@host") is None

    assert len(queries.captured_queries) == 1  # no fall back to the ORM path
    assert _written(run) == written
    assert written["run"]["status"] == RunStatus.RUNNING


def test_a_cancelled_run_is_not_claimed_and_the_orm_path_is_not_asked() -> None:
    run = services.run_cancel(run=RunFactory(job=JobFactory(), schedule=None, status=RunStatus.QUEUED))

    with CaptureQueriesContext(connection) as queries:
        assert services.run_claim(run_id=run.pk) is None

    assert [q["sql"].split()[0] for q in queries.captured_queries if not q["sql"].startswith("PREPARE")] == ["EXECUTE"]
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    assert not RunAttempt.objects.filter(run=run).exists()
    assert not OutboxEvent.objects.filter(aggregate_id=str(run.pk), type="scheduler.run.started").exists()


@pytest.mark.parametrize("status", [RunStatus.RETRYING, RunStatus.SUCCEEDED, RunStatus.DEAD])
def test_a_run_that_is_not_waiting_to_start_is_left_alone(status: str) -> None:
    run = RunFactory(job=JobFactory(), schedule=None, status=status)

    assert services.run_claim(run_id=run.pk) is None

    assert Run.objects.get(pk=run.pk).status == status
    assert not RunAttempt.objects.filter(run=run).exists()


def test_a_run_that_does_not_exist_is_not_claimed() -> None:
    assert services.run_claim(run_id=uuid.uuid4()) is None


def test_a_gated_run_is_claimed_by_the_orm_path_once_the_statement_left_it() -> None:
    job = JobFactory(concurrency_limit=1)
    run = RunFactory(job=job, schedule=None, status=RunStatus.QUEUED)

    with CaptureQueriesContext(connection) as queries:
        claim = services.run_claim(run_id=run.pk, worker_name="w1@host")

    assert claim is not None
    assert any("FOR UPDATE" in query["sql"] for query in queries.captured_queries)  # the ORM path's gate
    assert RunAttempt.objects.filter(run=run).count() == 1
    assert OutboxEvent.objects.filter(aggregate_id=str(run.pk), type="scheduler.run.started").count() == 1
    assert services.run_attempt_succeeded(claim=claim, receipt=Receipt(status=200)) == RunStatus.SUCCEEDED


def test_a_schedule_turned_fixed_delay_after_the_claim_still_gets_its_next_slot() -> None:
    """The claim read a CRON schedule; by the finish it is FIXED_DELAY and waits for this run to
    finish: the statement moves nothing, and the ORM path sets the schedule's next slot."""
    schedule = ScheduleFactory(trigger={"version": 1, "type": "CRON", "expression": "0 2 * * *"})
    run = RunFactory(schedule=schedule, job=schedule.job, status=RunStatus.QUEUED)
    claim = services.run_claim(run_id=run.pk)
    assert claim is not None
    Schedule.objects.filter(pk=schedule.pk).update(
        trigger={"version": 1, "type": "FIXED_DELAY", "delay_seconds": 600}, next_fire_at=None
    )

    assert services.run_attempt_succeeded(claim=claim, receipt=Receipt(status=200)) == RunStatus.SUCCEEDED

    run.refresh_from_db()
    assert Schedule.objects.get(pk=schedule.pk).next_fire_at == run.finished_at + timedelta(seconds=600)
    events = OutboxEvent.objects.filter(aggregate_id=str(run.pk)).values_list("type", flat=True)
    assert list(events.order_by("id")) == ["scheduler.run.started", "scheduler.run.succeeded"]


def test_a_result_for_a_run_taken_back_meanwhile_is_kept_on_the_attempt_only() -> None:
    run = RunFactory(job=JobFactory(), schedule=None, status=RunStatus.QUEUED)
    claim = services.run_claim(run_id=run.pk)
    assert claim is not None
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RETRYING, lease_expires_at=None)

    assert services.run_attempt_succeeded(claim=claim, receipt=Receipt(status=200)) == "superseded"

    assert Run.objects.get(pk=run.pk).status == RunStatus.RETRYING
    assert claim.run.status == RunStatus.RUNNING  # the claim's copy is not moved either
    assert RunAttempt.objects.get(run=run).outcome == "SUCCEEDED"
    assert not OutboxEvent.objects.filter(aggregate_id=str(run.pk), type="scheduler.run.succeeded").exists()


@pytest.mark.django_db(transaction=True)
def test_each_database_session_prepares_the_statements_again() -> None:
    job = JobFactory()
    first, second = (RunFactory(job=job, schedule=None, status=RunStatus.QUEUED) for _ in range(2))
    assert services.run_claim(run_id=first.pk) is not None
    connection.close()  # a new session: the old one's prepared statements are gone with it

    with CaptureQueriesContext(connection) as queries:
        assert services.run_claim(run_id=second.pk) is not None

    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["PREPARE", "EXECUTE"]
    assert Run.objects.get(pk=second.pk).status == RunStatus.RUNNING


def test_behind_a_pooler_that_shares_sessions_nothing_is_prepared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    run = RunFactory(job=JobFactory(), schedule=None, status=RunStatus.QUEUED)

    with CaptureQueriesContext(connection) as queries:
        claim = services.run_claim(run_id=run.pk, now=timezone.now())
        assert claim is not None
        services.run_attempt_succeeded(claim=claim, receipt=Receipt(status=200))

    statements = [query["sql"].lstrip() for query in queries.captured_queries]
    assert len(statements) == 2
    assert all(statement.startswith("WITH") for statement in statements)
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
