"""The worker fleet on real PostgreSQL: registration, heartbeats, draining, offline detection with
failover of the running runs, and the worker API. (tests/e2e/test_workers.py runs the same
through real Celery worker and beat processes.)"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db.models import F
from django.utils import timezone
from rest_framework.test import APIClient

from runs import services as run_services
from runs.models import AttemptOutcome, Run, RunAttempt, RunStatus
from scheduler_project.api import scopes
from scheduler_project.models import OutboxEvent
from tests.factories import OTHER_TENANT, TENANT, JobFactory, RunFactory, WorkerFactory
from workers import services
from workers.models import Worker, WorkerStatus

pytestmark = pytest.mark.django_db

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def _register(name: str = "celery@host-1", tenant_id: str = "", **fields: Any) -> Worker:
    defaults: dict[str, Any] = {
        "hostname": "host-1",
        "queues": ["default", "reports"],
        "capabilities": ["gpu", "eu"],
        "concurrency": 4,
        "version": "celery 5.7.0",
    }
    worker, _ = services.worker_register(tenant_id=tenant_id, name=name, **{**defaults, **fields})
    return worker


def _events(worker: Worker, kind: str | None = None) -> list[OutboxEvent]:
    events = OutboxEvent.objects.filter(aggregate_type="worker", aggregate_id=str(worker.pk)).order_by("id")
    return list(events.filter(type=f"scheduler.worker.{kind}") if kind else events)


def _running_on(worker: Worker, **job_fields: Any) -> Run:
    """A run claimed by ``worker`` the way its Celery task claims it: by the worker's name."""
    run = RunFactory(job=JobFactory(**job_fields), schedule=None, kind="MANUAL", status=RunStatus.QUEUED)
    claim = run_services.run_claim(run_id=run.pk, worker_name=worker.name)
    assert claim is not None
    return Run.objects.get(pk=run.pk)


def _silence(worker: Worker, seconds: float) -> None:
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat_at=F("last_heartbeat_at") - timedelta(seconds=seconds))


# --- registration ----------------------------------------------------------------------------


def test_register_records_the_worker_online_with_an_event() -> None:
    before = timezone.now()
    worker, created = services.worker_register(
        tenant_id="",
        name="celery@host-1",
        hostname="host-1",
        queues=["default", "reports"],
        capabilities=["gpu", "eu", "gpu"],
        concurrency=4,
        version="celery 5.7.0",
    )

    assert created
    worker.refresh_from_db()
    assert (worker.status, worker.queues, worker.capabilities, worker.concurrency, worker.version) == (
        WorkerStatus.ONLINE,
        ["default", "reports"],
        ["eu", "gpu"],
        4,
        "celery 5.7.0",
    )
    assert worker.tenant_id == ""
    assert worker.started_at is not None
    assert worker.last_heartbeat_at is not None
    assert worker.started_at >= before - timedelta(seconds=5)  # the database's clock, near ours
    [event] = _events(worker)
    assert (event.type, event.tenant_id) == ("scheduler.worker.registered", "")
    assert event.data["name"] == "celery@host-1"
    assert event.data["queues"] == ["default", "reports"]
    assert (event.data["restarted"], event.data["previous_status"], event.data["runs_taken_back"]) == (False, None, 0)


