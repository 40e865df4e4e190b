"""Execution on real Celery workers (prefork), PostgreSQL, Redis, NATS and an HTTP receiver that
checks every signature; a real beat where retries are due or lost runs must be taken back.

Jobs back off FIXED by 1 s and leases have a grace of 2 s (``RUN_LEASE_GRACE_SECONDS``), so
retries and recoveries happen within seconds; every wait polls, none sleeps for its worst case.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from kombu import Connection

from runs.models import AttemptOutcome, DeadLetter, Run, RunAttempt, RunKind, RunStatus
from runs.routing import run_queue
from runs.services import run_enqueue
from scheduler_project.models import OutboxEvent
from tests.e2e.harness import Nats, Processes, Receiver, attempts, broker_purge, enqueue, http_job, wait_final, wait_for
from tests.factories import JobFactory, RunFactory, ScheduleFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver(receiver: Receiver) -> Iterator[Receiver]:
    """The shared receiver, and every request it got must have been signed."""
    yield receiver
    unsigned = [r.key for r in receiver.requests if not r.signature_ok]
    assert not unsigned, f"requests without a valid signature: {unsigned}"


@pytest.fixture
def processes(tmp_path: Path, queue: str) -> Iterator[Processes]:
    """Started after (so stopped before) ``queue``'s purge: no worker re-declares what it removed."""
    running = Processes(tmp_path, RUN_LEASE_GRACE_SECONDS="2")
    yield running
    running.stop()


@pytest.fixture
def nats_client() -> Iterator[Nats]:
    assert settings.NATS_URL, "the EVENT target tests need NATS_URL (nats://127.0.0.1:4222, JetStream on)"
    client = Nats(settings.NATS_URL)
    yield client
    client.close()


# --- helpers --------------------------------------------------------------------------------------


def events(run: Run, event: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(run.pk), type=f"scheduler.run.{event}").order_by("id"))


# --- HTTP targets ---------------------------------------------------------------------------------


def test_a_run_is_delivered_signed_once_and_succeeds(processes: Processes, receiver: Receiver, queue: str) -> None:
    job = JobFactory.create(queue=queue, target={"type": "HTTP", "method": "POST", "url": receiver.url, "headers": {}})
    run = RunFactory.create(job=job, schedule=None, kind="MANUAL", status=RunStatus.SCHEDULED, payload={"scope": "all"})
    worker = processes.worker(queue)
    processes.wait_ready(worker)
    run_enqueue(run_ids=[run.pk])

    wait_for(lambda: Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED, message=processes.logs)
    [request] = receiver.for_run(run.pk)
    assert request.signature_ok
    assert request.json["payload"] == {"scope": "all"}
    assert request.json["run_id"] == str(run.pk)
    run.refresh_from_db()
    [attempt] = run.attempts.all()
    assert (attempt.outcome, attempt.response_status, attempt.worker_name) == (
        "SUCCEEDED",
        200,
        processes.hostname(worker),
    )
    [started] = events(run, "started")
    [succeeded] = events(run, "succeeded")
    assert started.id < succeeded.id
    assert started.data["worker"] == processes.hostname(worker)
    assert (succeeded.data["status"], succeeded.data["attempt"], succeeded.tenant_id) == ("SUCCEEDED", 1, run.tenant_id)
    assert events(run, "failed") == events(run, "dead") == []


