"""Execution services in-process on real PostgreSQL and Redis, delivering to a real HTTP server:
claiming, the concurrency gate, recovery of lost runs, retries, cancel, retry and replay.
(tests/e2e/test_execution.py runs the same paths through real Celery workers.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from runs import services
from runs.models import AttemptOutcome, DeadLetter, Run, RunAttempt, RunStatus
from runs.targets import http
from runs.targets.base import RetryableError
from scheduler_project.models import OutboxEvent
from schedules.models import Schedule
from tests.e2e.harness import WEBHOOK_SECRET, Receiver
from tests.factories import TENANT, JobFactory, RunFactory, ScheduleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _signing_secret(settings: Any) -> None:
    settings.WEBHOOK_HMAC_SECRET = WEBHOOK_SECRET


def _job(receiver: Receiver, queue: str = "default", **kwargs: Any) -> Any:
    target = {"type": "HTTP", "method": "POST", "url": receiver.url, "headers": {"X-Team": "analytics"}}
    return JobFactory(target=target, queue=queue, **kwargs)


def _queued(job: Any, **kwargs: Any) -> Run:
    return RunFactory(job=job, schedule=None, kind="MANUAL", status=RunStatus.QUEUED, **kwargs)


def _messages(queue: str) -> int:
    return int(redis.Redis.from_url(settings.REDIS_URL).llen(queue))


def _events(run: Run) -> list[str]:
    return list(
        OutboxEvent.objects.filter(aggregate_type="run", aggregate_id=str(run.pk))
        .order_by("id")
        .values_list("type", flat=True)
    )


def test_a_delivery_is_signed_and_carries_the_run(receiver: Receiver) -> None:
    run = _queued(_job(receiver), payload={"scope": "all"})

    assert services.run_execute(run_id=run.pk, worker_name="w1@host") == RunStatus.SUCCEEDED

    [request] = receiver.requests
    assert request.signature_ok
    assert request.headers["Idempotency-Key"] == str(run.pk)
    assert request.headers["X-Team"] == "analytics"
    assert request.json == {
        "run_id": str(run.pk),
        "tenant_id": TENANT,
        "job": run.job.key,
        "job_id": str(run.job_id),
        "schedule_id": None,
        "kind": "MANUAL",
        "scheduled_for": run.scheduled_for.isoformat(),
        "attempt": 1,
        "series": 1,
        "payload": {"scope": "all"},
    }
    run.refresh_from_db()
    assert (run.status, run.attempt, run.lease_expires_at) == (RunStatus.SUCCEEDED, 1, None)
    [attempt] = run.attempts.all()
    assert (attempt.outcome, attempt.response_status, attempt.worker_name) == ("SUCCEEDED", 200, "w1@host")
    assert attempt.latency_ms is not None
    assert '"ok": true' in attempt.response_excerpt
    assert _events(run) == ["scheduler.run.started", "scheduler.run.succeeded"]


def test_a_per_job_secret_signs_instead_of_the_service_secret(receiver: Receiver) -> None:
    receiver.secret = "the-job-s-own-secret-0123456789"
    run = _queued(_job(receiver, webhook_secret=receiver.secret))

    services.run_execute(run_id=run.pk)

    assert [r.signature_ok for r in receiver.requests] == [True]


def test_without_any_secret_the_request_is_unsigned(receiver: Receiver, settings: Any) -> None:
    settings.WEBHOOK_HMAC_SECRET = ""
    run = _queued(_job(receiver))

    services.run_execute(run_id=run.pk)

    [request] = receiver.requests
    assert "X-Scheduler-Signature" not in request.headers


@pytest.mark.parametrize("status", [RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.CANCELLED, RunStatus.RETRYING])
def test_a_run_that_is_not_waiting_to_start_is_never_claimed(receiver: Receiver, status: str) -> None:
    run = RunFactory(job=_job(receiver), schedule=None, status=status)

    assert services.run_execute(run_id=run.pk) == "not claimed"

    assert receiver.requests == []
    assert Run.objects.get(pk=run.pk).status == status


def test_a_duplicate_delivery_after_success_does_nothing(receiver: Receiver) -> None:
    run = _queued(_job(receiver))
    services.run_execute(run_id=run.pk)

    assert services.run_execute(run_id=run.pk) == "not claimed"
    assert len(receiver.requests) == 1
    assert RunAttempt.objects.filter(run=run).count() == 1


def test_a_retryable_error_waits_with_backoff_then_the_beat_sends_it_again(receiver: Receiver, queue: str) -> None:
    receiver.answer = lambda request, n: (503, {}, 0.0) if n == 1 else (200, {}, 0.0)
    job = _job(receiver, queue, backoff_strategy="FIXED", backoff_base_seconds=30, backoff_max_seconds=30)
    run = _queued(job)

    before = timezone.now()
    assert services.run_execute(run_id=run.pk) == RunStatus.RETRYING
    run.refresh_from_db()
    assert run.next_attempt_at is not None
    assert timedelta(seconds=29) < run.next_attempt_at - before < timedelta(seconds=31)
    [attempt] = run.attempts.all()
    assert (attempt.outcome, attempt.response_status) == (AttemptOutcome.RETRYABLE_ERROR, 503)

    # Not due yet: nothing sent. Due: QUEUED and on the broker.
    assert services.run_dispatch_retries(now=timezone.now()) == 0
    assert services.run_next_retry_at() == run.next_attempt_at
    assert services.run_dispatch_retries(now=run.next_attempt_at + timedelta(seconds=1)) == 1
    run.refresh_from_db()
    assert (run.status, run.next_attempt_at) == (RunStatus.QUEUED, None)

    assert services.run_execute(run_id=run.pk) == RunStatus.SUCCEEDED
    assert [r.key for r in receiver.requests] == [str(run.pk)] * 2
    assert list(run.attempts.values_list("number", "outcome")) == [(1, "RETRYABLE_ERROR"), (2, "SUCCEEDED")]


def test_retry_after_pushes_the_next_attempt_out(receiver: Receiver) -> None:
    receiver.answer = lambda request, n: (429, {"Retry-After": "120"}, 0.0)
    run = _queued(_job(receiver, backoff_strategy="FIXED", backoff_base_seconds=1, backoff_max_seconds=1))

    before = timezone.now()
    services.run_execute(run_id=run.pk)

    run.refresh_from_db()
    assert run.next_attempt_at is not None
    assert run.next_attempt_at - before >= timedelta(seconds=120)


def test_attempts_running_out_dead_letter_the_run(receiver: Receiver) -> None:
    receiver.answer = lambda request, n: (500, {}, 0.0)
    run = _queued(_job(receiver, max_attempts=2), payload={"day": "2027-01-01"})

    assert services.run_execute(run_id=run.pk) == RunStatus.RETRYING
    Run.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED)  # what run_dispatch_retries does when due
    assert services.run_execute(run_id=run.pk) == RunStatus.DEAD

    run.refresh_from_db()
    assert run.finished_at is not None
    assert "answered 500" in run.error_message
    letter = DeadLetter.objects.get(run=run)
    assert (letter.series, letter.attempts, letter.response_status) == (1, 2, 500)
    assert letter.payload == {"day": "2027-01-01"}
    assert letter.target["url"] == receiver.url
    assert _events(run)[-1] == "scheduler.run.dead"


@pytest.mark.parametrize("status", [400, 404, 410, 301])
def test_other_4xx_and_redirects_fail_at_once(receiver: Receiver, status: int) -> None:
    receiver.answer = lambda request, n: (status, {"Location": "https://elsewhere.test/"}, 0.0)
    run = _queued(_job(receiver, max_attempts=5))

    assert services.run_execute(run_id=run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.next_attempt_at is None
    assert run.attempt == 1
    assert run.attempts.get().outcome == AttemptOutcome.FATAL_ERROR
    assert _events(run)[-1] == "scheduler.run.failed"
    assert not DeadLetter.objects.filter(run=run).exists()


def test_a_slow_target_times_out_and_is_retried(receiver: Receiver) -> None:
    receiver.answer = lambda request, n: (200, {}, 2.5)
    run = _queued(_job(receiver, timeout_seconds=1))

    assert services.run_execute(run_id=run.pk) == RunStatus.RETRYING

    assert run.attempts.get().outcome == AttemptOutcome.TIMEOUT


@pytest.fixture
def dripping_target() -> Iterator[str]:
    """A server that answers every request a byte every 0.2 s: each read well within any read
    timeout, the whole answer (about 20 s of it) far beyond the job's."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                client.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 100:
                    if stop.wait(0.2):
                        return
                    try:
                        client.sendall(bytes([byte]))
                    except OSError:
                        break  # the client hung up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    server.close()
    thread.join(timeout=5)


