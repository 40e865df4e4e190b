"""Dispatch of due schedules on real PostgreSQL and Redis: the run ledger, misfire and overlap
policies, jitter, the leader lease, the sweeper and the wake-up notification."""

from __future__ import annotations

import json
import select
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
import redis
from django.conf import settings
from django.db import connection, connections

from runs.models import PendingSend, Run, RunKind, RunStatus
from runs.services import run_route, run_sweep, runs_enqueue_routed
from scheduler_project.models import OutboxEvent
from schedules import services
from schedules.models import Schedule
from schedules.wakeup import NOTIFY_CHANNEL
from tests.factories import JobFactory, RunFactory, ScheduleFactory

MINUTELY = {"version": 1, "type": "CRON", "expression": "* * * * *"}
NOW = datetime(2027, 6, 1, 12, 0, 30, tzinfo=UTC)


def _messages(queue: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]


def _schedule(queue: str, **fields: Any) -> Schedule:
    defaults: dict[str, Any] = {
        "trigger": MINUTELY,
        "timezone": "UTC",
        "next_fire_at": NOW.replace(second=0),
        "job": JobFactory(queue=queue),
    }
    defaults.update(fields)
    return ScheduleFactory(**defaults)


def _runs(schedule: Schedule) -> list[Run]:
    return list(Run.objects.filter(schedule=schedule).order_by("scheduled_for"))


@pytest.mark.django_db(transaction=True)
def test_a_due_slot_becomes_one_queued_run_and_one_message(queue: str) -> None:
    schedule = _schedule(queue, payload={"region": "eu"})
    schedule.job.payload = {"scope": "all", "region": "us"}
    schedule.job.save()

    ids = services.schedule_dispatch_due(now=NOW)

    [run] = _runs(schedule)
    assert ids == [run.pk]
    assert run.scheduled_for == NOW.replace(second=0)
    assert run.kind == RunKind.SCHEDULED
    assert run.status == RunStatus.QUEUED
    assert run.queued_at is not None
    assert run.payload == {"scope": "all", "region": "eu"}  # the schedule's payload wins
    [message] = _messages(queue)
    assert message["headers"]["task"] == "runs.execute_run"
    assert json.loads(__import__("base64").b64decode(message["body"]))[0] == [str(run.pk)]
    schedule.refresh_from_db()
    assert schedule.next_fire_at == NOW.replace(second=0) + timedelta(minutes=1)
    assert schedule.last_fired_at == NOW.replace(second=0)
    assert not PendingSend.objects.exists()  # the batch's marker went with its send


@pytest.mark.django_db
def test_a_batch_committed_by_a_beat_that_died_before_sending_is_sent_by_the_sweeper(
    queue: str, django_capture_on_commit_callbacks: Any
) -> None:
    schedules = [_schedule(queue) for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=False):  # the beat dies after its commit
        ids = services.schedule_dispatch_due(now=NOW)
    assert len(ids) == 3
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {RunStatus.QUEUED}
    [pending] = PendingSend.objects.all()
    assert sorted(pending.run_ids) == sorted(str(pk) for pk in ids)
    # The queue holds a backlog: an old QUEUED run is left to it, but these were never sent.
    redis.Redis.from_url(settings.REDIS_URL).lpush(queue, json.dumps({"backlog": True}))
    now = datetime.now(UTC)

    assert run_sweep(now=now, stale_after=timedelta(minutes=10)) == 0  # not stale yet
    assert run_sweep(now=now + timedelta(minutes=11), stale_after=timedelta(minutes=10)) == 3

    sent = [json.loads(__import__("base64").b64decode(m["body"]))[0][0] for m in _messages(queue) if "body" in m]
    assert sorted(sent) == sorted(str(pk) for pk in ids)  # each once
    assert not PendingSend.objects.exists()
    assert set(Run.objects.filter(schedule__in=schedules).values_list("status", flat=True)) == {RunStatus.QUEUED}


@pytest.mark.django_db(transaction=True)
def test_a_slot_dispatched_twice_still_has_one_run(queue: str) -> None:
    schedule = _schedule(queue)
    services.schedule_dispatch_due(now=NOW)
    # A stale beat that read the schedule before the first commit tries the same slot again.
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=NOW.replace(second=0))
    assert services.schedule_dispatch_due(now=NOW) == []
    assert len(_runs(schedule)) == 1
    assert len(_messages(queue)) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatchers_share_the_work_without_doubling(queue: str) -> None:
    schedules = [_schedule(queue, next_fire_at=NOW - timedelta(minutes=5)) for _ in range(40)]
    errors: list[BaseException] = []

    def beat() -> None:
        try:
            for _ in range(5):
                services.schedule_dispatch_due(now=NOW, limit=7)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=beat) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for schedule in schedules:
        slots = [run.scheduled_for for run in _runs(schedule)]
        assert len(slots) == len(set(slots))
    assert len(_messages(queue)) == Run.objects.filter(status=RunStatus.QUEUED).count()


def _outage(queue: str, policy: str, **fields: Any) -> Schedule:
    """A minutely schedule whose beat was down for an hour."""
    return _schedule(queue, misfire_policy=policy, next_fire_at=NOW.replace(second=0) - timedelta(hours=1), **fields)


