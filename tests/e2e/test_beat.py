"""Real beat processes (`celery -A scheduler_project beat`) on PostgreSQL and Redis: several
at once give every per-second slot exactly one run, and killing the leader loses nothing."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from runs.models import PendingSend, Run
from runs.services import run_sweep
from scheduler_project.config import BASE_DIR
from schedules.beat import Scheduler
from schedules.models import BeatLease, Schedule
from tests.factories import JobFactory, ScheduleFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
EVERY_SECOND = {"version": 1, "type": "CRON", "expression": "* * * * * *"}


class Beats:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[bytes]] = []
        database = connection.settings_dict
        self.env = {
            **os.environ,
            "POSTGRES_URL": f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
            "DATA_DIR": str(tmp_path),
        }

    def start(self) -> subprocess.Popen[bytes]:
        n = len(self.processes)
        log = (self.tmp_path / f"beat-{n}.log").open("wb")
        process = subprocess.Popen(
            [str(BASE_DIR / ".venv" / "bin" / "celery"), "-A", "scheduler_project", "beat", "--loglevel", "INFO",
             "--schedule", str(self.tmp_path / f"beat-{n}.db")],
            cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def logs(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.tmp_path.glob("beat-*.log")))


@pytest.fixture
def beats(tmp_path: Path) -> Iterator[Beats]:
    running = Beats(tmp_path)
    yield running
    running.stop()


def _slots_are_contiguous(schedule: Schedule) -> tuple[int, list[str]]:
    slots = list(
        Run.objects.filter(schedule=schedule).order_by("scheduled_for").values_list("scheduled_for", flat=True)
    )
    gaps = [f"{a:%H:%M:%S} -> {b:%H:%M:%S}" for a, b in itertools.pairwise(slots) if b - a != timedelta(seconds=1)]
    return len(slots), gaps


def test_three_then_two_beats_give_every_slot_of_a_minute_exactly_one_run_across_the_leaders_death(
    beats: Beats, queue: str
) -> None:
    """Three beats for half a minute of per-second schedules; the leader killed; the two left for
    another half minute after one of them took the lease."""
    start = timezone.now().replace(microsecond=0) + timedelta(seconds=3)
    job = JobFactory(queue=queue)
    schedules = [
        ScheduleFactory(job=job, trigger=EVERY_SECOND, timezone="UTC", next_fire_at=start, misfire_policy="RUN_ALL")
        for _ in range(5)
    ]
    for _ in range(3):
        beats.start()

    deadline = time.monotonic() + 30
    while not BeatLease.objects.filter(name="beat", expires_at__gt=timezone.now()).exists():
        assert time.monotonic() < deadline, beats.logs()
        time.sleep(0.2)
    time.sleep(30)

    leader = BeatLease.objects.get(name="beat")
    leader_pid = int(leader.holder.split(":")[1])
    victim = next(p for p in beats.processes if p.pid == leader_pid)
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = timezone.now()

    deadline = time.monotonic() + 30
    while True:
        lease = BeatLease.objects.get(name="beat")
        if lease.holder != leader.holder and lease.expires_at > timezone.now():
            break
        assert time.monotonic() < deadline, f"no standby took over\n{beats.logs()}"
        time.sleep(0.2)
    takeover = timezone.now() - killed_at
    assert lease.token == leader.token + 1
    assert takeover <= timedelta(seconds=settings.BEAT_LEASE_SECONDS + 6), takeover
    time.sleep(30)
    beats.stop()
    end = timezone.now()

    for schedule in schedules:
        count, gaps = _slots_are_contiguous(schedule)
        assert gaps == [], f"missing slots {gaps}\n{beats.logs()[-3000:]}"
        # From the start to the stop, one run per second (the unique slot constraint rules out
        # a second run; the count rules out a missing one).
        assert count >= (end - start).total_seconds() - 3, count
        assert count >= 60, count
        first = Run.objects.filter(schedule=schedule).order_by("scheduled_for").first()
        assert first is not None
        assert first.scheduled_for == start
    # Every run's message is on the broker, except those of a batch the killed leader had
    # committed but not yet sent: its marker is left, and the sweeper sends them (here at once;
    # the queue's backlog keeps it from sending again the runs that were sent).
    unsent = [run_id for run_ids in PendingSend.objects.values_list("run_ids", flat=True) for run_id in run_ids]
    assert len(unsent) <= Scheduler.batch_size
    stale_after = timedelta(seconds=settings.RUN_REQUEUE_AFTER_SECONDS)
    assert run_sweep(now=timezone.now() + 2 * stale_after, stale_after=stale_after) == len(unsent)
    messages = redis.Redis.from_url(settings.REDIS_URL).llen(queue)
    assert messages == Run.objects.filter(job=job).count()


def _wait_for_lease(beats: Beats) -> None:
    deadline = time.monotonic() + 30
    while not BeatLease.objects.filter(name="beat", expires_at__gt=timezone.now()).exists():
        assert time.monotonic() < deadline, beats.logs()
        time.sleep(0.2)


def _one_shot_at(client: Any, job_id: str, at: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/schedules",
        {"name": "soon", "job": job_id, "trigger": {"type": "ONE_SHOT", "run_at": at.isoformat()}},
        format="json",
    )
    assert response.status_code == 201, response.content
    return dict(response.json())


def test_a_sleeping_beat_wakes_for_a_new_slot_and_follows_edits(beats: Beats, queue: str, api: Any) -> None:
    job = JobFactory(queue=queue)
    beats.start()
    _wait_for_lease(beats)
    time.sleep(2)  # the beat is asleep now: nothing is due

    # Created through the API: the commit notifies the beat, which sleeps only until the slot.
    for delay in (1.0, 1.4, 1.8):
        at = timezone.now() + timedelta(seconds=delay)
        schedule = _one_shot_at(api, str(job.pk), at)
        deadline = time.monotonic() + 10
        while not Run.objects.filter(schedule_id=schedule["id"], queued_at__isnull=False).exists():
            assert time.monotonic() < deadline, beats.logs()[-3000:]
            time.sleep(0.05)
        run = Run.objects.get(schedule_id=schedule["id"])
        assert run.queued_at is not None
        lag = run.queued_at - run.scheduled_for
        assert timedelta(0) <= lag < timedelta(seconds=1), lag

    # Edited while the beat waits for it: the run follows the edit, and the old time fires nothing.
    original = timezone.now().replace(microsecond=0) + timedelta(seconds=6)
    schedule = _one_shot_at(api, str(job.pk), original)
    moved = original - timedelta(seconds=4)
    response = api.patch(
        f"/api/v1/schedules/{schedule['id']}",
        {"trigger": {"type": "ONE_SHOT", "run_at": moved.isoformat()}},
        format="json",
    )
    assert response.status_code == 200, response.content
    while timezone.now() < original + timedelta(seconds=2):
        time.sleep(0.2)
    assert list(Run.objects.filter(schedule_id=schedule["id"]).values_list("scheduled_for", flat=True)) == [moved]