def test_a_target_that_drips_its_answer_is_cut_at_the_jobs_timeout(dripping_target: str) -> None:
    job = JobFactory(target={"type": "HTTP", "method": "POST", "url": dripping_target}, timeout_seconds=1)
    run = _queued(job)
    started = time.monotonic()

    assert services.run_execute(run_id=run.pk) == RunStatus.RETRYING

    # Cut at about a second; without the watchdog the answer would have held it for ~20 s.
    assert time.monotonic() - started < 10
    attempt = run.attempts.get()
    assert (attempt.outcome, attempt.error_type) == (AttemptOutcome.TIMEOUT, "ReadTimeout")


def test_a_refused_connection_is_retried(receiver: Receiver) -> None:
    job = _job(receiver)
    receiver.stop()
    run = _queued(job)

    assert services.run_execute(run_id=run.pk) == RunStatus.RETRYING
    assert run.attempts.get().error_type == "ConnectionError"
    receiver.start()  # for the fixture's teardown


@pytest.fixture
def environment_proxies(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The proxy variables of the test's own: the HTTP target reads them once per origin."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    http._proxies_of.cache_clear()
    yield monkeypatch
    http._proxies_of.cache_clear()


def test_a_delivery_goes_through_the_proxy_the_environment_names(
    receiver: Receiver, environment_proxies: pytest.MonkeyPatch
) -> None:
    environment_proxies.setenv("HTTP_PROXY", receiver.url.removesuffix("/hook"))
    job = JobFactory(target={"type": "HTTP", "method": "POST", "url": "http://hooks.example.invalid/ingest"})
    run = _queued(job)

    assert services.run_execute(run_id=run.pk) == RunStatus.SUCCEEDED

    [request] = receiver.requests  # the proxy was asked for the target, in absolute form
    assert request.path == "http://hooks.example.invalid/ingest"
    assert (request.key, request.signature_ok) == (str(run.pk), True)


def test_a_proxy_that_drips_its_answer_is_cut_at_the_jobs_timeout(
    dripping_target: str, environment_proxies: pytest.MonkeyPatch
) -> None:
    environment_proxies.setenv("HTTP_PROXY", dripping_target.removesuffix("/hook"))
    job = JobFactory(
        target={"type": "HTTP", "method": "POST", "url": "http://hooks.example.invalid/"}, timeout_seconds=1
    )
    run = _queued(job)
    started = time.monotonic()

    assert services.run_execute(run_id=run.pk) == RunStatus.RETRYING

    assert time.monotonic() - started < 10  # the proxy's answer alone would take ~20 s
    attempt = run.attempts.get()
    assert (attempt.outcome, attempt.error_type) == (AttemptOutcome.TIMEOUT, "ReadTimeout")


def test_no_proxy_names_an_international_host_as_requests_does(environment_proxies: pytest.MonkeyPatch) -> None:
    environment_proxies.setenv("HTTP_PROXY", "http://proxy.example.invalid:3128")
    environment_proxies.setenv("NO_PROXY", "xn--bcher-kva.example")  # bücher.example, IDNA-encoded

    assert http._proxies("http://bücher.example/hook") == {}
    assert http._proxies("http://other.example/hook")["http"] == "http://proxy.example.invalid:3128"


def test_no_proxy_sends_a_delivery_straight_to_its_target(
    receiver: Receiver, environment_proxies: pytest.MonkeyPatch
) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # a proxy that is not there: a request sent to it is refused
    environment_proxies.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    environment_proxies.setenv("NO_PROXY", "127.0.0.1")
    run = _queued(_job(receiver))

    assert services.run_execute(run_id=run.pk) == RunStatus.SUCCEEDED
    assert [r.path for r in receiver.requests] == ["/hook"]


# --- concurrency ---------------------------------------------------------------------------------


def test_a_run_over_the_concurrency_limit_waits_without_a_worker_and_is_woken_by_a_finish(
    receiver: Receiver, queue: str, django_capture_on_commit_callbacks: Any
) -> None:
    job = _job(receiver, queue, concurrency_limit=2)
    now = timezone.now()
    holders = [
        RunFactory(
            job=job, schedule=None, status=RunStatus.RUNNING, attempt=1, lease_expires_at=now + timedelta(minutes=5)
        )
        for _ in range(2)
    ]
    for holder in holders:
        RunAttempt.objects.create(run=holder, number=1, started_at=now)
    waiting = _queued(job)

    assert services.run_claim(run_id=waiting.pk) is None
    waiting.refresh_from_db()
    assert waiting.status == RunStatus.QUEUED
    assert waiting.blocked_at is not None
    assert "concurrency limit of 2" in waiting.reason
    assert receiver.requests == []

    # A holder finishes: the oldest waiting run is sent again.
    holders[0].refresh_from_db()
    claim = services.Claim(run=holders[0], job=job, attempt=holders[0].attempts.get())
    with django_capture_on_commit_callbacks(execute=True):
        services.run_attempt_succeeded(claim=claim, receipt=services.Receipt(status=200))
    waiting.refresh_from_db()
    assert waiting.blocked_at is None
    assert _messages(queue) == 1

    assert services.run_execute(run_id=waiting.pk) == RunStatus.SUCCEEDED


def test_an_expired_lease_holds_no_slot(receiver: Receiver) -> None:
    job = _job(receiver, concurrency_limit=1)
    RunFactory(job=job, schedule=None, status=RunStatus.RUNNING, lease_expires_at=timezone.now() - timedelta(seconds=1))
    run = _queued(job)

    assert services.run_execute(run_id=run.pk) == RunStatus.SUCCEEDED


def test_buffer_one_holds_the_second_run_until_the_first_finishes(receiver: Receiver) -> None:
    schedule = ScheduleFactory(job=_job(receiver), overlap_policy="BUFFER_ONE")
    RunFactory(schedule=schedule, status=RunStatus.RUNNING, lease_expires_at=timezone.now() + timedelta(minutes=5))
    buffered = RunFactory(schedule=schedule, status=RunStatus.QUEUED)

    assert services.run_claim(run_id=buffered.pk) is None
    buffered.refresh_from_db()
    assert "BUFFER_ONE" in buffered.reason
    assert buffered.blocked_at is not None


def _holding_slots(job: Any, n: int) -> list[Run]:
    lease = timezone.now() + timedelta(minutes=5)
    return [
        RunFactory(job=job, schedule=None, status=RunStatus.RUNNING, attempt=1, lease_expires_at=lease)
        for _ in range(n)
    ]


def _waiting(job: Any, minutes_ago: int, **kwargs: Any) -> Run:
    since = timezone.now() - timedelta(minutes=minutes_ago)
    return _queued(job, blocked_at=since, queued_at=since, **kwargs)


def _sent(queue: str) -> list[str]:
    """The run ids of the messages waiting in ``queue``, oldest first."""
    import base64
    import json

    raw = redis.Redis.from_url(settings.REDIS_URL).lrange(queue, 0, -1)
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in reversed(raw)]


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_leaves_waiting_runs_in_their_order_and_wakes_them_only_into_free_slots(
    receiver: Receiver, queue: str
) -> None:
    job = _job(receiver, queue, concurrency_limit=2)
    holders = _holding_slots(job, 2)
    oldest, second, third = _waiting(job, 30), _waiting(job, 20), _waiting(job, 15)
    now = timezone.now()

    # Every slot is taken: nothing is sent again, and nobody loses their place.
    assert services.run_sweep(now=now, stale_after=timedelta(minutes=10)) == 0
    assert services.runs_wake_waiting(now=now) == 0
    assert _sent(queue) == []
    assert Run.objects.get(pk=oldest.pk).blocked_at == oldest.blocked_at

    # A slot frees without its wake-up (the holder taken back by hand, say): the oldest is sent.
    Run.objects.filter(pk=holders[0].pk).update(status=RunStatus.SUCCEEDED)
    assert services.runs_wake_waiting(now=now) == 1
    assert _sent(queue) == [str(oldest.pk)]
    oldest.refresh_from_db()
    assert (oldest.blocked_at, oldest.queued_at) == (None, now)
    # On its way to a worker it counts as holding the slot: no second wake-up.
    assert services.runs_wake_waiting(now=now) == 0

    # Raising the limit through the job's service wakes as many as it frees, oldest first.
    from schedules.services import job_update

    job_update(job=job, data={"concurrency_limit": 3})
    assert _sent(queue) == [str(oldest.pk), str(second.pk)]
    job_update(job=job, data={"concurrency_limit": None})
    assert _sent(queue) == [str(oldest.pk), str(second.pk), str(third.pk)]