@pytest.mark.django_db(transaction=True)
def test_misfire_run_all_catches_up_every_slot(queue: str) -> None:
    schedule = _outage(queue, "RUN_ALL")
    services.schedule_dispatch_due(now=NOW)
    runs = _runs(schedule)
    assert len(runs) == 61
    assert {run.status for run in runs} == {RunStatus.QUEUED}
    assert [run.scheduled_for for run in runs] == [NOW.replace(second=0) - timedelta(minutes=60 - n) for n in range(61)]


@pytest.mark.django_db(transaction=True)
def test_misfire_run_all_is_capped(queue: str) -> None:
    schedule = _schedule(queue, misfire_policy="RUN_ALL", next_fire_at=NOW.replace(second=0) - timedelta(hours=3))
    services.schedule_dispatch_due(now=NOW)
    runs = _runs(schedule)
    queued = [run for run in runs if run.status == RunStatus.QUEUED]
    missed = [run for run in runs if run.status == RunStatus.MISSED]
    assert len(queued) == services.RUN_ALL_CAP
    assert len(missed) == 181 - services.RUN_ALL_CAP
    assert max(run.scheduled_for for run in missed) < min(run.scheduled_for for run in queued)
    assert all("capped" in run.reason for run in missed)


@pytest.mark.django_db(transaction=True)
def test_misfire_run_once_coalesces(queue: str) -> None:
    schedule = _outage(queue, "RUN_ONCE")
    services.schedule_dispatch_due(now=NOW)
    runs = _runs(schedule)
    assert [run.status for run in runs] == [RunStatus.MISSED] * 60 + [RunStatus.QUEUED]
    assert runs[-1].scheduled_for == NOW.replace(second=0)
    assert "coalesced" in runs[0].reason
    assert len(_messages(queue)) == 1


@pytest.mark.django_db(transaction=True)
def test_misfire_skip_records_missed_slots_and_emits_events(queue: str) -> None:
    schedule = _outage(queue, "SKIP", misfire_grace_seconds=120)
    services.schedule_dispatch_due(now=NOW)
    runs = _runs(schedule)
    missed = [run for run in runs if run.status == RunStatus.MISSED]
    queued = [run for run in runs if run.status == RunStatus.QUEUED]
    # Slots up to 120 s late still run: 11:58:00 was 150 s late, 11:59 and 12:00 are on time.
    assert [run.scheduled_for for run in queued] == [
        NOW.replace(second=0) - timedelta(minutes=1),
        NOW.replace(second=0),
    ]
    assert len(missed) == 59
    assert all("grace" in run.reason for run in missed)
    events = OutboxEvent.objects.filter(type="scheduler.run.missed")
    assert events.count() == 59
    assert {event.aggregate_id for event in events} == {str(run.pk) for run in missed}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("policy", "active", "expected"),
    [
        ("ALLOW", 1, RunStatus.QUEUED),
        ("SKIP", 0, RunStatus.QUEUED),
        ("SKIP", 1, RunStatus.SKIPPED),
        ("BUFFER_ONE", 1, RunStatus.QUEUED),
        ("BUFFER_ONE", 2, RunStatus.SKIPPED),
    ],
    ids=["allow", "skip_idle", "skip_busy", "buffer_one_room", "buffer_one_full"],
)
def test_overlap_policies(queue: str, policy: str, active: int, expected: str) -> None:
    schedule = _schedule(queue, overlap_policy=policy)
    for n in range(active):
        RunFactory(schedule=schedule, status=RunStatus.RUNNING, scheduled_for=NOW - timedelta(hours=n + 1))
    services.schedule_dispatch_due(now=NOW)
    [new] = [run for run in _runs(schedule) if run.scheduled_for == NOW.replace(second=0)]
    assert new.status == expected
    if expected == RunStatus.SKIPPED:
        assert policy in new.reason


@pytest.mark.django_db(transaction=True)
def test_cancel_previous_cancels_what_has_not_started(queue: str) -> None:
    schedule = _schedule(queue, overlap_policy="CANCEL_PREVIOUS")
    waiting = RunFactory(schedule=schedule, status=RunStatus.QUEUED, scheduled_for=NOW - timedelta(hours=1))
    running = RunFactory(schedule=schedule, status=RunStatus.RUNNING, scheduled_for=NOW - timedelta(hours=2))
    services.schedule_dispatch_due(now=NOW)
    waiting.refresh_from_db()
    running.refresh_from_db()
    assert waiting.status == RunStatus.CANCELLED
    assert "CANCEL_PREVIOUS" in waiting.reason
    assert running.status == RunStatus.RUNNING  # a running run is not interrupted here
    assert Run.objects.get(schedule=schedule, scheduled_for=NOW.replace(second=0)).status == RunStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_jitter_delays_dispatch_deterministically_and_keeps_the_slot(queue: str) -> None:
    schedule = _schedule(queue, jitter_seconds=50)
    offset = services._jitter(schedule)
    assert offset == services._jitter(Schedule.objects.get(pk=schedule.pk))
    assert timedelta(0) <= offset <= timedelta(seconds=50)
    slot = NOW.replace(second=0)
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=slot + offset)
    assert services.schedule_dispatch_due(now=slot + offset - timedelta(microseconds=1)) == []
    services.schedule_dispatch_due(now=slot + offset)
    [run] = _runs(schedule)
    assert run.scheduled_for == slot
    schedule.refresh_from_db()
    assert schedule.next_fire_at == slot + timedelta(minutes=1) + offset


