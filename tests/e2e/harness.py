"""Real processes for end-to-end tests: Celery workers and beats on the test database, and a
webhook receiver on 127.0.0.1 that checks every signature the way a real receiver would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.db import connection

from runs.models import FINAL_STATUSES, Run, RunAttempt, RunKind, RunStatus
from runs.services import run_enqueue
from runs.targets.signing import verify_signature
from scheduler_project.config import BASE_DIR
from schedules.models import Job
from tests.factories import JobFactory, RunFactory

WEBHOOK_SECRET = "e2e-webhook-secret-0123456789abcdef"
CELERY = str(BASE_DIR / ".venv" / "bin" / "celery")
GUNICORN = str(BASE_DIR / ".venv" / "bin" / "gunicorn")


def free_port() -> int:
    """A TCP port nothing listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    signature_ok: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")


# What the receiver answers: (status, headers, seconds to wait before answering).
Answer = tuple[int, dict[str, str], float]


@dataclass
class Receiver:
    """An HTTP server answering each request with ``answer(request, n)`` — ``n`` counts the
    requests seen with the same Idempotency-Key, from 1 — and recording what it received."""

    answer: Callable[[Request, int], Answer] = lambda request, n: (200, {}, 0.0)
    secret: str = WEBHOOK_SECRET
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    body,
                    time.time(),
                    verify_signature(receiver.secret, dict(self.headers.items()), body),
                )
                with receiver.lock:
                    receiver.requests.append(request)
                    n = sum(1 for r in receiver.requests if r.key == request.key)
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                answering = True
                try:
                    status, headers, delay = receiver.answer(request, n)
                    time.sleep(delay)
                    # No longer in flight once the answer starts: the sender may act on it at
                    # once, before this thread would get to count it out.
                    with receiver.lock:
                        receiver.in_flight -= 1
                        answering = False
                    payload = json.dumps({"ok": 200 <= status < 300, "n": n}).encode()
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the sender gave up (a timeout) or was killed
                finally:
                    if answering:
                        with receiver.lock:
                            receiver.in_flight -= 1

            do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def keys(self) -> Counter[str]:
        with self.lock:
            return Counter(r.key for r in self.requests)

    def for_run(self, run_id: Any) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.key == str(run_id)]