def test_a_503_is_retried_with_the_same_idempotency_key_and_then_succeeds(
    processes: Processes, receiver: Receiver, queue: str
) -> None:
    receiver.answer = lambda request, n: (503, {}, 0.0) if n == 1 else (200, {}, 0.0)
    job = http_job(receiver, queue, max_attempts=3)
    processes.wait_all_ready(processes.worker(queue), processes.beat())
    [run] = enqueue(job)

    run = wait_final(processes, run)

    assert (run.status, run.attempt, run.series) == (RunStatus.SUCCEEDED, 2, 1)
    first, second = receiver.for_run(run.pk)
    assert first.key == second.key == str(run.pk)
    assert first.signature_ok
    assert second.signature_ok
    assert (first.json["attempt"], second.json["attempt"]) == (1, 2)
    one, two = attempts(run)
    assert (one.number, one.outcome, one.response_status) == (1, AttemptOutcome.RETRYABLE_ERROR, 503)
    assert (two.number, two.outcome, two.response_status) == (2, AttemptOutcome.SUCCEEDED, 200)
    assert second.received_at - first.received_at >= 1.0  # the FIXED backoff of 1 s
    assert len(events(run, "succeeded")) == 1


def test_a_run_failing_until_its_attempts_run_out_is_dead_lettered_then_retried_by_an_operator(
    api: Any, processes: Processes, receiver: Receiver, queue: str
) -> None:
    answer = {"status": 500}
    receiver.answer = lambda request, n: (answer["status"], {}, 0.0)
    job = http_job(receiver, queue, max_attempts=3)
    processes.wait_all_ready(processes.worker(queue), processes.beat())
    [run] = enqueue(job, payload={"report": "kpi"})

    run = wait_final(processes, run)

    assert (run.status, run.attempt, run.series) == (RunStatus.DEAD, 3, 1)
    assert [(a.number, a.outcome, a.response_status) for a in attempts(run)] == [
        (n, AttemptOutcome.RETRYABLE_ERROR, 500) for n in (1, 2, 3)
    ]
    assert len(receiver.for_run(run.pk)) == 3
    [letter] = DeadLetter.objects.filter(run_id=run.pk)
    assert (letter.series, letter.attempts, letter.response_status, letter.replayed_at) == (1, 3, 500, None)
    assert letter.payload == {"report": "kpi"}
    assert letter.target == job.target
    assert "500" in letter.error_message
    assert letter.error_message == run.error_message
    [dead] = events(run, "dead")
    assert (dead.data["status"], dead.data["attempt"]) == ("DEAD", 3)

    answer["status"] = 200
    response = api.post(f"/api/v1/runs/{run.pk}/retry")

    assert response.status_code == 202, response.content
    assert (response.json()["series"], response.json()["attempt"]) == (2, 0)
    run = wait_final(processes, run)
    assert (run.status, run.attempt, run.series) == (RunStatus.SUCCEEDED, 1, 2)
    assert [(a.series, a.number, a.outcome) for a in attempts(run)] == [
        (1, 1, AttemptOutcome.RETRYABLE_ERROR),
        (1, 2, AttemptOutcome.RETRYABLE_ERROR),
        (1, 3, AttemptOutcome.RETRYABLE_ERROR),
        (2, 1, AttemptOutcome.SUCCEEDED),
    ]
    requests = receiver.for_run(run.pk)
    assert len(requests) == 4
    assert all(r.signature_ok for r in requests)
    assert requests[-1].json["series"] == 2
    letter.refresh_from_db()
    assert letter.replayed_at is not None
    assert len(events(run, "succeeded")) == 1


def test_a_404_fails_at_once_without_a_retry(processes: Processes, receiver: Receiver, queue: str) -> None:
    receiver.answer = lambda request, n: (404, {}, 0.0)
    job = http_job(receiver, queue, max_attempts=3)
    processes.wait_all_ready(processes.worker(queue), processes.beat())
    [run] = enqueue(job)

    run = wait_final(processes, run)

    assert (run.status, run.attempt, run.next_attempt_at) == (RunStatus.FAILED, 1, None)
    [attempt] = attempts(run)
    assert (attempt.outcome, attempt.response_status) == (AttemptOutcome.FATAL_ERROR, 404)
    assert len(events(run, "failed")) == 1
    assert not DeadLetter.objects.filter(run_id=run.pk).exists()
    # A retry would have come after the 1 s backoff; the beat is running, and nothing comes.
    time.sleep(1.5)
    assert len(receiver.for_run(run.pk)) == 1
    assert Run.objects.get(pk=run.pk).status == RunStatus.FAILED


