"""The README's run command: API, beat and a worker on the embedded default, end to end.

Starts `scripts/serve` with no database or broker configured, talks to it over HTTP with a
token from `issue_token`, and checks that stopping it stops every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scheduler_project.config import BASE_DIR
from tests.e2e.harness import Receiver, free_port
from tests.scrape import EXPOSITION_CONTENT_TYPE, Scrape

pytestmark = pytest.mark.e2e
SERVICE_VARIABLES = {"POSTGRES_URL", "REDIS_URL", "NATS_URL", "SECRET_KEY", "JWKS_URL", "DEBUG", "PORT", "DATA_DIR"}


def _embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update({"DATA_DIR": str(data_dir), **extra})
    return env


@dataclass
class Service:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def request(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


def _wait_for(predicate: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; log:\n{log.read_text()[-4000:]}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _readiness(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp("embedded")
    port = free_port()
    log = data_dir / "serve.log"
    env = _embedded_env(data_dir, PORT=str(port))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BASE_DIR / "scripts" / "serve")], cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _healthy(url) or process.poll() is not None, 180, "the API", log)
        assert process.poll() is None, log.read_text()
        yield Service(url=url, env=env, process=process, log=log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            deadline = time.monotonic() + 20
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            leftover = _group_alive(process.pid)
            if leftover:
                os.killpg(process.pid, signal.SIGKILL)
            assert not leftover, "scripts/serve left processes running after SIGTERM"


def _issue_token(service: Service, scope: str = "scheduler:admin") -> str:
    result = subprocess.run(
        [str(BASE_DIR / ".venv" / "bin" / "python"), "manage.py", "issue_token", "--tenant", "acme", "--scope", scope],
        cwd=BASE_DIR, env=service.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def test_api_beat_and_worker_all_start(service: Service) -> None:
    _wait_for(lambda: " ready." in service.log.read_text(), 60, "the worker", service.log)
    _wait_for(lambda: "beat: Starting" in service.log.read_text(), 60, "beat", service.log)
    # Ready once the beat holds its leader lease (its first tick); no NATS on the embedded default.
    _wait_for(lambda: _readiness(service.url)[0] == 200, 60, "readiness", service.log)
    checks = _readiness(service.url)[1]["checks"]
    assert {name: checks[name] for name in ("database", "broker", "beat")} == {
        "database": "ok",
        "broker": "ok",
        "beat": "ok",
    }
    assert "nats" not in checks


def test_token_from_issue_token_creates_and_lists_a_schedule(service: Service) -> None:
    token = _issue_token(service)
    status, job = service.request(
        "POST",
        "/api/v1/jobs",
        token,
        {"key": "analytics.kpi_rebuild", "name": "Nightly KPI rebuild",
         "target": {"type": "HTTP", "url": "https://analytics.internal/kpi"}},
    )  # fmt: skip
    assert status == 201, job
    status, schedule = service.request(
        "POST",
        "/api/v1/schedules",
        token,
        {"name": "KPI rebuild 02:00", "job": job["id"], "trigger": {"type": "CRON", "expression": "0 2 * * *"}},
    )
    assert status == 201, schedule
    assert schedule["timezone"] == "Europe/Berlin"
    status, listing = service.request("GET", "/api/v1/schedules", token)
    assert status == 200
    assert [s["id"] for s in listing["results"]] == [schedule["id"]]

    # The beat picks up a schedule that is due every second and writes its runs.
    status, every_second = service.request(
        "POST",
        "/api/v1/schedules",
        token,
        {"name": "heartbeat", "job": job["id"], "trigger": {"type": "CRON", "expression": "* * * * * *"}},
    )
    assert status == 201, every_second
    deadline = time.monotonic() + 30
    runs: list[Any] = []
    while time.monotonic() < deadline and len(runs) < 3:
        time.sleep(1)
        runs = service.request("GET", f"/api/v1/runs?schedule={every_second['id']}", token)[1]["results"]
    assert len(runs) >= 3, service.log.read_text()[-3000:]
    slots = sorted(run["scheduled_for"] for run in runs)
    assert len(set(slots)) == len(slots)

    status, problem = service.request("GET", "/api/v1/schedules", "not-a-token")
    assert status == 401
    assert problem["status"] == 401


def test_a_triggered_run_is_delivered_on_the_embedded_default(service: Service) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        token = _issue_token(service)
        status, job = service.request(
            "POST",
            "/api/v1/jobs",
            token,
            {"key": "documents.archive", "name": "Archive", "target": {"type": "HTTP", "url": receiver.url}},
        )
        assert status == 201, job
        status, schedule = service.request(
            "POST",
            "/api/v1/schedules",
            token,
            {"name": "archive", "job": job["id"], "trigger": {"type": "CRON", "expression": "0 3 * * *"}},
        )
        assert status == 201, schedule
        status, run = service.request(
            "POST", f"/api/v1/schedules/{schedule['id']}/trigger", token, {"payload": {"n": 1}}
        )
        assert status == 202, run

        _wait_for(
            lambda: service.request("GET", f"/api/v1/runs/{run['id']}", token)[1]["status"] == "SUCCEEDED",
            60,
            "the run to succeed",
            service.log,
        )
        [request] = receiver.for_run(run["id"])
        assert request.json["payload"] == {"n": 1}
        # The worker's pool process counted it, and the API's /metrics adds up every process's files.
        with urllib.request.urlopen(service.url + "/metrics", timeout=10) as response:
            assert response.headers["Content-Type"] == EXPOSITION_CONTENT_TYPE
            metrics = Scrape.parse(response.read().decode())
        labels = {"tenant": "acme", "job": "documents.archive"}
        assert metrics.value("scheduler_runs_finished_total", **labels, status="SUCCEEDED") == 1
        assert metrics.value("scheduler_beat_leader") == 1
        assert metrics.value("scheduler_beat_tick_duration_seconds_count", role="leader") > 0
        attempts = service.request("GET", f"/api/v1/runs/{run['id']}", token)[1]["attempts"]
        assert [(a["outcome"], a["response_status"]) for a in attempts] == [("SUCCEEDED", 200)]
    finally:
        receiver.stop()


def test_bad_configuration_stops_start_up_with_one_line(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path, DEFAULT_TZ="Mars/Olympus")
    result = subprocess.run(
        [str(BASE_DIR / "scripts" / "serve")], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert "configuration error: DEFAULT_TZ: unknown IANA time zone 'Mars/Olympus'" in result.stderr