@pytest.mark.django_db(transaction=True)
def test_a_buffered_run_is_woken_only_once_its_schedule_has_nothing_running(receiver: Receiver, queue: str) -> None:
    schedule = ScheduleFactory(job=_job(receiver, queue), overlap_policy="BUFFER_ONE")
    previous = RunFactory(
        schedule=schedule, status=RunStatus.RUNNING, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    buffered = RunFactory(schedule=schedule, status=RunStatus.QUEUED, blocked_at=timezone.now())

    assert services.runs_wake_waiting(now=timezone.now()) == 0
    Run.objects.filter(pk=previous.pk).update(status=RunStatus.FAILED)
    assert services.runs_wake_waiting(now=timezone.now()) == 1
    assert _sent(queue) == [str(buffered.pk)]


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_does_not_copy_runs_into_a_queue_that_still_holds_messages(receiver: Receiver, queue: str) -> None:
    job = _job(receiver, queue)
    hour_ago = timezone.now() - timedelta(hours=1)
    stuck = _queued(job, queued_at=hour_ago)
    unsent = RunFactory(job=job, schedule=None, kind="MANUAL", status=RunStatus.SCHEDULED)
    Run.objects.filter(pk=unsent.pk).update(created_at=hour_ago)
    behind = _queued(job)
    services._publish([(behind.pk, queue, 60)])  # a backlog the workers have not reached yet

    # The never-sent run goes out; the QUEUED one's message may be in the backlog: left alone.
    assert services.run_sweep(now=timezone.now(), stale_after=timedelta(minutes=10)) == 1
    assert _sent(queue) == [str(behind.pk), str(unsent.pk)]

    redis.Redis.from_url(settings.REDIS_URL).delete(queue)  # the workers caught up; it never started
    assert services.run_sweep(now=timezone.now(), stale_after=timedelta(minutes=10)) == 1
    assert _sent(queue) == [str(stuck.pk)]


# --- lost runs -------------------------------------------------------------------------------------


def _running(job: Any, *, attempt: int = 1, lease_ago: float = 1.0) -> Run:
    run = RunFactory(
        job=job,
        schedule=None,
        status=RunStatus.RUNNING,
        attempt=attempt,
        lease_expires_at=timezone.now() - timedelta(seconds=lease_ago),
    )
    RunAttempt.objects.create(
        run=run, number=attempt, started_at=timezone.now() - timedelta(minutes=5), worker_name="gone@host"
    )
    return run


def test_a_run_whose_worker_died_is_taken_back_and_retried(receiver: Receiver) -> None:
    job = _job(receiver, max_attempts=3)
    lost = _running(job)
    alive = RunFactory(
        job=job, schedule=None, status=RunStatus.RUNNING, lease_expires_at=timezone.now() + timedelta(minutes=1)
    )

    assert services.run_recover_lost(now=timezone.now()) == 1

    lost.refresh_from_db()
    assert lost.status == RunStatus.RETRYING
    assert lost.next_attempt_at is not None
    attempt = lost.attempts.get()
    assert (attempt.outcome, attempt.error_type) == (AttemptOutcome.LOST, "WorkerLost")
    assert "gone@host" in attempt.error_message
    assert Run.objects.get(pk=alive.pk).status == RunStatus.RUNNING


def test_a_lost_run_with_no_attempts_left_is_dead(receiver: Receiver) -> None:
    lost = _running(_job(receiver, max_attempts=2), attempt=2)

    services.run_recover_lost(now=timezone.now())

    assert Run.objects.get(pk=lost.pk).status == RunStatus.DEAD
    assert DeadLetter.objects.filter(run=lost, error_type="WorkerLost").exists()


def test_a_late_result_from_a_worker_presumed_dead_does_not_overwrite_the_run(receiver: Receiver) -> None:
    job = _job(receiver, max_attempts=3)
    lost = _running(job)
    claim = services.Claim(run=lost, job=job, attempt=lost.attempts.get())
    services.run_recover_lost(now=timezone.now())

    assert services.run_attempt_failed(claim=claim, error=RetryableError("late")) == "superseded"

    lost.refresh_from_db()
    assert lost.status == RunStatus.RETRYING
    assert lost.attempts.get().outcome == AttemptOutcome.RETRYABLE_ERROR  # the attempt keeps what it saw


# --- fixed delay -----------------------------------------------------------------------------------


def test_a_fixed_delay_schedule_fires_next_after_its_run_finished(receiver: Receiver) -> None:
    schedule = ScheduleFactory(
        job=_job(receiver), trigger={"version": 1, "type": "FIXED_DELAY", "delay_seconds": 600}, next_fire_at=None
    )
    run = RunFactory(schedule=schedule, status=RunStatus.QUEUED)

    services.run_execute(run_id=run.pk)

    run.refresh_from_db()
    schedule.refresh_from_db()
    assert run.finished_at is not None
    assert schedule.next_fire_at == run.finished_at + timedelta(seconds=600)


def test_a_paused_fixed_delay_schedule_stays_without_a_next_fire(receiver: Receiver) -> None:
    schedule = ScheduleFactory(
        job=_job(receiver),
        trigger={"version": 1, "type": "FIXED_DELAY", "delay_seconds": 600},
        next_fire_at=None,
        enabled=False,
    )
    services.run_execute(run_id=RunFactory(schedule=schedule, status=RunStatus.QUEUED).pk)

    assert Schedule.objects.get(pk=schedule.pk).next_fire_at is None


# --- the API: cancel, retry, replay ---------------------------------------------------------------


def test_cancel_stops_a_queued_run_from_ever_executing(api: Any, receiver: Receiver) -> None:
    run = _queued(_job(receiver))

    response = api.post(f"/api/v1/runs/{run.pk}/cancel")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "CANCELLED"
    assert services.run_execute(run_id=run.pk) == "not claimed"
    assert receiver.requests == []


@pytest.mark.parametrize("status", [RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.DEAD, RunStatus.CANCELLED])
def test_cancel_of_a_started_or_finished_run_is_a_conflict(api: Any, status: str) -> None:
    run = RunFactory(status=status)

    response = api.post(f"/api/v1/runs/{run.pk}/cancel")

    assert response.status_code == 409
    assert status in response.json()["detail"]
    assert Run.objects.get(pk=run.pk).status == status


def test_retry_starts_a_new_series_and_keeps_the_history(
    api: Any, receiver: Receiver, queue: str, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.answer = lambda request, n: (500, {}, 0.0) if n == 1 else (200, {}, 0.0)
    run = _queued(_job(receiver, queue, max_attempts=1))
    assert services.run_execute(run_id=run.pk) == RunStatus.DEAD

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/runs/{run.pk}/retry")

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["series"], body["attempt"], body["error_message"]) == ("SCHEDULED", 2, 0, "")
    assert _messages(queue) == 1
    assert DeadLetter.objects.get(run=run).replayed_at is not None
    assert services.run_execute(run_id=run.pk) == RunStatus.SUCCEEDED
    detail = api.get(f"/api/v1/runs/{run.pk}").json()
    assert [(a["series"], a["number"], a["outcome"]) for a in detail["attempts"]] == [
        (1, 1, "RETRYABLE_ERROR"),
        (2, 1, "SUCCEEDED"),
    ]
    assert detail["dead_letters"][0]["attempts"] == 1


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.MISSED])
def test_retry_of_a_run_that_did_not_fail_is_a_conflict(api: Any, status: str) -> None:
    run = RunFactory(status=status)

    response = api.post(f"/api/v1/runs/{run.pk}/retry")

    assert response.status_code == 409
    assert Run.objects.get(pk=run.pk).series == 1