def test_a_target_slower_than_the_job_timeout_times_out_and_is_retried(
    processes: Processes, receiver: Receiver, queue: str
) -> None:
    receiver.answer = lambda request, n: (200, {}, 3.0) if n == 1 else (200, {}, 0.0)
    job = http_job(receiver, queue, max_attempts=3, timeout_seconds=1)
    processes.wait_all_ready(processes.worker(queue), processes.beat())
    [run] = enqueue(job)

    run = wait_final(processes, run)

    assert (run.status, run.attempt) == (RunStatus.SUCCEEDED, 2)
    one, two = attempts(run)
    assert (one.outcome, one.response_status, one.error_type) == (AttemptOutcome.TIMEOUT, None, "ReadTimeout")
    assert one.finished_at is not None
    assert (one.finished_at - one.started_at).total_seconds() < 2.5
    assert two.outcome == AttemptOutcome.SUCCEEDED
    assert len(receiver.for_run(run.pk)) == 2


def test_retry_after_sets_the_wait_before_the_next_attempt(
    processes: Processes, receiver: Receiver, queue: str
) -> None:
    receiver.answer = lambda request, n: (429, {"Retry-After": "2"}, 0.0) if n == 1 else (200, {}, 0.0)
    job = http_job(receiver, queue, max_attempts=3)  # FIXED 1 s: only Retry-After makes it 2
    processes.wait_all_ready(processes.worker(queue), processes.beat())
    [run] = enqueue(job)

    run = wait_final(processes, run)

    assert (run.status, run.attempt) == (RunStatus.SUCCEEDED, 2)
    first, second = receiver.for_run(run.pk)
    assert second.received_at - first.received_at >= 2.0
    one, _ = attempts(run)
    assert (one.outcome, one.response_status) == (AttemptOutcome.RETRYABLE_ERROR, 429)


# --- EVENT and QUEUE targets ----------------------------------------------------------------------


def test_an_event_target_publishes_the_run_on_its_nats_subject(
    processes: Processes, queue: str, nats_client: Nats
) -> None:
    subject = f"e2e.exec.{uuid.uuid4().hex[:8]}"
    nats_client.subscribe(subject)
    job = JobFactory.create(queue=queue, target={"type": "EVENT", "subject": subject}, timeout_seconds=10)
    processes.wait_ready(processes.worker(queue))
    [run] = enqueue(job, payload={"rebuild": True})

    run = wait_final(processes, run)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    [message] = wait_for(lambda: list(nats_client.messages), timeout=5)
    assert message.subject == subject
    assert message.headers["Nats-Msg-Id"] == str(run.pk)
    body = json.loads(message.data)
    assert (body["run_id"], body["payload"], body["job"]) == (str(run.pk), {"rebuild": True}, job.key)
    assert (run.outcome["jetstream"], run.outcome["subject"]) == (False, subject)


def test_an_event_target_on_a_jetstream_subject_is_acknowledged_with_a_sequence(
    processes: Processes, queue: str, nats_client: Nats
) -> None:
    token = uuid.uuid4().hex[:8]
    subject, stream = f"e2e.exec.js.{token}", f"E2E_EXEC_{token}"
    nats_client.add_stream(stream, [subject])
    job = JobFactory.create(queue=queue, target={"type": "EVENT", "subject": subject}, timeout_seconds=10)
    processes.wait_ready(processes.worker(queue))
    [run] = enqueue(job)

    run = wait_final(processes, run)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert (run.outcome["jetstream"], run.outcome["stream"], run.outcome["duplicate"]) == (True, stream, False)
    assert run.outcome["seq"] == 1
    stored = nats_client.stream_message(stream, run.outcome["seq"])
    assert stored.headers["Nats-Msg-Id"] == str(run.pk)
    assert json.loads(stored.data)["run_id"] == str(run.pk)