def test_registering_again_is_a_restart_that_takes_back_the_previous_process_runs() -> None:
    worker = _register(concurrency=2)
    lost = _running_on(worker)
    services.worker_mark_offline(worker_id=worker.pk, reason="shut down")  # an older restart
    Worker.objects.filter(pk=worker.pk).update(status=WorkerStatus.ONLINE)
    orphan = _running_on(worker)  # a run of the process that is about to be replaced

    again, created = services.worker_register(
        tenant_id="", name=worker.name, hostname="host-2", queues=["default"], concurrency=8
    )

    assert not created
    assert again.pk == worker.pk
    assert (again.hostname, again.queues, again.capabilities, again.concurrency, again.status) == (
        "host-2",
        ["default"],
        [],
        8,
        WorkerStatus.ONLINE,
    )
    assert Worker.objects.count() == 1
    orphan.refresh_from_db()
    assert orphan.status == RunStatus.RETRYING
    [attempt] = RunAttempt.objects.filter(run=orphan)
    assert (attempt.outcome, attempt.error_type) == (AttemptOutcome.LOST, "WorkerLost")
    assert "went offline" in attempt.error_message
    assert Run.objects.get(pk=lost.pk).status == RunStatus.RETRYING  # taken back by the shutdown
    registered = _events(worker, "registered")
    assert [e.data["restarted"] for e in registered] == [False, True]
    assert registered[-1].data["runs_taken_back"] == 1


def test_a_late_registration_leaves_the_runs_under_its_name_alone() -> None:
    """A Celery worker whose registration at start-up failed registers from its heartbeat thread,
    after it may have claimed runs itself: those must not be taken back."""
    worker = _register()
    run = _running_on(worker)

    services.worker_register(
        tenant_id="", name=worker.name, hostname="host-1", queues=["default"], take_back_runs=False
    )

    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert _events(worker, "registered")[-1].data["runs_taken_back"] == 0


def test_names_are_unique_per_tenant() -> None:
    shared = _register("reports-1")
    acme = _register("reports-1", tenant_id=TENANT)
    globex = _register("reports-1", tenant_id=OTHER_TENANT)

    assert len({shared.pk, acme.pk, globex.pk}) == 3
    assert _register("reports-1", tenant_id=TENANT).pk == acme.pk


def test_a_drained_worker_registers_again_draining() -> None:
    worker = services.worker_drain(worker=_register())

    assert _register().status == WorkerStatus.DRAINING
    assert Worker.objects.get(pk=worker.pk).drained_at is not None


# --- claims and heartbeats ---------------------------------------------------------------------


def test_a_claim_links_the_run_and_its_attempt_to_the_registered_worker() -> None:
    worker = _register()

    run = _running_on(worker)
    stranger = RunFactory(job=JobFactory(), schedule=None, kind="MANUAL", status=RunStatus.QUEUED)
    run_services.run_claim(run_id=stranger.pk, worker_name="unregistered@host")

    assert run.worker_id == worker.pk
    assert RunAttempt.objects.get(run=run).worker_id == worker.pk
    assert Run.objects.get(pk=stranger.pk).worker_id is None
    assert RunAttempt.objects.get(run=stranger).worker_name == "unregistered@host"


def test_a_heartbeat_moves_last_heartbeat_at_and_counts_the_running_runs() -> None:
    worker = _register()
    _silence(worker, 30)
    silent_since = Worker.objects.get(pk=worker.pk).last_heartbeat_at
    _running_on(worker)
    _running_on(worker)
    _running_on(_register("celery@host-2"))  # another worker's

    beat = services.worker_heartbeat(worker_id=worker.pk)

    assert beat.last_heartbeat_at is not None
    assert silent_since is not None
    assert beat.last_heartbeat_at > silent_since
    assert (beat.status, beat.active_runs, beat.utilisation) == (WorkerStatus.ONLINE, 2, 0.5)
    assert services.worker_heartbeat(worker_id=worker.pk, active_runs=3).active_runs == 3


def test_heartbeat_events_come_on_a_status_change_or_once_per_window(settings: Any) -> None:
    settings.WORKER_HEARTBEAT_EVENT_SECONDS = 10**9  # 31 years: one window from 2001 to 2033
    worker = _register()
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat_at=LONG_AGO)

    services.worker_heartbeat(worker_id=worker.pk)  # the first of a new window: a sample
    for _ in range(5):
        services.worker_heartbeat(worker_id=worker.pk)  # the same window: nothing

    [sample] = _events(worker, "heartbeat")
    assert (sample.data["status"], sample.data["previous_status"]) == ("ONLINE", "ONLINE")

    Worker.objects.filter(pk=worker.pk).update(status=WorkerStatus.OFFLINE)
    revived = services.worker_heartbeat(worker_id=worker.pk)  # alive after all: a status change

    assert revived.status == WorkerStatus.ONLINE
    change = _events(worker, "heartbeat")[-1]
    assert (change.data["status"], change.data["previous_status"]) == ("ONLINE", "OFFLINE")
    assert len(_events(worker, "heartbeat")) == 2


