"""Observability in-process on real PostgreSQL and Redis: /readyz and each of its checks (with a
Redis and a NATS server of the test's own, stopped mid-test), /metrics moving as runs execute
against a real HTTP receiver, and the JSON log lines of a request and of a run's execution.
(tests/e2e/test_observability_processes.py does the same across real processes.)"""

from __future__ import annotations

import io
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from runs import services
from runs.models import Run, RunKind, RunStatus
from runs.tasks import execute_run
from scheduler_project import logs
from scheduler_project.celery import app as celery_app
from schedules.models import BeatLease
from schedules.services import beat_lease_acquire
from tests.e2e.harness import WEBHOOK_SECRET, Receiver
from tests.factories import TENANT, JobFactory, RunFactory, ScheduleFactory, WorkerFactory
from tests.scrape import EXPOSITION_CONTENT_TYPE, Scrape
from workers.models import Worker, WorkerStatus

pytestmark = pytest.mark.django_db


# --- servers of the test's own ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Server:
    """A server process on a free port of 127.0.0.1, never the machine's shared one."""

    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        deadline = time.monotonic() + 10
        while _port_open(self.port):
            assert time.monotonic() < deadline, f"port {self.port} still open"
            time.sleep(0.05)


def _start(command: list[str], port: int, log: Path) -> Server:
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not _port_open(port):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return Server(port, process)


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Server]:
    port = _free_port()
    server = _start(
        [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        port,
        tmp_path / "redis.log",
    )
    yield server
    server.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[Server]:
    port = _free_port()
    server = _start([_binary("nats-server"), "-a", "127.0.0.1", "-p", str(port)], port, tmp_path / "nats.log")
    yield server
    server.stop()


@pytest.fixture
def broker_at() -> Iterator[Callable[[str], None]]:
    original = celery_app.conf.broker_url

    def point(url: str) -> None:
        celery_app.conf.broker_url = url

    yield point
    celery_app.conf.broker_url = original


@pytest.fixture
def beat_leads() -> None:
    """A beat holds the leader lease, as one does a tick after it starts."""
    assert beat_lease_acquire(holder="test-beat", ttl=timedelta(seconds=30)) is not None


@pytest.fixture(autouse=True)
def _no_nats(settings: Any) -> None:
    """NATS is checked only where a test configures one of its own."""
    settings.NATS_URL = None


def _ready() -> tuple[int, dict[str, Any]]:
    response = APIClient().get("/readyz")
    return response.status_code, response.json()


# --- /readyz --------------------------------------------------------------------------------------


def test_metrics_count_runs_the_beat_records_missed_or_skipped() -> None:
    from schedules.services import schedule_dispatch_due

    now = timezone.now()
    job = JobFactory(key=f"metrics.{uuid.uuid4().hex[:8]}")
    every_minute = {"version": 1, "type": "CRON", "expression": "* * * * *"}
    # Two hours behind under SKIP: every slot is late beyond the grace, so MISSED.
    ScheduleFactory(job=job, trigger=every_minute, misfire_policy="SKIP", next_fire_at=now - timedelta(hours=2))
    busy = ScheduleFactory(
        job=job, trigger=every_minute, overlap_policy="SKIP", next_fire_at=now - timedelta(seconds=1)
    )
    RunFactory(schedule=busy, kind=RunKind.MANUAL, status=RunStatus.RUNNING)

    schedule_dispatch_due(now=now, limit=10)

    after = scrape()
    labels = {"tenant": TENANT, "job": job.key}
    assert (
        after.value("scheduler_runs_finished_total", **labels, status="MISSED")
        == Run.objects.filter(job=job, status=RunStatus.MISSED).count()
        > 100
    )
    assert after.value("scheduler_runs_finished_total", **labels, status="SKIPPED") == 1


@pytest.mark.usefixtures("beat_leads")
def test_readyz_reports_every_check_and_requires_all_but_workers() -> None:
    status, body = _ready()

    assert status == 200, body
    assert body["checks"] == {
        "database": "ok",
        "broker": "ok",
        "beat": "ok",
        "workers": f"down: no worker is ONLINE with a heartbeat in the last {settings.WORKER_OFFLINE_AFTER_SECONDS} s",
    }
    assert body["required"] == ["database", "broker", "beat"]
    assert body["beat"]["leader"] == "test-beat"


@pytest.mark.usefixtures("beat_leads")
def test_readyz_goes_503_when_redis_stops_and_names_the_broker(
    own_redis: Server, broker_at: Callable[[str], None]
) -> None:
    broker_at(f"redis://127.0.0.1:{own_redis.port}/0")
    assert _ready()[0] == 200

    own_redis.stop()

    response = APIClient().get("/readyz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["detail"] == "Not ready: broker down."
    assert body["checks"]["broker"].startswith("down: ")
    assert body["checks"]["database"] == body["checks"]["beat"] == "ok"


@pytest.mark.usefixtures("beat_leads")
def test_readyz_checks_nats_when_configured_and_names_it_when_it_stops(own_nats: Server, settings: Any) -> None:
    settings.NATS_URL = f"nats://127.0.0.1:{own_nats.port}"
    status, body = _ready()
    assert status == 200, body
    assert body["checks"]["nats"] == "ok"
    assert "nats" in body["required"]

    own_nats.stop()

    status, body = _ready()
    assert status == 503
    assert body["detail"] == "Not ready: nats down."
    assert body["checks"]["nats"].startswith("down: ConnectionRefusedError")


@pytest.mark.usefixtures("beat_leads")
def test_readyz_nats_check_refuses_a_server_that_does_not_speak_nats(settings: Any) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        settings.NATS_URL = f"nats://127.0.0.1:{listener.getsockname()[1]}"

        def answer_http() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_http, daemon=True)
        thread.start()
        status, body = _ready()
        thread.join(5)

    assert status == 503
    assert "not a NATS INFO line" in body["checks"]["nats"]


def test_readyz_is_not_ready_before_any_beat_has_run() -> None:
    status, body = _ready()

    assert status == 503
    assert body["detail"] == "Not ready: beat down."
    assert body["checks"]["beat"] == "down: no beat has taken the leader lease yet"


@pytest.mark.parametrize(
    ("expired_seconds_ago", "ready"),
    [(-5, True), (3, True), (60, False)],
    ids=["valid", "expired_within_one_lease_period", "expired_long_ago"],
)
@pytest.mark.usefixtures("beat_leads")
def test_readyz_beat_check_follows_the_lease(expired_seconds_ago: int, ready: bool) -> None:
    # Timed by the database's clock, like the lease itself.
    BeatLease.objects.filter(name="beat").update(expires_at=timezone.now() - timedelta(seconds=expired_seconds_ago))

    status, body = _ready()

    assert status == (200 if ready else 503), body
    if not ready:
        assert body["detail"] == "Not ready: beat down."
        assert body["checks"]["beat"].startswith("down: the leader lease expired 6")
        assert "test-beat" in body["checks"]["beat"]


@pytest.mark.usefixtures("beat_leads")
def test_readyz_workers_are_reported_and_required_only_when_configured(settings: Any) -> None:
    stale = WorkerFactory(status=WorkerStatus.ONLINE)
    Worker.objects.filter(pk=stale.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    WorkerFactory(status=WorkerStatus.OFFLINE, last_heartbeat_at=timezone.now())
    assert _ready()[1]["checks"]["workers"].startswith("down: no worker is ONLINE")

    settings.READY_REQUIRE = ("database", "broker", "beat", "workers")
    status, body = _ready()
    assert status == 503
    assert body["detail"] == "Not ready: workers down."

    WorkerFactory(status=WorkerStatus.ONLINE, last_heartbeat_at=timezone.now())
    status, body = _ready()
    assert status == 200, body
    assert body["checks"]["workers"] == "ok"


# --- /metrics -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _signing_secret(settings: Any) -> None:
    settings.WEBHOOK_HMAC_SECRET = WEBHOOK_SECRET


def scrape() -> Scrape:
    response = APIClient().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == EXPOSITION_CONTENT_TYPE
    return Scrape.parse(response.content.decode())


def _http_job(receiver: Receiver, **fields: Any) -> Any:
    target = {"type": "HTTP", "method": "POST", "url": receiver.url, "headers": {}}
    return JobFactory(target=target, key=f"metrics.{uuid.uuid4().hex[:8]}", **fields)


def test_metrics_parse_and_move_when_a_scheduled_run_succeeds(receiver: Receiver) -> None:
    job = _http_job(receiver, queue="metrics-default")
    run = RunFactory(
        schedule=ScheduleFactory(job=job),
        kind=RunKind.SCHEDULED,
        status=RunStatus.QUEUED,
        scheduled_for=timezone.now() - timedelta(seconds=3),
    )
    before = scrape()

    assert services.run_execute(run_id=run.pk, worker_name="w@test") == RunStatus.SUCCEEDED

    after = scrape()
    labels = {"tenant": TENANT, "job": job.key}
    assert after.value("scheduler_run_attempts_started_total", **labels) == 1
    assert after.value("scheduler_runs_finished_total", **labels, status="SUCCEEDED") == 1
    lag = ("scheduler_schedule_lag_seconds_count", {"queue": "metrics-default"})
    assert after.value(lag[0], **lag[1]) - before.value(lag[0], **lag[1]) == 1
    lag_sum = after.value("scheduler_schedule_lag_seconds_sum", queue="metrics-default") - before.value(
        "scheduler_schedule_lag_seconds_sum", queue="metrics-default"
    )
    assert 3 <= lag_sum < 60
    duration = {"target": "HTTP", "outcome": "SUCCEEDED"}
    assert (
        after.value("scheduler_run_attempt_duration_seconds_count", **duration)
        - before.value("scheduler_run_attempt_duration_seconds_count", **duration)
        == 1
    )
    assert after.families["scheduler_schedule_lag_seconds"] == "histogram"
    assert after.families["scheduler_runs_finished"] == "counter"


def test_metrics_count_retries_dead_letters_and_fatal_failures(receiver: Receiver) -> None:
    receiver.answer = lambda request, n: (503, {}, 0.0)
    job = _http_job(receiver, max_attempts=2, backoff_strategy="FIXED", backoff_base_seconds=1)
    run = RunFactory(job=job, schedule=None, kind=RunKind.MANUAL, status=RunStatus.QUEUED)

    assert services.run_execute(run_id=run.pk) == RunStatus.RETRYING
    Run.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED)  # what the beat does once the retry is due
    assert services.run_execute(run_id=run.pk) == RunStatus.DEAD
    fatal = _http_job(receiver)
    receiver.answer = lambda request, n: (400, {}, 0.0)
    services.run_execute(run_id=RunFactory(job=fatal, schedule=None, kind=RunKind.MANUAL, status=RunStatus.QUEUED).pk)

    after = scrape()
    labels = {"tenant": TENANT, "job": job.key}
    assert after.value("scheduler_run_attempts_started_total", **labels) == 2
    assert after.value("scheduler_run_retries_total", **labels) == 1
    assert after.value("scheduler_dead_letters_total", **labels) == 1
    assert after.value("scheduler_runs_finished_total", **labels, status="DEAD") == 1
    assert after.value("scheduler_runs_finished_total", tenant=TENANT, job=fatal.key, status="FAILED") == 1
    assert after.has("scheduler_run_attempt_duration_seconds_count", target="HTTP", outcome="RETRYABLE_ERROR")
    assert after.has("scheduler_run_attempt_duration_seconds_count", target="HTTP", outcome="FATAL_ERROR")


@pytest.mark.usefixtures("beat_leads")
def test_metrics_read_the_database_and_the_broker_at_scrape_time() -> None:
    queue = f"test-metrics-{uuid.uuid4().hex[:8]}"
    limited = JobFactory(key="reports.build", queue=queue, concurrency_limit=2)
    RunFactory(job=limited, schedule=None, status=RunStatus.RUNNING, lease_expires_at=timezone.now())
    RunFactory(job=limited, schedule=None, status=RunStatus.QUEUED, blocked_at=timezone.now())
    JobFactory(key="reports.gpu", queue=queue, required_capabilities=["gpu"])
    WorkerFactory(status=WorkerStatus.ONLINE, concurrency=4, active_runs=3, last_heartbeat_at=timezone.now())
    WorkerFactory(status=WorkerStatus.OFFLINE, concurrency=8, active_runs=0)
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.lpush(queue, b"m1", b"m2")
    client.lpush(f"{queue}@gpu", b"m3")
    try:
        metrics = scrape()
    finally:
        client.delete(queue, f"{queue}@gpu")

    job = {"tenant": TENANT, "job": "reports.build"}
    assert metrics.value("scheduler_job_running_runs", **job) == 1
    assert metrics.value("scheduler_job_waiting_runs", **job) == 1
    assert metrics.value("scheduler_job_concurrency_limit", **job) == 2
    assert metrics.value("scheduler_runs_in_state", state="running") == 1
    assert metrics.value("scheduler_broker_queue_depth", queue=queue) == 2
    assert metrics.value("scheduler_broker_queue_depth", queue=f"{queue}@gpu") == 1
    assert metrics.value("scheduler_beat_leader") == 1
    assert metrics.value("scheduler_beat_leader_token") >= 1
    assert metrics.has("scheduler_outbox_pending_events")
    assert metrics.value("scheduler_workers", status="ONLINE") == 1
    assert metrics.value("scheduler_workers", status="OFFLINE") == 1
    assert metrics.value("scheduler_worker_slots") == 4
    assert metrics.value("scheduler_worker_utilisation") == 0.75
    assert metrics.with_name("scheduler_scrape_collector_up") == {
        frozenset({("part", part)}): 1.0 for part in ("jobs", "broker", "outbox", "beat", "workers")
    }


def test_metrics_top_jobs_cap_the_job_labels(settings: Any) -> None:
    settings.METRICS_TOP_JOBS = 2
    for count in (1, 2, 3):
        job = JobFactory(key=f"busy.{count}")
        for _ in range(count):
            RunFactory(job=job, schedule=None, status=RunStatus.RUNNING)

    metrics = scrape()

    assert {dict(labels)["job"] for labels in metrics.with_name("scheduler_job_running_runs")} == {"busy.2", "busy.3"}
    assert metrics.value("scheduler_runs_in_state", state="running") == 6


def test_a_part_that_fails_is_left_out_and_named(settings: Any) -> None:
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there

    metrics = scrape()

    assert metrics.value("scheduler_scrape_collector_up", part="broker") == 0
    assert metrics.value("scheduler_scrape_collector_up", part="jobs") == 1
    assert not metrics.with_name("scheduler_broker_queue_depth")


def test_api_requests_are_counted_per_route(api: APIClient) -> None:
    before = scrape().value("scheduler_http_requests_total", method="GET", view="job-list", status="200")

    assert api.get("/api/v1/jobs").status_code == 200

    after = scrape()
    assert after.value("scheduler_http_requests_total", method="GET", view="job-list", status="200") == before + 1
    assert after.has("scheduler_http_request_duration_seconds_count", method="GET", view="job-list")


def test_metrics_are_open_get_only_and_not_in_the_openapi_document() -> None:
    assert APIClient().post("/metrics").status_code == 405
    schema = APIClient().get("/api/schema", {"format": "json"}).json()
    assert "/metrics" not in schema["paths"]


# --- logs -----------------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every line the root logger writes while the test runs, rendered by the JSON formatter
    that settings.LOGGING gives the root's handler, each parsed as JSON."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.formatter("json"))
    root = logging.getLogger()
    root.addHandler(handler)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield lines
    root.removeHandler(handler)


def test_settings_give_the_root_logger_a_json_handler() -> None:
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    assert handler.formatter is not None
    record = logging.LogRecord("runs.services", logging.WARNING, __file__, 1, "run %s lost", ("r1",), None)

    line = json.loads(handler.formatter.format(record))
    assert line.pop("timestamp").endswith("Z")
    assert line == {"event": "run r1 lost", "logger": "runs.services", "level": "warning"}


def test_an_api_request_logs_one_json_line_with_its_tenant(
    api: APIClient, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    response = api.get("/api/v1/jobs", HTTP_X_REQUEST_ID="req-123")

    assert response["X-Request-ID"] == "req-123"
    [line] = [line for line in log_lines() if line["event"] == "request"]
    assert line["tenant_id"] == TENANT
    assert line["request_id"] == "req-123"
    assert (line["method"], line["path"], line["view"], line["status"]) == ("GET", "/api/v1/jobs", "job-list", 200)
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_a_run_execution_logs_json_lines_with_the_run_and_its_tenant(
    receiver: Receiver, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    job = _http_job(receiver)
    run = RunFactory(schedule=ScheduleFactory(job=job), status=RunStatus.QUEUED)

    assert execute_run.apply(args=[str(run.pk)]).get() == RunStatus.SUCCEEDED

    [line] = [line for line in log_lines() if line["event"] == f"run {run.pk}: SUCCEEDED"]
    assert line["logger"] == "runs.services"
    assert line["run_id"] == str(run.pk)
    assert line["tenant_id"] == TENANT
    assert line["job"] == job.key
    assert line["schedule_id"] == str(run.schedule_id)
    # The context ends with the task: a line logged after it names no run.
    logging.getLogger("after").warning("later")
    assert "run_id" not in log_lines()[-1]