def test_a_queue_target_puts_the_run_on_a_broker_queue(processes: Processes, queue: str) -> None:
    target_queue = f"{queue}-out"
    job = JobFactory.create(queue=queue, target={"type": "QUEUE", "queue": target_queue}, timeout_seconds=10)
    processes.wait_ready(processes.worker(queue))
    [run] = enqueue(job, payload={"n": 1})

    try:
        run = wait_final(processes, run)
        assert run.status == RunStatus.SUCCEEDED, run.error_message
        with Connection(settings.CELERY_BROKER_URL) as connection:
            inbox = connection.SimpleQueue(target_queue)
            message = inbox.get(timeout=5)
            message.ack()
            assert message.headers["scheduler-run-id"] == str(run.pk)
            assert (message.payload["run_id"], message.payload["payload"]) == (str(run.pk), {"n": 1})
            with pytest.raises(inbox.Empty):  # exactly one message
                inbox.get(timeout=0.2)
            inbox.close()
    finally:
        broker_purge(target_queue)


def test_a_queue_target_with_a_task_sends_that_celery_task(processes: Processes, queue: str) -> None:
    target_queue = f"{queue}-tasks"
    job = JobFactory.create(
        queue=queue, target={"type": "QUEUE", "task": "reports.build", "queue": target_queue}, timeout_seconds=10
    )
    processes.wait_ready(processes.worker(queue))
    [run] = enqueue(job, payload={"report": "kpi", "year": 2027})

    try:
        run = wait_final(processes, run)
        assert run.status == RunStatus.SUCCEEDED, run.error_message
        assert (run.outcome["task"], run.outcome["queue"]) == ("reports.build", target_queue)
        with Connection(settings.CELERY_BROKER_URL) as connection:
            inbox = connection.SimpleQueue(target_queue)
            message = inbox.get(timeout=5)  # the raw Celery message (protocol 2)
            message.ack()
            inbox.close()
        assert message.headers["task"] == "reports.build"
        assert message.headers["scheduler_run_id"] == str(run.pk)
        assert message.headers["scheduler_tenant_id"] == run.tenant_id
        args, kwargs, _embed = message.payload
        assert (args, kwargs) == ([], {"report": "kpi", "year": 2027})
    finally:
        broker_purge(target_queue)


# --- crashes, limits, operators, routing ----------------------------------------------------------


def test_a_run_whose_worker_is_killed_mid_delivery_is_recovered_and_succeeds_once(
    processes: Processes, receiver: Receiver, queue: str
) -> None:
    # The first delivery of a run marked "hold" is held 5 s: long enough to kill its worker.
    receiver.answer = lambda request, n: (200, {}, 5.0) if n == 1 and request.json["payload"] else (200, {}, 0.0)
    job = http_job(receiver, queue, max_attempts=3, timeout_seconds=3, concurrency_limit=1)
    one, two = processes.worker(queue, name="one"), processes.worker(queue, name="two")
    processes.wait_all_ready(one, two, processes.beat())
    [run] = enqueue(job, payload={"hold": True})
    wait_for(lambda: receiver.for_run(run.pk), timeout=15, message=processes.logs)
    # A second run of the job waits for the slot the first one holds.
    [behind] = enqueue(job)
    wait_for(lambda: Run.objects.filter(pk=behind.pk, blocked_at__isnull=False).exists(), message=processes.logs)

    [first] = attempts(run)
    victim = processes.by_hostname(first.worker_name)
    processes.kill(victim)
    survivor = two if victim is one else one
    run = wait_final(processes, run, timeout=30)

    assert (run.status, run.attempt) == (RunStatus.SUCCEEDED, 2)
    lost, succeeded = attempts(run)
    assert (lost.outcome, lost.error_type, lost.worker_name) == (
        AttemptOutcome.LOST,
        "WorkerLost",
        processes.hostname(victim),
    )
    assert (succeeded.outcome, succeeded.worker_name) == (AttemptOutcome.SUCCEEDED, processes.hostname(survivor))
    requests = receiver.for_run(run.pk)
    assert len(requests) == 2
    assert {r.key for r in requests} == {str(run.pk)}
    assert all(r.signature_ok for r in requests)
    assert len(events(run, "succeeded")) == 1
    assert len(events(run, "started")) == 2
    # The dead worker's slot was held until its lease ran out, then the waiting run took it.
    behind = wait_final(processes, behind)
    assert behind.status == RunStatus.SUCCEEDED
    [behind_attempt] = attempts(behind)
    assert lost.finished_at is not None
    assert behind_attempt.started_at >= lost.finished_at
    assert len(receiver.for_run(behind.pk)) == 1