def test_a_heartbeat_of_an_unknown_worker_asks_it_to_register() -> None:
    worker = _register()
    Worker.objects.filter(pk=worker.pk).delete()

    with pytest.raises(Worker.DoesNotExist):
        services.worker_heartbeat(worker_id=worker.pk)


# --- draining ----------------------------------------------------------------------------------


def test_drain_and_undrain_are_recorded_once_and_answered_by_the_heartbeat() -> None:
    worker = _register()

    drained = services.worker_drain(worker=worker)
    services.worker_drain(worker=worker)  # again: nothing changes

    assert drained.status == WorkerStatus.DRAINING
    assert services.worker_heartbeat(worker_id=worker.pk).status == WorkerStatus.DRAINING
    undrained = services.worker_undrain(worker=worker)
    services.worker_undrain(worker=worker)
    assert (undrained.status, undrained.drained_at) == (WorkerStatus.ONLINE, None)
    assert services.worker_heartbeat(worker_id=worker.pk).status == WorkerStatus.ONLINE
    assert [e.type for e in _events(worker) if "drained" in e.type] == [
        "scheduler.worker.drained",
        "scheduler.worker.undrained",
    ]


# --- going offline -----------------------------------------------------------------------------


def test_a_silent_worker_is_marked_offline_and_its_running_runs_are_retried_at_once() -> None:
    silent = _register("celery@silent", concurrency=2)
    draining = services.worker_drain(worker=_register("celery@draining"))
    alive = _register("celery@alive")
    gone = _register("celery@gone")
    services.worker_mark_offline(worker_id=gone.pk, reason="shut down")
    lost = _running_on(silent, max_attempts=3, backoff_strategy="FIXED", backoff_base_seconds=7)
    spent = _running_on(silent, max_attempts=1)
    kept = _running_on(alive)
    for worker in (silent, draining, gone):
        _silence(worker, 61)

    found = services.workers_detect_offline(offline_after=timedelta(seconds=60))

    assert {w.pk for w in found} == {silent.pk, draining.pk}
    statuses = dict(Worker.objects.values_list("name", "status"))
    assert statuses == {
        "celery@silent": WorkerStatus.OFFLINE,
        "celery@draining": WorkerStatus.OFFLINE,
        "celery@alive": WorkerStatus.ONLINE,
        "celery@gone": WorkerStatus.OFFLINE,
    }
    lost.refresh_from_db()
    assert lost.status == RunStatus.RETRYING  # retried per the job's backoff, long before its lease
    assert lost.lease_expires_at is None
    assert lost.next_attempt_at is not None
    assert 6 <= (lost.next_attempt_at - timezone.now()).total_seconds() <= 7
    [attempt] = RunAttempt.objects.filter(run=lost)
    assert (attempt.outcome, attempt.error_type, attempt.worker_name) == (
        AttemptOutcome.LOST,
        "WorkerLost",
        "celery@silent",
    )
    assert Run.objects.get(pk=spent.pk).status == RunStatus.DEAD
    assert Run.objects.get(pk=kept.pk).status == RunStatus.RUNNING
    [offline] = _events(silent, "offline")
    assert offline.tenant_id == ""
    assert (offline.data["status"], offline.data["previous_status"], offline.data["runs_taken_back"]) == (
        "OFFLINE",
        "ONLINE",
        2,
    )
    assert offline.data["reason"] == "no heartbeat for 60 s"
    assert _events(draining, "offline")[0].data["previous_status"] == "DRAINING"
    assert len(_events(gone, "offline")) == 1  # the shutdown's, not a second one
    assert services.workers_detect_offline(offline_after=timedelta(seconds=60)) == []


