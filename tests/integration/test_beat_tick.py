"""The beat's tick in-process on real PostgreSQL and Redis: the one-statement probe of what is due
next, the idle tick's statements, retries and lapsed leases found through the probe, and a
periodic task's change seen without a query of django-celery-beat's own.
(tests/e2e/test_beat.py runs real beat processes.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from runs import services as run_services
from runs.models import AttemptOutcome, Run, RunAttempt, RunStatus
from scheduler_project.celery import app as celery_app
from schedules.beat import Scheduler
from schedules.selectors import BeatProbe, beat_probe
from schedules.wakeup import NOTIFY_CHANNEL
from tests.e2e.harness import Receiver
from tests.factories import JobFactory, RunFactory, ScheduleFactory, WorkerFactory
from workers.models import Worker, WorkerStatus

pytestmark = pytest.mark.django_db(transaction=True)  # the tick resets connections, as the beat does

MINUTELY = {"version": 1, "type": "CRON", "expression": "* * * * *"}


@pytest.fixture(autouse=True)
def _no_relay(settings: Any) -> None:
    settings.OUTBOX_RELAY_IN_BEAT = False  # the leader's NATS relay thread is not under test here


@pytest.fixture
def beats() -> Iterator[list[Scheduler]]:
    """Schedulers made through ``make``; each closed (lease released, LISTEN dropped) afterwards."""
    made: list[Scheduler] = []
    yield made
    for scheduler in made:
        scheduler.close()


def _beat(beats: list[Scheduler], *, sleep: bool = False, **kwargs: Any) -> Scheduler:
    scheduler = Scheduler(app=celery_app, **kwargs)
    if not sleep:
        scheduler._wait = lambda seconds: seconds  # type: ignore[method-assign]  # no LISTEN, no sleep
    beats.append(scheduler)
    return scheduler


def _seed(base: Any) -> None:
    """A schedule due in 30 s, a retry in 20 s, a running run's lease lapsing in 10 s, and rows
    that must not count: a paused schedule, a queued run with a lease, a retry without a time."""
    job = JobFactory()
    ScheduleFactory(job=job, trigger=MINUTELY, timezone="UTC", next_fire_at=base + timedelta(seconds=30))
    ScheduleFactory(job=job, trigger=MINUTELY, timezone="UTC", enabled=False, next_fire_at=base)
    RunFactory(job=job, schedule=None, status=RunStatus.RETRYING, next_attempt_at=base + timedelta(seconds=20))
    RunFactory(job=job, schedule=None, status=RunStatus.RETRYING, next_attempt_at=None)
    RunFactory(job=job, schedule=None, status=RunStatus.RUNNING, lease_expires_at=base + timedelta(seconds=10))
    RunFactory(job=job, schedule=None, status=RunStatus.QUEUED, lease_expires_at=base)


@pytest.mark.parametrize("vendor", ["postgresql", "other"])
def test_the_probe_reads_the_earliest_schedule_retry_and_lapsing_lease(
    monkeypatch: pytest.MonkeyPatch, vendor: str
) -> None:
    # "other": the ORM path SQLite takes, one query per value, must read the same.
    base = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    assert beat_probe(leader=True) == BeatProbe(schedule=None, retry=None)
    _seed(base)
    PeriodicTask.objects.create(
        name="housekeeping", task="noop", interval=IntervalSchedule.objects.create(every=1, period="hours")
    )
    if vendor != "postgresql":
        monkeypatch.setattr(connection, "vendor", vendor)

    leader, standby = beat_probe(leader=True), beat_probe(leader=False)

    # The lease is told in the beat's time (the database's clock here is the same, give or take
    # the round trip): test_a_lease_is_told_in_the_beats_time below.
    assert leader.lease_expiry is not None
    assert abs(leader.lease_expiry - (base + timedelta(seconds=10))) < timedelta(seconds=1)
    assert replace(leader, lease_expiry=base + timedelta(seconds=10)) == BeatProbe(
        schedule=base + timedelta(seconds=30),
        retry=base + timedelta(seconds=20),
        lease_expiry=base + timedelta(seconds=10),
        periodic_change=PeriodicTasks.last_change(),
    )
    assert leader.periodic_change is not None
    assert leader.earliest == leader.lease_expiry
    # A standby takes back no lapsed runs and serves no periodic tasks: it reads neither.
    assert standby == BeatProbe(schedule=base + timedelta(seconds=30), retry=base + timedelta(seconds=20))
    assert standby.earliest == base + timedelta(seconds=20)


def test_a_lease_is_told_in_the_beats_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leases run by the database's clock; a beat whose clock is an hour ahead must see a lease
    lapsing in ten seconds as lapsing ten seconds from its own now, not as lapsed an hour ago
    (it would wake over and over to take back runs that still hold their lease)."""
    lapses = timezone.now() + timedelta(seconds=10)
    RunFactory(job=JobFactory(), schedule=None, status=RunStatus.RUNNING, lease_expires_at=lapses)
    real_now = timezone.now
    monkeypatch.setattr("schedules.selectors.timezone.now", lambda: real_now() + timedelta(hours=1))

    probe = beat_probe(leader=True)

    assert probe.lease_expiry is not None
    assert abs(probe.lease_expiry - (lapses + timedelta(hours=1))) < timedelta(seconds=1)