def test_a_run_after_its_workers_database_connection_was_cut_still_runs_once(
    processes: Processes, receiver: Receiver, queue: str
) -> None:
    """A connection that answered the previous task a moment ago is not health-checked again: the
    next task finds it dead, and is sent again once, to run on a new connection. (Later than
    scheduler_project.celery.HEALTH_CHECK_BYPASS_SECONDS, the health check finds it instead.)"""
    job = http_job(receiver, queue)
    worker = processes.worker(queue, concurrency=1)
    processes.wait_ready(worker)
    [before] = enqueue(job)
    assert wait_final(processes, before).status == RunStatus.SUCCEEDED

    with connection.cursor() as cursor:  # the pool process's backend: its last statement ended the run
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE 'EXECUTE scheduler_run_finish%%'"
        )
        assert [row[0] for row in cursor.fetchall()] == [True]
    [after] = enqueue(job)

    after = wait_final(processes, after)
    assert after.status == RunStatus.SUCCEEDED
    assert [attempt.outcome for attempt in attempts(after)] == [AttemptOutcome.SUCCEEDED]
    assert len(receiver.for_run(after.pk)) == 1


def test_a_job_concurrency_limit_holds_across_workers(processes: Processes, receiver: Receiver, queue: str) -> None:
    receiver.answer = lambda request, n: (200, {}, 0.5)
    job = http_job(receiver, queue, concurrency_limit=2)
    workers = [processes.worker(queue, concurrency=2) for _ in range(3)]
    processes.wait_all_ready(*workers, processes.beat())

    runs = enqueue(job, 12)

    for run in runs:
        assert wait_final(processes, run, timeout=40).status == RunStatus.SUCCEEDED
    assert receiver.max_in_flight == 2  # the limit was reached, and never passed
    keys = receiver.keys()
    assert set(keys) == {str(run.pk) for run in runs}
    assert set(keys.values()) == {1}
    assert RunAttempt.objects.filter(run__job=job).count() == 12
    assert len({a.worker_name for a in RunAttempt.objects.filter(run__job=job)}) > 1


def test_a_cancelled_run_never_executes_and_a_running_one_cannot_be_cancelled(
    api: Any, processes: Processes, receiver: Receiver, queue: str
) -> None:
    receiver.answer = lambda request, n: (200, {}, 1.5)
    job = http_job(receiver, queue)
    [cancelled] = enqueue(job)  # no worker consumes the queue yet
    assert Run.objects.get(pk=cancelled.pk).status == RunStatus.QUEUED

    response = api.post(f"/api/v1/runs/{cancelled.pk}/cancel")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "CANCELLED"
    worker = processes.worker(queue)
    processes.wait_ready(worker)
    # The worker consumed the cancelled run's message and let it go.
    wait_for(lambda: f"run {cancelled.pk}: not claimed" in processes.logs(), message=processes.logs)

    [running] = enqueue(job)
    wait_for(lambda: receiver.for_run(running.pk), message=processes.logs)
    conflict = api.post(f"/api/v1/runs/{running.pk}/cancel")
    assert conflict.status_code == 409, conflict.content
    assert "RUNNING" in conflict.json()["detail"]
    assert wait_final(processes, running).status == RunStatus.SUCCEEDED

    assert receiver.for_run(cancelled.pk) == []
    assert attempts(Run.objects.get(pk=cancelled.pk)) == []
    assert Run.objects.get(pk=cancelled.pk).status == RunStatus.CANCELLED