class Processes:
    """Celery workers and beats on the test database; every one stopped at teardown."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}
        database = connection.settings_dict
        self.env = {
            **os.environ,
            "POSTGRES_URL": f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
            "DATA_DIR": str(tmp_path),
            "WEBHOOK_HMAC_SECRET": WEBHOOK_SECRET,
            **env,
        }

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start ``args`` (a celery command line unless it names its own program) logging to <name>.log."""
        command = args if args[0].startswith("/") else [CELERY, "-A", "scheduler_project", *args]
        log = (self.tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command,
            cwd=BASE_DIR, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        self.names[process.pid] = name
        return process

    def worker(
        self, queues: str, *, name: str | None = None, concurrency: int = 2, **env: str
    ) -> subprocess.Popen[bytes]:
        name = name or f"worker{self._celery_count()}"
        return self._start(
            name,
            ["worker", "-Q", queues, "--hostname", f"{name}@e2e", "--concurrency", str(concurrency),
             "--loglevel", "INFO", "--without-mingle", "--without-gossip", "--without-heartbeat"],
            env,
        )  # fmt: skip

    def beat(self, **env: str) -> subprocess.Popen[bytes]:
        n = self._celery_count()
        return self._start(
            f"beat{n}", ["beat", "--loglevel", "INFO", "--schedule", str(self.tmp_path / f"beat{n}.db")], env
        )

    def _celery_count(self) -> int:
        """Celery processes started so far: numbers their default names (the API is not one)."""
        return sum(1 for name in self.names.values() if name != "api")

    def api(self) -> str:
        """Start the API as the Dockerfile runs it (gunicorn with scheduler_project.gunicorn_conf,
        two workers, logging to api.log) and return its URL once /healthz answers."""
        port = free_port()
        process = self._start(
            "api",
            [GUNICORN, "scheduler_project.wsgi", "--config", "python:scheduler_project.gunicorn_conf",
             "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            {"PORT": str(port)},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert process.poll() is None, self.logs()
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(healthy, timeout=60, interval=0.2, message=self.logs)
        return url

    def wait_ready(self, process: subprocess.Popen[bytes], marker: str = "ready", timeout: float = 30) -> None:
        """Wait until a worker logs that it consumes (Celery prints "... ready.")."""
        name = self._name(process)
        deadline = time.monotonic() + timeout
        while marker not in (self.tmp_path / f"{name}.log").read_text(errors="replace"):
            assert process.poll() is None, self.logs()
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.1)

    def wait_all_ready(self, *processes: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """Wait for several processes started together (workers "ready", beats leading)."""
        for process in processes:
            self.wait_ready(process, "leads with token" if self._name(process).startswith("beat") else "ready", timeout)

    def _name(self, process: subprocess.Popen[bytes]) -> str:
        return self.names[process.pid]

    def hostname(self, process: subprocess.Popen[bytes]) -> str:
        """A worker's Celery hostname: what its attempts record as ``worker_name``."""
        return f"{self._name(process)}@e2e"

    def by_hostname(self, hostname: str) -> subprocess.Popen[bytes]:
        """The worker whose Celery hostname (``RunAttempt.worker_name``) is ``hostname``."""
        [process] = [p for p in self.processes if self.hostname(p) == hostname]
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and every child (a worker's pool)."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for process in self.processes:  # pool children outlive a killed parent: reap the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.tmp_path.glob("*.log"))
        )


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.1, message: Callable[[], str] = str
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, message()
        time.sleep(interval)


def broker_purge(name: str) -> None:
    """Remove from Redis everything a test's queue ``name`` left: its lists (and those of its
    capability queues, ``name@gpu``), kombu's bindings, and deliveries left unacknowledged by a
    killed worker (which the next worker would otherwise restore an hour later)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    keys = [
        key
        for pattern in (f"{name}*", f"_kombu.binding.{name}*", f"_kombu.binding_permanent.{name}*")
        for key in client.scan_iter(match=pattern)
    ]
    if keys:
        client.delete(*keys)
    for tag, raw in client.hscan_iter("unacked"):
        try:
            _message, exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if str(exchange).startswith(name) or str(routing_key).startswith(name):
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


class Nats:
    """A NATS connection on an event loop of its own thread, so a synchronous test (whose Django
    ORM refuses to run inside an event loop) can subscribe, manage streams and go on waiting."""

    def __init__(self, url: str) -> None:
        import nats

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="e2e-nats", daemon=True)
        self.thread.start()
        self.nc = self.call(nats.connect(url, connect_timeout=5))
        self.messages: list[Any] = []
        self.streams: list[str] = []

    def call(self, coroutine: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def subscribe(self, subject: str) -> None:
        async def collect(message: Any) -> None:
            self.messages.append(message)

        self.call(self.nc.subscribe(subject, cb=collect))
        self.call(self.nc.flush())  # the server has the subscription before anything is published

    def add_stream(self, name: str, subjects: list[str]) -> None:
        self.call(self.nc.jetstream().add_stream(name=name, subjects=subjects))
        self.streams.append(name)

    def stream_message(self, stream: str, seq: int) -> Any:
        return self.call(self.nc.jetstream().get_msg(stream, seq))

    def close(self) -> None:
        try:
            for stream in self.streams:
                self.call(self.nc.jetstream().delete_stream(stream))
            self.call(self.nc.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


# --- Jobs and runs for the execution tests ---------------------------------------------------------


def http_job(receiver: Receiver, queue: str, **fields: Any) -> Job:
    """A job on the receiver with a FIXED 1 s backoff."""
    defaults: dict[str, Any] = {
        "queue": queue,
        "target": {"type": "HTTP", "method": "POST", "url": receiver.url, "headers": {}},
        "backoff_strategy": "FIXED",
        "backoff_base_seconds": 1,
        "backoff_max_seconds": 60,
        "timeout_seconds": 10,
    }
    return JobFactory.create(**{**defaults, **fields})


def enqueue(job: Job, count: int = 1, **fields: Any) -> list[Run]:
    """``count`` manual runs of ``job``, committed and then sent to its queue, as the beat does."""
    defaults: dict[str, Any] = {"schedule": None, "kind": RunKind.MANUAL, "status": RunStatus.SCHEDULED}
    runs = [RunFactory.create(job=job, **{**defaults, **fields}) for _ in range(count)]
    assert run_enqueue(run_ids=[run.pk for run in runs]) == count
    return runs


def wait_final(processes: Processes, run: Run, timeout: float = 30) -> Run:
    """The run once it reached a final status (whichever: the test asserts which)."""

    def final() -> Run | None:
        current = Run.objects.get(pk=run.pk)
        return current if current.status in FINAL_STATUSES else None

    def explain() -> str:
        current = Run.objects.get(pk=run.pk)
        return (
            f"run {run.pk} is still {current.status} (attempt {current.attempt}, "
            f"error {current.error_type}: {current.error_message})\n{processes.logs()}"
        )

    result: Run = wait_for(final, timeout=timeout, message=explain)
    return result


def attempts(run: Run) -> list[RunAttempt]:
    """The run's attempts, every series, in order."""
    return list(RunAttempt.objects.filter(run_id=run.pk).order_by("series", "number"))
