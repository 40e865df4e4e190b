"""The worker fleet with real Celery worker and beat processes on PostgreSQL and Redis: workers
register themselves, beat, go offline on SIGTERM; a SIGKILLed worker is found offline by the beat
and its running run is finished by another worker; a drained worker takes no new runs.

Heartbeats every second and offline after four (``WORKER_HEARTBEAT_SECONDS``,
``WORKER_OFFLINE_AFTER_SECONDS``); run leases are long (30 s timeout + 30 s grace), so a run
taken back within seconds was taken back by the offline detection, not by its lease.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from runs.models import AttemptOutcome, Run, RunStatus
from scheduler_project.models import OutboxEvent
from tests.e2e.harness import Processes, Receiver, attempts, enqueue, http_job, wait_final, wait_for
from workers.models import Worker, WorkerStatus

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def processes(tmp_path: Path, queue: str) -> Iterator[Processes]:
    """Started after (so stopped before) ``queue``'s purge: no worker re-declares what it removed."""
    running = Processes(
        tmp_path, WORKER_HEARTBEAT_SECONDS="1", WORKER_OFFLINE_AFTER_SECONDS="4", RUN_LEASE_GRACE_SECONDS="30"
    )
    yield running
    running.stop()


# --- helpers --------------------------------------------------------------------------------------


def row(processes: Processes, process: subprocess.Popen[bytes]) -> Worker:
    return Worker.objects.get(tenant_id="", name=processes.hostname(process))


def events(worker: Worker, kind: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(worker.pk), type=f"scheduler.worker.{kind}").order_by("id"))


def wait_logged(processes: Processes, text: str, timeout: float = 15) -> None:
    wait_for(lambda: text in processes.logs(), timeout=timeout, message=processes.logs)


# --- tests ----------------------------------------------------------------------------------------


def test_a_worker_registers_beats_and_goes_offline_on_a_clean_shutdown(processes: Processes, queue: str) -> None:
    worker = processes.worker(queue, name="solo", concurrency=3, WORKER_CAPABILITIES="gpu")
    processes.wait_ready(worker)

    registered = row(processes, worker)
    assert (registered.status, registered.queues, registered.capabilities, registered.concurrency) == (
        WorkerStatus.ONLINE,
        [queue],
        ["gpu"],
        3,
    )
    assert registered.hostname == socket.gethostname()
    assert registered.version.startswith("celery ")
    assert registered.started_at is not None
    [event] = events(registered, "registered")
    assert (event.tenant_id, event.data["name"], event.data["restarted"]) == ("", "solo@e2e", False)
    first_beat = registered.last_heartbeat_at
    assert first_beat is not None
    wait_for(lambda: row(processes, worker).last_heartbeat_at > first_beat, timeout=5, message=processes.logs)
    second_beat = row(processes, worker).last_heartbeat_at
    wait_for(lambda: row(processes, worker).last_heartbeat_at > second_beat, timeout=5, message=processes.logs)

    os.kill(worker.pid, signal.SIGTERM)  # a warm shutdown of the main process, as Kubernetes does
    assert worker.wait(timeout=20) == 0

    stopped = row(processes, worker)
    assert (stopped.status, stopped.active_runs) == (WorkerStatus.OFFLINE, 0)
    [offline] = events(stopped, "offline")
    assert (offline.data["reason"], offline.data["previous_status"]) == ("shut down", "ONLINE")


def test_a_killed_worker_goes_offline_and_its_running_run_is_finished_by_another(
    processes: Processes, receiver: Receiver, queue: str
) -> None:
    # The first delivery is held long enough to kill its worker mid-run; the retry is answered.
    receiver.answer = lambda request, n: (200, {}, 20.0) if n == 1 else (200, {}, 0.0)
    job = http_job(receiver, queue, max_attempts=3, timeout_seconds=30)
    one, two = processes.worker(queue, name="one"), processes.worker(queue, name="two")
    processes.wait_all_ready(one, two, processes.beat())
    [run] = enqueue(job)
    wait_for(lambda: receiver.for_run(run.pk), timeout=15, message=processes.logs)
    [first] = attempts(run)
    victim = processes.by_hostname(first.worker_name)
    survivor = two if victim is one else one
    running = Run.objects.get(pk=run.pk)
    assert running.worker_id == row(processes, victim).pk
    wait_for(lambda: row(processes, victim).active_runs == 1, timeout=5, message=processes.logs)

    processes.kill(victim)
    run = wait_final(processes, run, timeout=30)

    assert run.status == RunStatus.SUCCEEDED
    lost, succeeded = attempts(run)
    assert (lost.outcome, lost.error_type, lost.worker_name) == (
        AttemptOutcome.LOST,
        "WorkerLost",
        processes.hostname(victim),
    )
    assert "went offline" in lost.error_message
    assert lost.finished_at is not None
    assert running.lease_expires_at is not None
    assert lost.finished_at < running.lease_expires_at  # the offline detection, not the lease
    assert (succeeded.outcome, succeeded.worker_name) == (AttemptOutcome.SUCCEEDED, processes.hostname(survivor))
    dead = row(processes, victim)
    assert dead.status == WorkerStatus.OFFLINE
    [offline] = events(dead, "offline")
    assert (offline.data["runs_taken_back"], offline.data["previous_status"]) == (1, "ONLINE")
    assert offline.data["reason"] == "no heartbeat for 4 s"
    assert row(processes, survivor).status == WorkerStatus.ONLINE
    assert len(receiver.for_run(run.pk)) == 2


def test_a_drained_worker_takes_no_new_runs_while_another_does(
    admin_client: Client, processes: Processes, receiver: Receiver, queue: str
) -> None:
    job = http_job(receiver, queue, timeout_seconds=30)
    drained, other = processes.worker(queue, name="drained"), processes.worker(queue, name="other")
    processes.wait_all_ready(drained, other)
    changelist = reverse("admin:workers_worker_changelist")

    admin_client.post(changelist, {"action": "drain", "_selected_action": [str(row(processes, drained).pk)]})

    assert row(processes, drained).status == WorkerStatus.DRAINING
    wait_logged(processes, f"Canceling queue {queue}")  # at its next heartbeat
    runs = enqueue(job, 6)
    for run in runs:
        assert wait_final(processes, run).status == RunStatus.SUCCEEDED
    assert {a.worker_name for run in runs for a in attempts(run)} == {"other@e2e"}
    assert row(processes, drained).status == WorkerStatus.DRAINING  # its heartbeats keep it so

    admin_client.post(changelist, {"action": "undrain", "_selected_action": [str(row(processes, drained).pk)]})
    wait_logged(processes, f"Started consuming from {queue}")
    os.kill(other.pid, signal.SIGTERM)
    assert other.wait(timeout=20) == 0
    later = enqueue(job, 2)

    for run in later:
        assert wait_final(processes, run).status == RunStatus.SUCCEEDED
    assert {a.worker_name for run in later for a in attempts(run)} == {"drained@e2e"}
    assert row(processes, drained).status == WorkerStatus.ONLINE
    assert row(processes, other).status == WorkerStatus.OFFLINE