def test_replay_retries_what_the_filter_matches_and_nothing_else(api: Any, other_api: Any) -> None:
    job, other_job = JobFactory(), JobFactory()
    dead = [RunFactory(job=job, schedule=None, status=RunStatus.DEAD) for _ in range(3)]
    failed = RunFactory(job=job, schedule=None, status=RunStatus.FAILED)
    cancelled = RunFactory(job=job, schedule=None, status=RunStatus.CANCELLED)
    elsewhere = RunFactory(job=other_job, schedule=None, status=RunStatus.DEAD)

    dry = api.post("/api/v1/runs/replay", {"job": str(job.pk), "dry_run": True}, format="json")
    assert dry.status_code == 200
    assert dry.json()["count"] == 4
    assert Run.objects.filter(status=RunStatus.SCHEDULED).count() == 0

    assert other_api.post("/api/v1/runs/replay", {"job": str(job.pk)}, format="json").json()["count"] == 0

    response = api.post("/api/v1/runs/replay", {"job": str(job.pk), "status": ["DEAD"]}, format="json")
    assert response.status_code == 202
    assert sorted(response.json()["runs"]) == sorted(str(r.pk) for r in dead)
    assert set(Run.objects.filter(pk__in=[r.pk for r in dead]).values_list("series", flat=True)) == {2}
    for untouched in (failed, cancelled, elsewhere):
        assert Run.objects.get(pk=untouched.pk).status == untouched.status