def test_an_idle_tick_is_the_lease_and_one_probe_and_sleeps_until_the_next_due(beats: list[Scheduler]) -> None:
    next_fire = timezone.now() + timedelta(seconds=20)
    ScheduleFactory(trigger=MINUTELY, timezone="UTC", next_fire_at=next_fire)
    leader, standby = _beat(beats, max_interval=60), _beat(beats, max_interval=60)
    for _ in range(3):  # the first ticks: the sweeper's first pass, django-celery-beat's first reads
        for scheduler in (leader, standby):
            scheduler.tick()
    assert leader.token is not None
    assert standby.token is None

    for scheduler in (leader, standby):
        with CaptureQueriesContext(connection) as queries:
            sleep = scheduler.tick()
        statements = [query["sql"] for query in queries.captured_queries]
        assert len(statements) == 2, "\n".join(" ".join(s.split())[:200] for s in statements)
        assert statements[0].lstrip().startswith("INSERT INTO schedules_beatlease")
        assert statements[1].startswith("SELECT (SELECT")
        assert 0 < sleep <= (next_fire - timezone.now()).total_seconds() + 0.05


def test_a_due_schedule_and_a_due_retry_are_dispatched_by_a_standbys_tick(beats: list[Scheduler], queue: str) -> None:
    job = JobFactory(queue=queue)
    at = timezone.now().replace(microsecond=0) - timedelta(seconds=1)
    one_shot = {"version": 1, "type": "ONE_SHOT", "run_at": at.isoformat()}
    schedule = ScheduleFactory(job=job, trigger=one_shot, timezone="UTC", next_fire_at=at)
    retry = RunFactory(job=job, schedule=None, status=RunStatus.RETRYING, next_attempt_at=at)
    _beat(beats)._lead()  # another beat leads: standbys dispatch too
    standby = _beat(beats, max_interval=30)

    sleep = standby.tick()

    assert standby.token is None
    assert Run.objects.get(pk=retry.pk).status == RunStatus.QUEUED
    [run] = Run.objects.filter(schedule=schedule)
    assert run.status == RunStatus.QUEUED
    # Read again after dispatching: nothing is left, so it sleeps its longest, not 0.
    assert sleep == 30