def test_offline_detection_reads_the_default_period_from_the_settings(settings: Any) -> None:
    settings.WORKER_OFFLINE_AFTER_SECONDS = 120
    worker = _register()
    _silence(worker, 90)

    assert services.workers_detect_offline() == []
    _silence(worker, 60)
    assert [w.pk for w in services.workers_detect_offline()] == [worker.pk]


def test_a_heartbeat_that_arrived_in_time_keeps_the_worker_online() -> None:
    worker = _register()
    _silence(worker, 61)
    services.worker_heartbeat(worker_id=worker.pk)  # between the scan and the lock, say

    assert services.worker_mark_offline(worker_id=worker.pk, reason="late", silent_for=timedelta(seconds=60)) is None
    assert Worker.objects.get(pk=worker.pk).status == WorkerStatus.ONLINE
    assert _events(worker, "offline") == []


def test_a_drained_worker_that_went_offline_comes_back_draining() -> None:
    worker = services.worker_drain(worker=_register())
    services.worker_mark_offline(worker_id=worker.pk, reason="shut down")

    assert services.worker_heartbeat(worker_id=worker.pk).status == WorkerStatus.DRAINING


def test_a_late_result_of_a_run_taken_back_from_an_offline_worker_stays_on_its_attempt() -> None:
    worker = _register()
    run = RunFactory(job=JobFactory(), schedule=None, kind="MANUAL", status=RunStatus.QUEUED)
    claim = run_services.run_claim(run_id=run.pk, worker_name=worker.name)
    assert claim is not None
    services.worker_mark_offline(worker_id=worker.pk, reason="test")

    from runs.targets.base import Receipt

    outcome = run_services.run_attempt_succeeded(claim=claim, receipt=Receipt(status=200, latency_ms=5))

    assert outcome == "superseded"
    assert Run.objects.get(pk=run.pk).status == RunStatus.RETRYING
    assert RunAttempt.objects.get(pk=claim.attempt.pk).outcome == AttemptOutcome.SUCCEEDED


def test_offline_workers_past_retention_are_purged_and_their_attempts_keep_the_name() -> None:
    old = _register("celery@old-pod")
    _running_on(old)
    services.worker_mark_offline(worker_id=old.pk, reason="shut down")
    _silence(old, 8 * 86400)
    recent = _register("celery@recent-pod")
    services.worker_mark_offline(worker_id=recent.pk, reason="shut down")
    _silence(recent, 6 * 86400)
    silent_but_live = _register("celery@live-pod")  # not yet found offline: never purged
    _silence(silent_but_live, 30 * 86400)

    assert services.workers_purge_offline(older_than=timedelta(days=7)) == 1

    assert set(Worker.objects.values_list("name", flat=True)) == {"celery@recent-pod", "celery@live-pod"}
    attempt = RunAttempt.objects.get(worker_name="celery@old-pod")
    assert attempt.worker_id is None
    assert attempt.run.worker_id is None
    assert services.workers_purge_offline(older_than=timedelta(days=7)) == 0


# --- API ---------------------------------------------------------------------------------------


def _register_body(name: str = "reports-1@ext") -> dict[str, Any]:
    return {"name": name, "hostname": "ext.internal", "queues": ["reports"], "capabilities": ["gpu"], "concurrency": 4}


@pytest.fixture
def worker_api(client_for: Any) -> APIClient:
    return client_for(TENANT, scopes.WORKER)


@pytest.fixture
def operator_api(client_for: Any) -> APIClient:
    return client_for(TENANT, scopes.OPERATE)