def test_replay_refuses_a_filter_wider_than_the_cap(api: Any, settings: Any) -> None:
    settings.RUN_REPLAY_MAX_RUNS = 2
    runs = [RunFactory(status=RunStatus.DEAD) for _ in range(3)]

    response = api.post("/api/v1/runs/replay", {}, format="json")

    assert response.status_code == 400
    assert "narrow the filter" in response.json()["errors"]["non_field_errors"][0]
    assert {Run.objects.get(pk=r.pk).status for r in runs} == {RunStatus.DEAD}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": ["SUCCEEDED"]}, "status.0"),
        ({"status": []}, "status"),
        ({"job": "nope"}, "job"),
        ({"scheduled_for_after": "2027-01-02T00:00:00"}, "scheduled_for_after"),
        (
            {"scheduled_for_after": "2027-01-02T00:00:00Z", "scheduled_for_before": "2027-01-01T00:00:00Z"},
            "scheduled_for_before",
        ),
        ({"dry_run": "perhaps"}, "dry_run"),
        ({"tenant_id": "other"}, "tenant_id"),
    ],
)
def test_replay_bad_input_names_the_field(api: Any, body: dict[str, Any], field: str) -> None:
    response = api.post("/api/v1/runs/replay", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_the_job_secret_is_write_only(api: Any) -> None:
    body = {
        "key": "billing.reminders",
        "name": "Reminders",
        "target": {"type": "HTTP", "url": "https://billing.test/hook"},
        "webhook_secret": "a-long-enough-secret-123",
        "required_capabilities": ["gpu", "eu"],
    }
    response = api.post("/api/v1/jobs", body, format="json")

    assert response.status_code == 201, response.content
    assert "webhook_secret" not in response.json()
    assert response.json()["webhook_secret_set"] is True
    assert response.json()["required_capabilities"] == ["eu", "gpu"]
    cleared = api.patch(f"/api/v1/jobs/{response.json()['id']}", {"webhook_secret": ""}, format="json")
    assert cleared.json()["webhook_secret_set"] is False


def test_cancelling_a_fixed_delay_run_schedules_the_next_slot(api: Any, receiver: Receiver) -> None:
    schedule = ScheduleFactory(
        job=_job(receiver), trigger={"version": 1, "type": "FIXED_DELAY", "delay_seconds": 600}, next_fire_at=None
    )
    run = RunFactory(schedule=schedule, status=RunStatus.QUEUED)

    assert api.post(f"/api/v1/runs/{run.pk}/cancel").status_code == 200

    run.refresh_from_db()
    schedule.refresh_from_db()
    assert run.finished_at is not None
    assert schedule.next_fire_at == run.finished_at + timedelta(seconds=600)


def test_a_fixed_delay_slot_skipped_by_overlap_still_leads_to_a_next_slot(receiver: Receiver) -> None:
    from schedules.services import schedule_dispatch_due

    now = timezone.now()
    schedule = ScheduleFactory(
        job=_job(receiver),
        trigger={"version": 1, "type": "FIXED_DELAY", "delay_seconds": 600},
        overlap_policy="SKIP",
        next_fire_at=now - timedelta(seconds=1),
    )
    RunFactory(schedule=schedule, kind="MANUAL", status=RunStatus.RUNNING, lease_expires_at=now + timedelta(minutes=5))

    schedule_dispatch_due(now=now, limit=10)

    skipped = Run.objects.get(schedule=schedule, kind="SCHEDULED")
    assert skipped.status == RunStatus.SKIPPED
    schedule.refresh_from_db()
    assert schedule.next_fire_at == now + timedelta(seconds=600)