def test_the_leaders_tick_takes_back_a_run_whose_lease_lapsed_and_a_standbys_does_not(
    beats: list[Scheduler],
) -> None:
    job = JobFactory(max_attempts=3, backoff_strategy="FIXED", backoff_base_seconds=60, backoff_max_seconds=60)
    lapsed = RunFactory(
        job=job,
        schedule=None,
        status=RunStatus.RUNNING,
        attempt=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    RunAttempt.objects.create(run=lapsed, number=1, started_at=timezone.now(), worker_name="gone@host")
    leader, standby = _beat(beats), _beat(beats)
    leader._lead()

    standby.tick()
    assert Run.objects.get(pk=lapsed.pk).status == RunStatus.RUNNING
    sleep = leader.tick()

    lapsed.refresh_from_db()
    assert lapsed.status == RunStatus.RETRYING
    assert lapsed.attempts.get().outcome == AttemptOutcome.LOST
    # Read again after taking it back: the next thing due is its retry, a minute ahead.
    assert sleep == pytest.approx(float(leader.max_interval))


def test_a_retry_set_while_the_beat_sleeps_is_enqueued_when_it_is_due(
    beats: list[Scheduler], receiver: Receiver, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The beat may sleep 30 s: only the NOTIFY of the failed attempt can make it see the retry in time.
    monkeypatch.setattr(Scheduler, "lease_ttl", timedelta(seconds=90))
    receiver.answer = lambda request, n: (503, {}, 0.0)
    job = JobFactory(
        queue=queue,
        target={"type": "HTTP", "method": "POST", "url": receiver.url, "headers": {}},
        max_attempts=3,
        backoff_strategy="FIXED",
        backoff_base_seconds=1,
        backoff_max_seconds=1,
    )
    run = RunFactory(job=job, schedule=None, kind="MANUAL", status=RunStatus.QUEUED)
    beat = _beat(beats, sleep=True, max_interval=30)
    stop = threading.Event()

    def loop() -> None:  # celery.beat.Service's loop: tick, sleep what it says
        try:
            while not stop.is_set():
                time.sleep(beat.tick())
        finally:
            connection.close()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        _until(lambda: beat.token is not None)
        time.sleep(0.3)  # it has probed, found nothing due, and sleeps

        assert run_services.run_execute(run_id=run.pk) == RunStatus.RETRYING
        due = Run.objects.get(pk=run.pk).next_attempt_at
        assert due is not None
        _until(lambda: Run.objects.get(pk=run.pk).status == RunStatus.QUEUED, timeout=5)
        queued = Run.objects.get(pk=run.pk).queued_at
    finally:
        stop.set()
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")  # ends its sleep
        thread.join(timeout=10)
    assert queued is not None
    assert timedelta(0) <= queued - due < timedelta(seconds=5)  # not the 30 s the beat would sleep


def test_a_periodic_task_changed_by_an_operator_is_read_by_the_leaders_next_tick(beats: list[Scheduler]) -> None:
    PeriodicTasks.update_changed()  # django-celery-beat counts a change from the first marker it saw
    leader = _beat(beats)
    leader.tick()
    assert "housekeeping" not in leader.old_schedulers

    PeriodicTask.objects.create(
        name="housekeeping", task="noop", interval=IntervalSchedule.objects.create(every=1, period="hours")
    )
    leader.tick()

    assert "housekeeping" in leader.old_schedulers  # django-celery-beat rebuilt its heap
    PeriodicTask.objects.filter(name="housekeeping").update(enabled=False)
    PeriodicTasks.update_changed()
    leader.tick()
    assert "housekeeping" not in leader.old_schedulers


def test_the_leader_checks_for_silent_workers_every_half_heartbeat(beats: list[Scheduler], settings: Any) -> None:
    settings.WORKER_HEARTBEAT_SECONDS = 10
    settings.WORKER_OFFLINE_AFTER_SECONDS = 20
    long_ago = timezone.now() - timedelta(minutes=5)
    first = WorkerFactory(name="celery@first", last_heartbeat_at=long_ago)
    leader = _beat(beats)
    leader._database_up_since = long_ago  # it has reached the database for longer than the period

    leader.tick()
    assert Worker.objects.get(pk=first.pk).status == WorkerStatus.OFFLINE
    second = WorkerFactory(name="celery@second", last_heartbeat_at=long_ago)
    leader.tick()
    assert Worker.objects.get(pk=second.pk).status == WorkerStatus.ONLINE  # checked less than 5 s ago
    leader._offline_checked_at -= 5  # half a heartbeat later
    leader.tick()
    assert Worker.objects.get(pk=second.pk).status == WorkerStatus.OFFLINE


def _until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