def test_api_register_makes_a_dedicated_worker_idempotently(worker_api: APIClient, other_api: APIClient) -> None:
    first = worker_api.post("/api/v1/workers/register", _register_body(), format="json")
    again = worker_api.post(
        "/api/v1/workers/register", {**_register_body(), "concurrency": 8, "version": "2.0"}, format="json"
    )

    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    body = again.json()
    assert body["id"] == first.json()["id"]
    assert (body["dedicated"], body["status"], body["concurrency"], body["version"]) == (True, "ONLINE", 8, "2.0")
    assert (body["queues"], body["capabilities"], body["active_runs"], body["utilisation"]) == (
        ["reports"],
        ["gpu"],
        0,
        0.0,
    )
    assert Worker.objects.get(pk=body["id"]).tenant_id == TENANT
    # Another tenant neither sees it nor collides with its name.
    assert other_api.get(f"/api/v1/workers/{body['id']}").status_code == 404
    theirs = other_api.post("/api/v1/workers/register", _register_body(), format="json")
    assert theirs.status_code == 201
    assert theirs.json()["id"] != body["id"]


def test_api_heartbeat_answers_the_status_to_follow(worker_api: APIClient, operator_api: APIClient) -> None:
    worker_id = worker_api.post("/api/v1/workers/register", _register_body(), format="json").json()["id"]
    url = f"/api/v1/workers/{worker_id}"

    beat = worker_api.post(f"{url}/heartbeat", {"active_runs": 3}, format="json")
    assert beat.status_code == 200, beat.content
    assert (beat.json()["status"], beat.json()["active_runs"], beat.json()["utilisation"]) == ("ONLINE", 3, 0.75)

    drained = operator_api.post(f"{url}/drain")
    assert drained.status_code == 200, drained.content
    assert drained.json()["status"] == "DRAINING"
    assert drained.json()["drained_at"] is not None
    assert worker_api.post(f"{url}/heartbeat", {}, format="json").json()["status"] == "DRAINING"

    undrained = operator_api.post(f"{url}/undrain")
    assert (undrained.json()["status"], undrained.json()["drained_at"]) == ("ONLINE", None)
    assert worker_api.post(f"{url}/heartbeat", format="json").json()["status"] == "ONLINE"


def test_api_heartbeat_with_offline_is_a_clean_shutdown(worker_api: APIClient) -> None:
    worker_id = worker_api.post("/api/v1/workers/register", _register_body(), format="json").json()["id"]
    # Claims link runs to shared (Celery) workers by name; a dedicated worker's run, by hand here.
    run = _running_on(Worker.objects.get(pk=worker_id))
    Run.objects.filter(pk=run.pk).update(worker_id=worker_id)

    response = worker_api.post(f"/api/v1/workers/{worker_id}/heartbeat", {"status": "OFFLINE"}, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["active_runs"]) == ("OFFLINE", 0)
    assert Run.objects.get(pk=run.pk).status == RunStatus.RETRYING
    [event] = _events(Worker.objects.get(pk=worker_id), "offline")
    assert (event.tenant_id, event.data["reason"], event.data["runs_taken_back"]) == (TENANT, "shut down", 1)
    # Saying it twice changes nothing more.
    twice = worker_api.post(f"/api/v1/workers/{worker_id}/heartbeat", {"status": "OFFLINE"}, format="json")
    assert (twice.status_code, twice.json()["status"]) == (200, "OFFLINE")
    assert len(_events(Worker.objects.get(pk=worker_id), "offline")) == 1


@pytest.mark.parametrize(
    ("action", "scope", "body"),
    [("heartbeat", scopes.WORKER, {"active_runs": 1}), ("drain", scopes.ADMIN, None), ("undrain", scopes.ADMIN, None)],
    ids=["heartbeat", "drain", "undrain"],
)
def test_a_tenant_cannot_change_a_shared_worker(
    client_for: Any, action: str, scope: str, body: dict[str, Any] | None
) -> None:
    shared = WorkerFactory(tenant_id="", drained_at=timezone.now() if action == "undrain" else None)
    before = Worker.objects.values().get(pk=shared.pk)

    response = client_for(TENANT, scope).post(f"/api/v1/workers/{shared.pk}/{action}", body, format="json")

    assert response.status_code == 403, response.content
    assert "shared worker" in response.json()["detail"]
    assert Worker.objects.values().get(pk=shared.pk) == before
    assert not OutboxEvent.objects.filter(aggregate_type="worker").exists()


