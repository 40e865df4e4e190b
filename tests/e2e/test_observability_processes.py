"""Metrics and logs across real processes: Celery workers (prefork) and a beat writing to one
Prometheus multiprocess directory, and a gunicorn API (two workers) whose /metrics adds them up;
every process logging JSON lines that name the tenant and the run."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from runs.models import FINAL_STATUSES, Run, RunKind, RunStatus
from runs.services import run_enqueue
from tests.conftest import make_token
from tests.e2e.harness import Processes, Receiver, free_port, wait_for
from tests.factories import TENANT, JobFactory, RunFactory, ScheduleFactory
from tests.scrape import EXPOSITION_CONTENT_TYPE, Scrape

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# <type>[_<gauge mode>]_<host>-<pid>.db: hostname-qualified, so containers sharing a volume never
# write one file (scheduler_project/prometheus.py).
METRICS_FILE = re.compile(r"(counter|histogram|gauge_[a-z]+)_[A-Za-z0-9.-]+-\d+\.db")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    # The job "obs.fatal" is refused with a 400 (a fatal error); every other run succeeds.
    server.answer = lambda request, n: (400 if request.json["job"] == "obs.fatal" else 200, {}, 0.0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    path = tmp_path / "metrics"
    path.mkdir()
    return path


@pytest.fixture
def processes(tmp_path: Path, queue: str, metrics_dir: Path) -> Iterator[Processes]:
    running = Processes(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), LOG_FORMAT="json")
    yield running
    running.stop()


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers.items()), response.read()


@pytest.fixture
def api_url(processes: Processes) -> str:
    return processes.api()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The lines of a process's log that are JSON (Celery prints its banner as plain text)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # a line that starts like JSON must be JSON
    return lines


def _wait_final(processes: Processes, runs: list[Run]) -> None:
    def done() -> bool:
        return Run.objects.filter(pk__in=[r.pk for r in runs], status__in=FINAL_STATUSES).count() == len(runs)

    wait_for(done, timeout=60, message=processes.logs)


def test_metrics_of_workers_and_beat_add_up_at_the_apis_metrics(
    processes: Processes, receiver: Receiver, queue: str, metrics_dir: Path, api_url: str, tmp_path: Path
) -> None:
    target = {"type": "HTTP", "method": "POST", "url": receiver.url, "headers": {}}
    ok = JobFactory.create(key="obs.ok", queue=queue, target=target)
    fatal = JobFactory.create(key="obs.fatal", queue=queue, target=target)
    processes.wait_all_ready(processes.worker(queue, concurrency=2), processes.beat())
    manual: dict[str, Any] = {"schedule": None, "kind": RunKind.MANUAL, "status": RunStatus.SCHEDULED}
    runs = [RunFactory.create(job=ok, **manual) for _ in range(3)]
    runs.append(
        RunFactory.create(
            job=ok,
            schedule=ScheduleFactory.create(job=ok),
            kind=RunKind.SCHEDULED,
            status=RunStatus.SCHEDULED,
            scheduled_for=timezone.now() - timedelta(seconds=2),
        )
    )
    runs.append(RunFactory.create(job=fatal, **manual))
    assert run_enqueue(run_ids=[run.pk for run in runs]) == 5

    _wait_final(processes, runs)

    status, headers, body = _get(api_url + "/metrics")
    assert status == 200
    assert headers["Content-Type"] == EXPOSITION_CONTENT_TYPE
    metrics = Scrape.parse(body.decode())
    ok_labels = {"tenant": TENANT, "job": "obs.ok"}
    # The directory is this test's: the counts are exactly what the worker's pool processes did.
    assert metrics.value("scheduler_runs_finished_total", **ok_labels, status="SUCCEEDED") == 4
    assert metrics.value("scheduler_runs_finished_total", tenant=TENANT, job="obs.fatal", status="FAILED") == 1
    assert metrics.value("scheduler_run_attempts_started_total", **ok_labels) == 4
    assert metrics.value("scheduler_run_attempt_duration_seconds_count", target="HTTP", outcome="SUCCEEDED") == 4
    assert metrics.value("scheduler_run_attempt_duration_seconds_count", target="HTTP", outcome="FATAL_ERROR") == 1
    assert metrics.value("scheduler_schedule_lag_seconds_count", queue=queue) == 1
    assert 2 <= metrics.value("scheduler_schedule_lag_seconds_sum", queue=queue) < 60
    # The beat's ticks, from the beat process; the lease, read from the database at the scrape.
    assert metrics.value("scheduler_beat_tick_duration_seconds_count", role="leader") > 0
    assert metrics.value("scheduler_beat_leader") == 1
    files = sorted(path.name for path in metrics_dir.iterdir())
    assert files
    assert all(METRICS_FILE.fullmatch(name) for name in files), files

    # Logs: JSON lines from the API and from the run's execution, naming tenant and run.
    run = runs[0]
    token = make_token(TENANT, "scheduler:read")
    assert _get(f"{api_url}/api/v1/runs/{run.pk}", token)[0] == 200

    def request_line() -> dict[str, Any] | None:
        lines = _json_lines(tmp_path / "api.log")
        return next((line for line in lines if line.get("path") == f"/api/v1/runs/{run.pk}"), None)

    line = wait_for(request_line, timeout=10, message=lambda: (tmp_path / "api.log").read_text())
    assert (line["event"], line["tenant_id"], line["status"], line["view"]) == ("request", TENANT, 200, "run-detail")
    assert line["request_id"]
    [executed] = [
        line for line in _json_lines(tmp_path / "worker0.log") if line.get("event") == f"run {run.pk}: SUCCEEDED"
    ]
    assert (executed["run_id"], executed["tenant_id"], executed["job"]) == (str(run.pk), TENANT, "obs.ok")
    assert executed["logger"] == "runs.services"
    beat_lines = _json_lines(tmp_path / "beat1.log")
    assert any("leads with token" in line["event"] for line in beat_lines)


def test_workers_and_beats_in_pods_of_their_own_serve_their_metrics_on_metrics_port(
    tmp_path: Path, receiver: Receiver, queue: str
) -> None:
    """As on Kubernetes: no directory shared with an API, each process's pod its own directory,
    and METRICS_PORT set. The worker serves what its pool processes recorded, the beat its ticks,
    and neither serves the database gauges, which the API alone reads (counted once in a sum)."""
    running = Processes(tmp_path, LOG_FORMAT="json")
    try:
        ports = {"worker": free_port(), "beat": free_port()}
        pods = {}
        for role, port in ports.items():
            directory = tmp_path / f"{role}-metrics"
            directory.mkdir()
            pods[role] = {
                "METRICS_PORT": str(port),
                "METRICS_ADDR": "127.0.0.1",
                "PROMETHEUS_MULTIPROC_DIR": str(directory),
            }
        job = JobFactory.create(key="obs.pod", queue=queue, target={"type": "HTTP", "url": receiver.url})
        running.wait_all_ready(running.worker(queue, concurrency=2, **pods["worker"]), running.beat(**pods["beat"]))
        runs = [
            RunFactory.create(job=job, schedule=None, kind=RunKind.MANUAL, status=RunStatus.SCHEDULED) for _ in range(2)
        ]
        assert run_enqueue(run_ids=[run.pk for run in runs]) == 2
        _wait_final(running, runs)

        def scrape(role: str) -> Scrape:
            status, _headers, body = _get(f"http://127.0.0.1:{ports[role]}/metrics")
            assert status == 200
            return Scrape.parse(body.decode())

        worker = scrape("worker")
        assert worker.value("scheduler_runs_finished_total", tenant=TENANT, job="obs.pod", status="SUCCEEDED") == 2
        assert worker.value("scheduler_run_attempts_started_total", tenant=TENANT, job="obs.pod") == 2
        assert not worker.has("scheduler_beat_tick_duration_seconds_count", role="leader")
        beat = wait_for(
            lambda: (
                (seen := scrape("beat")).value("scheduler_beat_tick_duration_seconds_count", role="leader") and seen
            ),
            timeout=20,
            message=running.logs,
        )
        assert not beat.has("scheduler_run_attempts_started_total", tenant=TENANT, job="obs.pod")
        for scraped in (worker, beat):
            assert not scraped.has("scheduler_beat_leader")  # read from the database, by the API only
    finally:
        running.stop()