@pytest.mark.django_db(transaction=True)
def test_paused_and_future_schedules_are_not_dispatched(queue: str) -> None:
    paused = _schedule(queue, enabled=False)
    future = _schedule(queue, next_fire_at=NOW + timedelta(seconds=1))
    assert services.schedule_dispatch_due(now=NOW) == []
    assert _runs(paused) == []
    assert _runs(future) == []
    assert services.schedule_next_due() == NOW + timedelta(seconds=1)


@pytest.mark.django_db(transaction=True)
def test_one_shot_is_exhausted_after_its_run(queue: str) -> None:
    schedule = _schedule(queue, trigger={"version": 1, "type": "ONE_SHOT", "run_at": "2027-06-01T12:00:00+00:00"})
    services.schedule_dispatch_due(now=NOW)
    schedule.refresh_from_db()
    assert schedule.next_fire_at is None
    assert len(_runs(schedule)) == 1


@pytest.mark.django_db
def test_the_lease_has_one_holder_and_a_growing_fencing_token() -> None:
    ttl = timedelta(seconds=30)
    first = services.beat_lease_acquire(holder="beat-a", ttl=ttl)
    assert first is not None
    assert services.beat_lease_acquire(holder="beat-b", ttl=ttl) is None
    assert services.beat_lease_acquire(holder="beat-a", ttl=ttl) == first  # renewal keeps the token
    # The lease lapses (its holder died): the next beat takes it with a larger token.
    from schedules.models import BeatLease

    BeatLease.objects.filter(name="beat").update(expires_at=datetime(2000, 1, 1, tzinfo=UTC))
    second = services.beat_lease_acquire(holder="beat-b", ttl=ttl)
    assert second == first + 1
    assert services.beat_lease_acquire(holder="beat-a", ttl=ttl) is None
    services.beat_lease_release(holder="beat-b")
    assert services.beat_lease_acquire(holder="beat-a", ttl=ttl) == second + 1


@pytest.mark.django_db(transaction=True)
def test_sweeper_re_enqueues_what_the_broker_lost(queue: str) -> None:
    job = JobFactory(queue=queue)
    old = datetime.now(UTC) - timedelta(hours=1)
    lost = RunFactory(job=job, schedule=None, status=RunStatus.QUEUED)
    unsent = RunFactory(job=job, schedule=None, status=RunStatus.SCHEDULED)
    fresh = RunFactory(job=job, schedule=None, status=RunStatus.QUEUED)
    Run.objects.filter(pk__in=[lost.pk, unsent.pk]).update(created_at=old, queued_at=old)
    Run.objects.filter(pk=fresh.pk).update(queued_at=datetime.now(UTC))

    assert run_sweep(now=datetime.now(UTC), stale_after=timedelta(minutes=10)) == 2
    sent = {json.loads(__import__("base64").b64decode(m["body"]))[0][0] for m in _messages(queue)}
    assert sent == {str(lost.pk), str(unsent.pk)}


@pytest.mark.django_db(transaction=True)
def test_marking_sent_runs_queued_leaves_a_claimed_run_running_and_dates_it(queue: str) -> None:
    """A worker may claim a run whose message went out before the sender marked it QUEUED."""
    job = JobFactory(queue=queue)
    waiting = RunFactory(job=job, schedule=None, status=RunStatus.SCHEDULED)
    claimed = RunFactory(job=job, schedule=None, status=RunStatus.RUNNING)
    before = datetime.now(UTC)

    assert runs_enqueue_routed(routes=[run_route(waiting.pk, job), run_route(claimed.pk, job)]) == 2

    waiting.refresh_from_db()
    claimed.refresh_from_db()
    assert (waiting.status, claimed.status) == (RunStatus.QUEUED, RunStatus.RUNNING)
    assert waiting.queued_at is not None
    assert waiting.queued_at >= before
    assert claimed.queued_at is not None
    assert claimed.queued_at >= before
    assert len(_messages(queue)) == 2


@pytest.mark.django_db(transaction=True)
def test_schedule_changes_notify_sleeping_beats(api: Any) -> None:
    listener = psycopg2.connect(**connection.get_connection_params())
    listener.set_isolation_level(0)
    with listener.cursor() as cursor:
        cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
    try:
        response = api.post(
            "/api/v1/schedules",
            {"name": "n", "job": str(JobFactory().pk), "trigger": {"type": "CRON", "expression": "0 2 * * *"}},
            format="json",
        )
        assert response.status_code == 201
        ready, _, _ = select.select([listener], [], [], 5)
        assert ready, "no notification within 5 s"
        listener.poll()
        assert [n.channel for n in listener.notifies] == [NOTIFY_CHANNEL]
    finally:
        listener.close()