def test_api_list_shows_utilisation_and_filters_by_status(api: APIClient) -> None:
    busy = _register("celery@busy", concurrency=4)
    for _ in range(3):
        _running_on(busy)
    services.worker_heartbeat(worker_id=busy.pk)
    idle = _register("celery@idle", concurrency=2)
    services.worker_mark_offline(worker_id=idle.pk, reason="shut down")
    WorkerFactory(name="theirs", tenant_id=OTHER_TENANT)

    listed = api.get("/api/v1/workers").json()["results"]
    online = api.get("/api/v1/workers?status=ONLINE").json()["results"]
    both = api.get("/api/v1/workers?status=ONLINE&status=OFFLINE").json()["results"]

    assert [(w["name"], w["active_runs"], w["concurrency"], w["utilisation"]) for w in listed] == [
        ("celery@busy", 3, 4, 0.75),
        ("celery@idle", 0, 2, 0.0),
    ]
    assert [w["name"] for w in online] == ["celery@busy"]
    assert len(both) == 2


# --- the Celery side, without Celery ---------------------------------------------------------------


class FakeConsumer:
    """What the heartbeat thread asks of a Celery consumer: callbacks for its event loop."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def call_soon(self, callback: Any, queue: str) -> None:
        self.calls.append((callback.__name__, queue))

    def cancel_task_queue(self, queue: str) -> None: ...

    def add_task_queue(self, queue: str) -> None: ...


@pytest.mark.django_db(transaction=True)  # the thread has a connection of its own
def test_the_heartbeat_thread_beats_follows_drains_survives_a_fork_and_says_goodbye() -> None:
    from workers import heartbeat

    beating = heartbeat.CeleryWorkerHeartbeat(
        name="celery@unit",
        hostname="unit",
        queues=["reports"],
        consumes=["reports", "reports@gpu"],
        capabilities=["gpu"],
        concurrency=2,
        version="celery 5.7.0",
        interval=0.05,
    )
    consumer = FakeConsumer()
    heartbeat.current = beating
    try:
        beating.register()
        worker = Worker.objects.get(name="celery@unit")
        registered_at = worker.last_heartbeat_at
        assert registered_at is not None
        beating.start(consumer)

        _wait(lambda: Worker.objects.get(pk=worker.pk).last_heartbeat_at > registered_at)
        services.worker_drain(worker=worker)
        _wait(lambda: len(consumer.calls) == 2)
        assert consumer.calls == [("cancel_task_queue", "reports"), ("cancel_task_queue", "reports@gpu")]
        services.worker_undrain(worker=worker)
        _wait(lambda: len(consumer.calls) == 4)
        assert consumer.calls[2:] == [("add_task_queue", "reports"), ("add_task_queue", "reports@gpu")]

        # A forked child (a prefork pool process) drops its copy of the thread's connection...
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe and leaves at once
            os.write(write, b"1" if beating._db.connection is None else b"0")
            os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(read, 1) == b"1"
        # ...and the parent's heartbeats go on over theirs.
        since = Worker.objects.get(pk=worker.pk).last_heartbeat_at
        _wait(lambda: Worker.objects.get(pk=worker.pk).last_heartbeat_at > since)

        beating.stop()
    finally:
        heartbeat.current = None
        beating._stop.set()

    gone = Worker.objects.get(pk=worker.pk)
    assert gone.status == WorkerStatus.OFFLINE
    assert [e.data["reason"] for e in _events(gone, "offline")] == ["shut down"]


def _wait(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