def test_a_run_needing_a_capability_only_goes_to_a_worker_that_has_it(
    processes: Processes, receiver: Receiver, queue: str
) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    gpu_job = http_job(receiver, queue, required_capabilities=["gpu"])
    plain_job = http_job(receiver, queue)
    plain = processes.worker(queue, name="plain")
    processes.wait_ready(plain)

    gpu_runs = enqueue(gpu_job, 3)
    assert run_queue(queue, ["gpu"]) == f"{queue}@gpu"
    assert broker.llen(f"{queue}@gpu") == 3
    # While the plain worker is the only one, it runs a plain run and leaves the gpu runs alone.
    [plain_run] = enqueue(plain_job)
    assert wait_final(processes, plain_run).status == RunStatus.SUCCEEDED
    assert [a.worker_name for a in attempts(plain_run)] == ["plain@e2e"]
    assert set(Run.objects.filter(pk__in=[r.pk for r in gpu_runs]).values_list("status", flat=True)) == {
        RunStatus.QUEUED
    }
    assert broker.llen(f"{queue}@gpu") == 3

    gpu = processes.worker(queue, name="gpu", WORKER_CAPABILITIES="gpu")
    processes.wait_ready(gpu)
    more_gpu_runs = enqueue(gpu_job, 3)  # now both workers consume the queue: only one takes these

    for run in gpu_runs + more_gpu_runs:
        assert wait_final(processes, run).status == RunStatus.SUCCEEDED
    names = set(RunAttempt.objects.filter(run__job=gpu_job).values_list("worker_name", flat=True))
    assert names == {"gpu@e2e"}


def test_a_bulk_replay_retries_the_dead_runs_of_a_job(
    api: Any, processes: Processes, receiver: Receiver, queue: str
) -> None:
    answer = {"status": 500}
    receiver.answer = lambda request, n: (answer["status"], {}, 0.0)
    job = http_job(receiver, queue, max_attempts=1)
    schedule = ScheduleFactory.create(job=job, enabled=False)
    processes.wait_ready(processes.worker(queue))
    dead = enqueue(job, 3, schedule=schedule, kind=RunKind.SCHEDULED)
    for run in dead:
        assert wait_final(processes, run).status == RunStatus.DEAD

    dry = api.post("/api/v1/runs/replay", {"job": str(job.pk), "status": ["DEAD"], "dry_run": True}, format="json")

    assert dry.status_code == 200, dry.content
    assert (dry.json()["dry_run"], dry.json()["count"]) == (True, 3)
    assert sorted(dry.json()["runs"]) == sorted(str(r.pk) for r in dead)
    assert set(Run.objects.filter(job=job).values_list("status", "series")) == {(RunStatus.DEAD, 1)}
    assert not DeadLetter.objects.filter(job=job, replayed_at__isnull=False).exists()
    assert len(receiver.requests) == 3

    answer["status"] = 200
    response = api.post("/api/v1/runs/replay", {"job": str(job.pk), "status": ["DEAD"]}, format="json")

    assert response.status_code == 202, response.content
    assert response.json()["count"] == 3
    for run in dead:
        run = wait_final(processes, run)
        assert (run.status, run.series, run.attempt) == (RunStatus.SUCCEEDED, 2, 1)
        assert [(a.series, a.outcome) for a in attempts(run)] == [
            (1, AttemptOutcome.RETRYABLE_ERROR),
            (2, AttemptOutcome.SUCCEEDED),
        ]
    assert DeadLetter.objects.filter(job=job, replayed_at__isnull=False).count() == 3
    assert receiver.keys() == {str(run.pk): 2 for run in dead}
    assert all(request.signature_ok for request in receiver.requests)
