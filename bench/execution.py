"""Execution end to end: runs through real Celery workers to a local HTTP receiver, side by side
with a bare Celery task making the same HTTP call (bench/bare_task.py).

On one PostgreSQL database and one Redis DB of its own, with a receiver on 127.0.0.1 in this
process (asyncio, recording the arrival of each request's first byte by Idempotency-Key):

0. the receiver alone, loaded by keep-alive ``requests`` clients in other processes, to show it
   is not what limits the rest (it answers at once, or ``--answer-ms`` after each request, as a
   target that does some work would);
1. throughput: N runs QUEUED (``run_enqueue`` in the beat's batches: every message in Redis
   before the clock starts), then one ``celery worker`` (prefork) starts consuming; timed until
   every run is SUCCEEDED. The baseline: N messages of the bare task, sent with the same batching,
   timed until the receiver has all N. Rounds interleave; CPU per run is read from /proc for the
   worker (parent and pool), PostgreSQL (its backends of this database and those that exited),
   Redis and the receiver. "ours, reconnecting" is the same worker with Celery's Django fixup
   closing the database connection around every task, its behaviour without
   ``CELERY_DB_REUSE_MAX`` (bench/bare_task.py, ``BENCH_EXEC_RECONNECT``): what keeping it saves;
2. latency, slot time (``scheduled_for``) to the first byte at the receiver, for ``--seconds``
   at ``--rate`` runs a second: through a real ``celery beat`` (``--rate`` schedules with a
   per-second cron ``* * * * * *``: that many slots at each whole second; or one-shots
   1/rate s apart), and the bare task sent by this process in the same shapes;
3. where the time goes, in a child process without Celery: ``run_claim``, the delivery and
   ``run_attempt_succeeded`` timed one run at a time, with their SQL statements, also on the ORM
   path (SQLite's, and the gated runs'), against the bare task's function and against a floor (the
   same rows, one SQL statement per transaction);
   ``--profile`` adds cProfile and SQL counts from inside the worker's pool.

    .venv/bin/python bench/execution.py                 # about 5 minutes
    .venv/bin/python bench/execution.py --phases throughput --runs 5000 --repeat 5

It creates the database named by --postgres if missing (the name must contain "bench"), empties
its tables, and flushes the Redis DB named by --redis (not DB 0). Every process it starts is
stopped before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import configure, sql

CELERY = str(ROOT / ".venv" / "bin" / "celery")
QUEUE = "bench-exec"
IDLE_QUEUE = "bench-exec-idle"  # what the workers consume between rounds: nothing
TENANT = "bench-exec"
JOB_KEY = "bench.exec"
BATCH = 500  # the beat's batch size: run_enqueue and the bare sends go out this many at a time
WORKERS = {"ours": "ours@bench-exec", "reconnect": "reconnect@bench-exec"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgres://postgres:postgres@127.0.0.1:5432/scheduler_bench_exec")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--phases", default="receiver,throughput,latency,breakdown")
    parser.add_argument("--runs", type=int, default=2000, help="runs (and bare messages) per throughput round")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved throughput rounds (median)")
    parser.add_argument("--warmup", type=int, default=200, help="runs per variant before the timed rounds")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork pool processes of the worker")
    parser.add_argument("--loglevel", default="INFO", help="of the worker and the beat (INFO, as deployed)")
    parser.add_argument("--rate", type=int, default=100, help="latency: slots per second")
    parser.add_argument("--seconds", type=int, default=20, help="latency: seconds of slots")
    parser.add_argument("--latency-variants", default="beat-burst,beat-stream,bare-burst,bare-stream")
    parser.add_argument("--breakdown-runs", type=int, default=300)
    parser.add_argument(
        "--answer-ms", type=float, default=0.0, help="the receiver answers this long after a request (a target's work)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile a throughput round inside the pool")
    parser.add_argument("--logs", type=Path, help="keep the workers' and beats' logs in this folder")
    parser.add_argument("--child", choices=("breakdown",), help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()
configure(ARGS, name="exec")
# Unsigned requests, ours and the bare task's alike: the same bytes on the wire.
os.environ.pop("WEBHOOK_HMAC_SECRET", None)
DATABASE = urlsplit(ARGS.postgres).path.lstrip("/")

import django

django.setup()

import redis
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from bench.bare_task import BARE_TASK, bare_post
from runs.models import Run, RunKind, RunStatus
from runs.services import run_enqueue
from scheduler_project.celery import app as celery_app
from schedules.models import Job
from schedules.wakeup import NOTIFY_CHANNEL

BROKER = redis.Redis.from_url(ARGS.redis)


# --- helpers --------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def _sleep_until(epoch: float) -> None:
    time.sleep(max(0.0, epoch - time.time()))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)
    return value


# --- the receiver ---------------------------------------------------------------------------------

ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


class _Connection(asyncio.Protocol):
    """HTTP/1.1 keep-alive, just enough of it: headers, Content-Length, a fixed 200."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.buffer = b""
        self.first_byte = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.buffer:
            self.first_byte = time.time()
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length, key = 0, ""
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"idempotency-key":
                    key = value.strip().decode()
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.receiver.record(key, self.first_byte)
            if ARGS.answer_ms:  # a client sends its next request only after this answer
                self.receiver.loop.call_later(ARGS.answer_ms / 1000, self.transport.write, ANSWER)
            else:
                self.transport.write(ANSWER)
            self.first_byte = time.time()


class Receiver:
    """An asyncio HTTP server on its own thread: the first arrival of each Idempotency-Key."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), name="receiver", daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the receiver did not start")

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.tid = threading.get_native_id()
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Connection(self), "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def record(self, key: str, at: float) -> None:
        self.requests += 1
        self.arrivals.setdefault(key, at)

    def reset(self) -> None:
        self.arrivals, self.requests = {}, 0

    def cpu(self) -> float:
        return _cpu_seconds(f"/proc/self/task/{self.tid}/stat")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# --- processes and their CPU ----------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(stat_path: str, *, children: bool = False) -> float:
    """utime + stime of a process or thread, seconds (0 if it is gone); with ``children``, that
    of its children that exited and were waited for (cutime + cstime) instead."""
    try:
        fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / TICK


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            pids += _tree(int(child))
    return pids


def _pids(match: Callable[[bytes], bool]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if match((entry / "cmdline").read_bytes()):
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return found


class Cpu:
    """CPU seconds of the processes that execute runs, by group, between two snapshots."""

    def __init__(self, receiver: Receiver, **roots: int) -> None:
        self.receiver = receiver
        self.roots = roots  # worker / beat process ids: each counted with its children
        self.own_backend = sql("SELECT pg_backend_pid()")[0][0]

    def snapshot(self) -> dict[str, dict[int, float]]:
        """PostgreSQL: its background processes, the backends of this database (not this
        process's own), and what exited backends used (the postmaster's children time: a worker
        that reconnects for every task has backends that come and go; it also counts backends of
        other databases that ended meanwhile, if anything else uses this server)."""
        marker = f" {DATABASE} ".encode()

        def ours(cmd: bytes) -> bool:
            if not cmd.startswith(b"postgres: "):
                return False
            backend = b"(" in cmd or b"[local]" in cmd
            return not backend or marker in cmd

        groups: dict[str, list[int]] = {name: _tree(pid) for name, pid in self.roots.items()}
        groups["postgres"] = [pid for pid in _pids(ours) if pid != self.own_backend]
        groups["redis"] = _pids(lambda cmd: cmd.startswith(b"redis-server") or b"/redis-server" in cmd)
        shot = {name: {pid: _cpu_seconds(f"/proc/{pid}/stat") for pid in pids} for name, pids in groups.items()}
        for pid in _pids(lambda cmd: cmd.split(b"\0")[0].endswith(b"/bin/postgres")):  # the postmaster
            shot["postgres"][pid] = _cpu_seconds(f"/proc/{pid}/stat") + _cpu_seconds(f"/proc/{pid}/stat", children=True)
        shot["receiver"] = {0: self.receiver.cpu()}
        return shot

    @staticmethod
    def delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        """Per group: what each process present at the end used since the start (from zero if it
        started in between). A backend that exited in between is lost (none does in a round)."""
        return {
            name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in after.items()
        }


class Worker:
    """One ``celery -A scheduler_project worker`` (prefork) with the bare task included. It
    consumes only an idle queue until told to consume the benchmark's (remote control)."""

    def __init__(self, name: str, workdir: Path, **env: str) -> None:
        self.hostname = WORKERS[name]
        self.log_path = workdir / f"worker-{name}.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [CELERY, "-A", "scheduler_project", "worker", "-Q", IDLE_QUEUE, "--include", "bench.bare_task",
             "--hostname", self.hostname, "--pool", "prefork", "--concurrency", str(ARGS.concurrency),
             "--loglevel", ARGS.loglevel, "--without-mingle", "--without-gossip", "--without-heartbeat"],
            cwd=ROOT, env={**os.environ, "DATA_DIR": str(workdir), **env}, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60) -> None:
        def pong() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited: {self.log_path.read_text(errors='replace')[-3000:]}")
            return bool(celery_app.control.ping(destination=[self.hostname], timeout=0.5))

        wait_for(pong, timeout, f"{self.hostname} to answer a ping", interval=0.2)

    def consume(self, queue: str) -> None:
        replies = celery_app.control.add_consumer(queue, destination=[self.hostname], reply=True, timeout=5)
        assert replies, f"{self.hostname} did not confirm consuming {queue}"

    def stop_consuming(self, queue: str) -> None:
        celery_app.control.cancel_consumer(queue, destination=[self.hostname], reply=True, timeout=5)
        # A BRPOP already waiting on the queue still takes the next message pushed to it: let
        # it time out (kombu's brpop_timeout, 1 s) before anything is queued again.
        time.sleep(1.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # pool processes outliving their parent
            os.killpg(self.pid, signal.SIGKILL)
        self.log.close()


# --- the workload ---------------------------------------------------------------------------------


def reset_tables() -> None:
    sql("TRUNCATE runs_runattempt, runs_run, schedules_schedule, schedules_beatlease, outbox_event CASCADE")


def make_job(url: str) -> Job:
    sql("TRUNCATE runs_deadletter, runs_runattempt, runs_run, schedules_schedule, schedules_job CASCADE")
    return Job.objects.create(
        tenant_id=TENANT,
        key=JOB_KEY,
        name="Bench execution",
        target={"type": "HTTP", "method": "POST", "url": url, "headers": {}},
        payload={"scope": "all"},
        max_attempts=3,
        backoff_strategy="FIXED",
        backoff_base_seconds=1,
        backoff_max_seconds=60,
        timeout_seconds=10,
        queue=QUEUE,
    )


def bare_body(job: Job, key: str, slot: datetime) -> dict[str, Any]:
    """What ``runs.services.run_body`` builds for a manual run of ``job``: the same document."""
    return {
        "run_id": key,
        "tenant_id": TENANT,
        "job": JOB_KEY,
        "job_id": str(job.pk),
        "schedule_id": None,
        "kind": "MANUAL",
        "scheduled_for": slot.isoformat(),
        "attempt": 1,
        "series": 1,
        "payload": {"scope": "all"},
    }


def send_bare(messages: list[tuple[str, dict[str, Any]]], url: str, timeout: int) -> None:
    """``runs.services._publish`` for the bare task: the same batch, options and headers."""
    with celery_app.producer_or_acquire() as producer, producer.batch():
        for key, body in messages:
            args = [key, url, body]
            celery_app.send_task(
                BARE_TASK,
                args=args,
                queue=QUEUE,
                producer=producer,
                argsrepr=repr(args),
                kwargsrepr="{}",
                soft_time_limit=timeout + 5,
                time_limit=timeout + 15,
            )


def queue_ours(job: Job, n: int) -> None:
    """N manual runs committed, then sent by ``run_enqueue`` in the beat's batches: QUEUED."""
    slot = timezone.now()
    runs = [
        Run(tenant_id=TENANT, job=job, kind=RunKind.MANUAL, scheduled_for=slot, payload=job.payload) for _ in range(n)
    ]
    Run.objects.bulk_create(runs, batch_size=1000)
    ids = [run.pk for run in runs]
    for index in range(0, n, BATCH):
        run_enqueue(run_ids=ids[index : index + BATCH])


def queue_bare(job: Job, n: int, url: str) -> None:
    slot = timezone.now()
    keys = [str(uuid.uuid4()) for _ in range(n)]
    for index in range(0, n, BATCH):
        send_bare([(key, bare_body(job, key, slot)) for key in keys[index : index + BATCH]], url, job.timeout_seconds)


def succeeded() -> int:
    done, other = sql(
        "SELECT count(*) FILTER (WHERE status = 'SUCCEEDED'), "
        "count(*) FILTER (WHERE status NOT IN ('SUCCEEDED', 'QUEUED', 'RUNNING')) FROM runs_run"
    )[0]
    if other:
        raise RuntimeError(f"{other} runs ended otherwise: {sql('SELECT status, count(*) FROM runs_run GROUP BY 1')}")
    return int(done)


# --- 0: the receiver alone ------------------------------------------------------------------------

CLIENT = """
import sys, time, uuid, requests
url, n = sys.argv[1], int(sys.argv[2])
body = b'{"run_id":"' + b"x" * 36 + b'","tenant_id":"bench-exec","payload":{"scope":"all"}}' + b" " * 160
session = requests.Session()
session.post(url, data=body, headers={"Idempotency-Key": "warm"}).content
start = time.perf_counter()
for _ in range(n):
    headers = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
    session.post(url, data=body, headers=headers).content
print(time.perf_counter() - start)
"""


def phase_receiver(receiver: Receiver, requests_per_client: int = 5000) -> list[dict[str, Any]]:
    results = []
    for clients in (1, 2):
        receiver.reset()
        cpu = receiver.cpu()
        start = time.perf_counter()
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", CLIENT, receiver.url, str(requests_per_client)], stdout=subprocess.PIPE
            )
            for _ in range(clients)
        ]
        elapsed = [float(process.communicate(timeout=300)[0]) for process in processes]
        wall = time.perf_counter() - start
        n = clients * requests_per_client
        assert len(receiver.arrivals) == n + 1, (len(receiver.arrivals), n)
        results.append(
            {
                "clients": clients,
                "rate": n / max(elapsed),
                "round_trip_us": statistics.mean(elapsed) / requests_per_client * 1e6,
                "receiver_cpu_us": (receiver.cpu() - cpu) / (n + clients) * 1e6,
                "wall": wall,
            }
        )
        print(f"receiver alone, {clients} client(s): {results[-1]['rate']:,.0f} requests/s", flush=True)
    receiver.reset()
    return results


# --- 1: throughput --------------------------------------------------------------------------------


def throughput_round(variant: str, n: int, job: Job, receiver: Receiver, workers: dict[str, Worker]) -> dict:
    """Queue N, start the worker consuming, time until all N are done; CPU per group."""
    worker = workers["reconnect" if variant == "reconnect" else "ours"]
    reset_tables()
    receiver.reset()
    BROKER.delete(QUEUE)
    if variant == "bare":
        queue_bare(job, n, receiver.url)

        def done() -> bool:
            return receiver.requests >= n
    else:
        queue_ours(job, n)

        def done() -> bool:
            return succeeded() >= n

    assert BROKER.llen(QUEUE) == n, (BROKER.llen(QUEUE), n)
    cpu = Cpu(receiver, worker=worker.pid)
    before = cpu.snapshot()
    start = time.time()
    worker.consume(QUEUE)
    wait_for(done, max(120, n / 10), f"{variant}: {n} deliveries", interval=0.05)
    after = cpu.snapshot()
    if variant == "bare":
        end = max(receiver.arrivals.values())
    else:
        end = sql("SELECT extract(epoch FROM max(finished_at)) FROM runs_run")[0][0]
        attempts = sql("SELECT count(*) FROM runs_runattempt WHERE outcome = 'SUCCEEDED'")[0][0]
        assert attempts == n, f"{attempts} attempts for {n} runs"
    time.sleep(0.3)  # the last acknowledgements
    worker.stop_consuming(QUEUE)
    assert len(receiver.arrivals) == receiver.requests == n, (len(receiver.arrivals), receiver.requests, n)
    wall = float(end) - start
    used = Cpu.delta(before, after)
    return {
        "variant": variant,
        "n": n,
        "wall": wall,
        "rate": n / wall,
        "first": min(receiver.arrivals.values()) - start,
        **{f"cpu_{name}": seconds / n * 1000 for name, seconds in used.items()},
    }


def phase_throughput(job: Job, receiver: Receiver, workers: dict[str, Worker]) -> dict[str, list[dict]]:
    variants = ["bare", "ours", "reconnect"]
    for variant in variants:  # warm: connections, imports, caches
        throughput_round(variant, ARGS.warmup, job, receiver, workers)
    results: dict[str, list[dict]] = {variant: [] for variant in variants}
    for index in range(ARGS.repeat):
        order = variants if index % 2 == 0 else variants[::-1]
        for variant in order:
            figures = throughput_round(variant, ARGS.runs, job, receiver, workers)
            results[variant].append(figures)
            print(f"throughput {variant:<7} {figures['wall']:6.2f} s  {figures['rate']:7.1f} /s", flush=True)
    return results


def _median_round(rounds: list[dict]) -> dict:
    ordered = sorted(rounds, key=lambda r: r["wall"])
    return {**ordered[len(ordered) // 2], "rates": [r["rate"] for r in rounds]}


# --- 2: latency -----------------------------------------------------------------------------------

SCHEDULE_INSERT = """
    INSERT INTO schedules_schedule (id, tenant_id, name, description, job_id, trigger, timezone, calendar_policy,
        payload, enabled, misfire_policy, misfire_grace_seconds, overlap_policy, jitter_seconds, next_fire_at,
        created_at, updated_at)
    SELECT gen_random_uuid(), %(tenant)s, 'bench ' || n, '', %(job)s, {trigger}, 'UTC', 'SKIP', '{{}}', true,
        'RUN_ONCE', 300, 'ALLOW', 0, {next_fire_at}, now(), now()
    FROM generate_series(0, %(last)s) n
"""


def latency_beat(shape: str, job: Job, receiver: Receiver, worker: Worker, workdir: Path) -> dict[str, Any]:
    """A real beat: ``rate`` per-second crons (burst), or one-shots 1/rate s apart (stream)."""
    reset_tables()
    receiver.reset()
    BROKER.delete(QUEUE)
    worker.consume(QUEUE)
    log = (workdir / f"beat-{shape}.log").open("wb")
    beat = subprocess.Popen(
        [CELERY, "-A", "scheduler_project", "beat", "--loglevel", ARGS.loglevel,
         "--schedule", str(workdir / f"beat-{shape}.db")],
        cwd=ROOT, env={**os.environ, "DATA_DIR": str(workdir)}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: (
                beat.poll() is None
                and sql("SELECT 1 FROM schedules_beatlease WHERE holder <> '' AND expires_at > now()")
            ),
            60,
            "the beat to lead",
        )
        t0 = math.ceil(time.time()) + 3
        at = datetime.fromtimestamp(t0, UTC)
        if shape == "burst":
            trigger = """'{"version": 1, "type": "CRON", "expression": "* * * * * *"}'"""
            sql(
                SCHEDULE_INSERT.format(trigger=trigger, next_fire_at="%(t0)s"),
                {"tenant": TENANT, "job": job.pk, "last": ARGS.rate - 1, "t0": at},
            )
        else:
            step = 1 / ARGS.rate
            trigger = (
                "jsonb_build_object('version', 1, 'type', 'ONE_SHOT', 'run_at', "
                "to_char((%(t0)s::timestamptz + n * %(step)s * interval '1 second') AT TIME ZONE 'UTC', "
                """'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))"""
            )
            sql(
                SCHEDULE_INSERT.format(
                    trigger=trigger, next_fire_at="%(t0)s::timestamptz + n * %(step)s * interval '1 second'"
                ),
                {"tenant": TENANT, "job": job.pk, "last": ARGS.seconds * ARGS.rate - 1, "t0": at, "step": step},
            )
        sql("ANALYZE schedules_schedule")
        sql(f"NOTIFY {NOTIFY_CHANNEL}")
        cpu = Cpu(receiver, worker=worker.pid, beat=beat.pid)
        _sleep_until(t0)
        before = cpu.snapshot()
        _sleep_until(t0 + ARGS.seconds)
        after = cpu.snapshot()
        _sleep_until(t0 + ARGS.seconds + 0.5)
    finally:
        beat.send_signal(signal.SIGTERM)
        try:
            beat.wait(timeout=15)
        except subprocess.TimeoutExpired:
            beat.kill()
            beat.wait()
        log.close()
    end = at + timedelta(seconds=ARGS.seconds)
    expected = ARGS.seconds * ARGS.rate
    wait_for(
        lambda: sql("SELECT count(*) FROM runs_run WHERE status IN ('SCHEDULED', 'QUEUED', 'RUNNING')")[0][0] == 0,
        120,
        "the runs to finish",
    )
    worker.stop_consuming(QUEUE)
    rows = sql(
        """
        SELECT id::text, status, extract(epoch FROM scheduled_for), extract(epoch FROM queued_at),
            extract(epoch FROM started_at), extract(epoch FROM finished_at)
        FROM runs_run WHERE scheduled_for >= %s AND scheduled_for < %s
        """,
        [at, end],
    )
    statuses = {status for _, status, *_ in rows}
    arrivals = receiver.arrivals
    parts: dict[str, list[float]] = {"total": [], "beat": [], "pickup": [], "to_receiver": [], "after": []}
    unqueued = 0
    for key, _, slot, queued, started, finished in rows:
        if key not in arrivals:
            continue
        arrived, slot, started, finished = arrivals[key], float(slot), float(started), float(finished)
        parts["total"].append((arrived - slot) * 1000)
        if queued is None or float(queued) > started:  # claimed before the sender marked it QUEUED
            unqueued += 1
        else:
            parts["beat"].append((float(queued) - slot) * 1000)
            parts["pickup"].append((started - float(queued)) * 1000)
        parts["to_receiver"].append((arrived - started) * 1000)
        parts["after"].append((finished - arrived) * 1000)
    return {
        "expected": expected,
        "runs": len(rows),
        "received": len(parts["total"]),
        "statuses": sorted(statuses),
        "parts": parts,
        "unqueued": unqueued,
        "cpu": {name: seconds / ARGS.seconds * 100 for name, seconds in Cpu.delta(before, after).items()},
    }


def latency_bare(shape: str, job: Job, receiver: Receiver, worker: Worker) -> dict[str, Any]:
    """This process sends the bare task in the same shape: ``rate`` messages at each whole second
    (burst), or one every 1/rate s (stream); latency from the intended send time."""
    receiver.reset()
    BROKER.delete(QUEUE)
    worker.consume(QUEUE)
    cpu = Cpu(receiver, worker=worker.pid)
    t0 = math.ceil(time.time()) + 2
    slots: dict[str, float] = {}
    before = cpu.snapshot()
    if shape == "burst":
        groups = [(t0 + second, ARGS.rate) for second in range(ARGS.seconds)]
    else:
        groups = [(t0 + index / ARGS.rate, 1) for index in range(ARGS.seconds * ARGS.rate)]
    for slot, count in groups:
        _sleep_until(slot)
        at = datetime.fromtimestamp(slot, UTC)
        keys = [str(uuid.uuid4()) for _ in range(count)]
        send_bare([(key, bare_body(job, key, at)) for key in keys], receiver.url, job.timeout_seconds)
        slots.update(dict.fromkeys(keys, slot))
    after = cpu.snapshot()
    wait_for(lambda: receiver.requests >= len(slots), 120, "the bare messages")
    time.sleep(0.3)
    worker.stop_consuming(QUEUE)
    total = [(receiver.arrivals[key] - slot) * 1000 for key, slot in slots.items() if key in receiver.arrivals]
    return {
        "expected": len(slots),
        "runs": len(slots),
        "received": len(total),
        "statuses": ["SUCCEEDED"] if receiver.requests == len(slots) else ["duplicates"],
        "parts": {"total": total},
        "cpu": {name: seconds / ARGS.seconds * 100 for name, seconds in Cpu.delta(before, after).items()},
    }


def phase_latency(job: Job, receiver: Receiver, workers: dict[str, Worker], workdir: Path) -> dict[str, dict]:
    results = {}
    for variant in ARGS.latency_variants.split(","):
        path, shape, *rest = variant.split("-")
        worker = workers["reconnect" if rest == ["reconnect"] else "ours"]
        if path == "beat":
            figures = latency_beat(shape, job, receiver, worker, workdir)
        else:
            figures = latency_bare(shape, job, receiver, worker)
        results[variant] = figures
        total = figures["parts"]["total"]
        print(
            f"latency {variant}: {figures['received']}/{figures['expected']} received, "
            f"p50 {statistics.median(total):.1f} ms, p99 {percentile(total, 0.99):.1f} ms",
            flush=True,
        )
    return results


# --- 3: where the time goes -----------------------------------------------------------------------


def phase_breakdown(job: Job, receiver: Receiver) -> dict[str, Any]:
    reset_tables()
    receiver.reset()
    env = {**os.environ, "BENCH_URL": receiver.url, "BENCH_JOB": str(job.pk)}
    done = subprocess.run(
        [sys.executable, __file__, "--postgres", ARGS.postgres, "--redis", ARGS.redis, "--child", "breakdown",
         "--breakdown-runs", str(ARGS.breakdown_runs)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-4000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_breakdown() -> None:
    """One run at a time in this process, as a pool process executes them, phase by phase: the
    connection (kept and checked as the worker does, or closed around every task as Celery's
    Django fixup does by default), the claim, the delivery, the finish; each phase's SQL counted
    and timed. The same on the ORM path (SQLite's, and on PostgreSQL the gated runs'), the
    connection kept. And the bare task's function, and the floor, as many times."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from bench.bare_task import _statement_kind
    from runs import services
    from runs.services import run_attempt_succeeded, run_claim, run_delivery, run_execute
    from runs.targets.registry import deliver
    from scheduler_project import celery as celery_signals

    url, job = os.environ["BENCH_URL"], Job.objects.get(pk=os.environ["BENCH_JOB"])
    n = ARGS.breakdown_runs
    sql_time = [0.0]
    sql_count = [0]

    by_kind: dict[str, list[float]] = {}
    one_statement = services._in_one_statement  # the ORM path's rows swap it for one saying no

    def kind_of(statement: str) -> str:  # a prepared statement by its name: "EXECUTE scheduler_run_claim"
        words = statement.split(maxsplit=2)
        return " ".join(words[:2]) if words[0] in ("EXECUTE", "PREPARE") else _statement_kind(statement)

    def count(execute: Any, statement: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            took = time.perf_counter() - start
            sql_time[0] += took
            sql_count[0] += 1
            by_kind.setdefault(kind_of(statement), []).append(took * 1e6)

    commit = connection.commit

    def timed_commit() -> None:  # transaction.atomic() commits through this
        start = time.perf_counter()
        commit()
        by_kind.setdefault("COMMIT", []).append((time.perf_counter() - start) * 1e6)

    connection.commit = timed_commit  # type: ignore[method-assign]

    def queued(k: int) -> list[Run]:
        runs = [
            Run(tenant_id=TENANT, job=job, kind=RunKind.MANUAL, scheduled_for=timezone.now(), payload=job.payload)
            for _ in range(k)
        ]
        Run.objects.bulk_create(runs)
        Run.objects.filter(pk__in=[r.pk for r in runs]).update(status=RunStatus.QUEUED, queued_at=timezone.now())
        return runs

    def close_all() -> None:  # celery.fixups.django.DjangoWorkerFixup.close_database, no reuse
        for conn in connections.all(initialized_only=True):
            conn.close()

    def one_run(run: Run, mode: str, phases: dict[str, list[float]], statements: dict[str, list[float]]) -> None:
        marks = [time.perf_counter()]
        if mode == "reconnect":
            close_all()  # task_prerun
            connection.ensure_connection()
        else:
            # The worker's own task_prerun: CONN_MAX_AGE, and the health check unless the connection
            # answered the previous run under HEALTH_CHECK_BYPASS_SECONDS ago.
            celery_signals._recycle_database_connections()
            connection.close_if_health_check_failed()
        marks.append(time.perf_counter())
        before = sql_count[0], sql_time[0]
        claim = run_claim(run_id=run.pk, worker_name="breakdown@bench")
        assert claim is not None
        statements["claim"][0] += sql_count[0] - before[0]
        statements["claim"][1] += sql_time[0] - before[1]
        marks.append(time.perf_counter())
        receipt = deliver(run_delivery(claim))
        marks.append(time.perf_counter())
        before = sql_count[0], sql_time[0]
        run_attempt_succeeded(claim=claim, receipt=receipt)
        statements["finish"][0] += sql_count[0] - before[0]
        statements["finish"][1] += sql_time[0] - before[1]
        marks.append(time.perf_counter())
        if mode == "reconnect":
            close_all()  # task_postrun
        else:
            celery_signals._note_working_connections()  # task_postrun
        steps = zip(("connect", "claim", "delivery", "finish"), itertools.pairwise(marks), strict=True)
        for phase, (a, b) in steps:
            phases[phase].append((b - a) * 1e6)
        phases["total"].append((marks[-1] - marks[0]) * 1e6)

    # In blocks of 25, each kind in turn, so that whatever else the machine does hits all alike;
    # the first block is a warm-up, and so is each "kept" block's first run (after a reconnect).
    block = 25
    modes = ("reconnect", "kept", "orm")
    phases = {m: {p: [] for p in ("connect", "claim", "delivery", "finish", "total")} for m in modes}
    statements = {m: {p: [0, 0.0] for p in ("claim", "finish")} for m in modes}
    kinds: dict[str, list[float]] = {}
    bare: list[float] = []
    floor: list[float] = []
    slot = timezone.now()
    blocks = max(2, n // block + 1)
    with connection.execute_wrapper(count):
        for index in range(blocks):
            keep = index > 0
            for mode in modes:
                services._in_one_statement = (lambda: False) if mode == "orm" else one_statement  # type: ignore[assignment]
                runs = queued(block + (mode == "kept"))
                if mode == "kept":
                    one_run(
                        runs.pop(0), mode, {p: [] for p in phases[mode]}, {p: [0, 0.0] for p in ("claim", "finish")}
                    )
                by_kind.clear()
                target = phases[mode] if keep else {p: [] for p in phases[mode]}
                counts = statements[mode] if keep else {p: [0, 0.0] for p in ("claim", "finish")}
                for run in runs:
                    one_run(run, mode, target, counts)
                if keep and mode == "kept":
                    for kind, us in by_kind.items():
                        kinds.setdefault(kind, []).extend(us)
            for run in queued(block):
                start = time.perf_counter()
                floor_claim_finish(run.pk)
                if keep:
                    floor.append((time.perf_counter() - start) * 1e6)
            for _ in range(block):
                key = str(uuid.uuid4())
                start = time.perf_counter()
                bare_post(key, url, bare_body(job, key, slot))
                if keep:
                    bare.append((time.perf_counter() - start) * 1e6)
    services._in_one_statement = one_statement  # type: ignore[assignment]
    timed = (blocks - 1) * block
    results: dict[str, Any] = {"runs": timed}
    for mode in modes:
        results[mode] = {
            "us": {phase: statistics.median(values) for phase, values in phases[mode].items()},
            "sql": {phase: [c / timed, t / timed * 1e6] for phase, (c, t) in statements[mode].items()},
        }
    results["kinds"] = {kind: [len(us) / timed, statistics.median(us)] for kind, us in kinds.items()}
    results["bare_us"] = statistics.median(bare)
    results["floor_us"] = statistics.median(floor)
    [run] = queued(1)
    with CaptureQueriesContext(connection) as captured:
        run_execute(run_id=run.pk, worker_name="breakdown@bench")
    results["statements"] = [query["sql"] for query in captured.captured_queries]
    print(json.dumps(results))


# The same rows as run_claim and run_attempt_succeeded write (the run moved, an attempt, an event
# each), one statement per transaction: what the bookkeeping costs PostgreSQL and a round trip
# without the ORM. A floor for comparison, not an implementation: no concurrency limit, no
# BUFFER_ONE, no superseded result.
FLOOR_CLAIM = """
WITH r AS (
    UPDATE runs_run SET status = 'RUNNING', attempt = attempt + 1, started_at = coalesce(started_at, now()),
        finished_at = NULL, blocked_at = NULL, reason = '', lease_expires_at = now() + interval '40 seconds',
        updated_at = now()
    WHERE id = %(id)s AND status IN ('SCHEDULED', 'QUEUED')
    RETURNING id, tenant_id, job_id, schedule_id, kind, scheduled_for, attempt, series, payload
), a AS (
    INSERT INTO runs_runattempt (id, run_id, series, number, worker_name, started_at, outcome, error_type,
        error_message, response_excerpt{attempt_columns})
    SELECT gen_random_uuid(), id, series, attempt, 'breakdown@bench', now(), 'RUNNING', '', '', ''{attempt_values}
    FROM r
    RETURNING id
), e AS (
    INSERT INTO outbox_event (event_id, tenant_id, type, aggregate_type, aggregate_id, data, occurred_at
        {event_columns})
    SELECT gen_random_uuid(), tenant_id, 'scheduler.run.started', 'run', id::text, jsonb_build_object('id', id,
        'job', job_id, 'schedule', schedule_id, 'kind', kind, 'scheduled_for', scheduled_for, 'status', 'RUNNING',
        'series', series, 'error_type', '', 'error_message', '', 'worker', 'breakdown@bench'), now() {event_values}
    FROM r
)
SELECT r.attempt, r.series, r.payload, a.id, j.key, j.target, j.timeout_seconds
FROM r JOIN a ON true JOIN schedules_job j ON j.id = r.job_id
"""
FLOOR_FINISH = """
WITH r AS (
    UPDATE runs_run SET status = 'SUCCEEDED', finished_at = now(), next_attempt_at = NULL, lease_expires_at = NULL,
        error_type = '', error_message = '', outcome = '{{"response_status": 200, "latency_ms": 1}}', updated_at = now()
    WHERE id = %(id)s AND status = 'RUNNING' AND series = %(series)s AND attempt = %(attempt)s
    RETURNING id, tenant_id, job_id, schedule_id, kind, scheduled_for, series
), a AS (
    UPDATE runs_runattempt SET finished_at = now(), outcome = 'SUCCEEDED', response_status = 200, latency_ms = 1,
        response_excerpt = '{{"ok":true}}', error_type = '', error_message = ''
    WHERE id = %(attempt_id)s
), e AS (
    INSERT INTO outbox_event (event_id, tenant_id, type, aggregate_type, aggregate_id, data, occurred_at
        {event_columns})
    SELECT gen_random_uuid(), tenant_id, 'scheduler.run.succeeded', 'run', id::text, jsonb_build_object('id', id,
        'job', job_id, 'schedule', schedule_id, 'kind', kind, 'scheduled_for', scheduled_for, 'status', 'SUCCEEDED',
        'series', series, 'error_type', '', 'error_message', '', 'attempt', %(attempt)s), now() {event_values}
    FROM r
)
SELECT count(*) FROM r
"""


def _other_columns(model: Any, written: set[str], prefix: str) -> tuple[str, str, dict[str, Any]]:
    """The columns of ``model`` the floor's SQL does not name, with the model's defaults, so that it
    keeps up with columns added later: ``, col, ...``, ``, %(prefix0)s, ...`` and the parameters."""
    fields = [f for f in model._meta.concrete_fields if f.column not in written and not f.primary_key]
    probe = model()
    params = {f"{prefix}{i}": f.get_db_prep_save(getattr(probe, f.attname), connection) for i, f in enumerate(fields)}
    columns = "".join(f", {f.column}" for f in fields)
    values = "".join(f", %({name})s" for name in params)
    return columns, values, params


def floor_claim_finish(run_id: Any) -> None:
    from django.db import transaction

    from runs.models import RunAttempt
    from scheduler_project.models import OutboxEvent

    attempt_columns, attempt_values, params = _other_columns(
        RunAttempt,
        {"run_id", "series", "number", "worker_name", "started_at", "outcome", "error_type", "error_message",
         "response_excerpt"},
        "attempt",
    )  # fmt: skip
    event_columns, event_values, event_params = _other_columns(
        OutboxEvent, {"event_id", "tenant_id", "type", "aggregate_type", "aggregate_id", "data", "occurred_at"}, "event"
    )
    params.update(event_params)
    names = {
        "attempt_columns": attempt_columns,
        "attempt_values": attempt_values,
        "event_columns": event_columns,
        "event_values": event_values,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(FLOOR_CLAIM.format(**names), {"id": run_id, **params})
        attempt, series, _payload, attempt_id, _key, _target, _timeout = cursor.fetchone()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            FLOOR_FINISH.format(**names),
            {"id": run_id, "series": series, "attempt": attempt, "attempt_id": attempt_id, **params},
        )
        assert cursor.fetchone()[0] == 1


def phase_profile(job: Job, receiver: Receiver, workdir: Path) -> dict[str, Any]:
    """A throughput round on a worker whose pool runs under cProfile (bench/bare_task.py)."""
    import pstats

    folder = workdir / "profile"
    folder.mkdir()
    worker = Worker("ours", workdir, BENCH_EXEC_PROFILE=str(folder))
    try:
        worker.wait_ready()
        throughput_round("ours", ARGS.runs, job, receiver, {"ours": worker})
    finally:
        worker.stop()
    stats = pstats.Stats(*[str(p) for p in folder.glob("*.prof")])
    counts: dict[str, list[float]] = {}
    for path in folder.glob("*.sql.json"):
        for kind, (c, t) in json.loads(path.read_text()).items():
            entry = counts.setdefault(kind, [0, 0.0])
            entry[0] += c
            entry[1] += t
    return {"stats": stats, "sql": counts}


# --- report ---------------------------------------------------------------------------------------


def report(
    receiver_figures: list[dict] | None,
    throughput: dict[str, list[dict]] | None,
    latency: dict[str, dict] | None,
    breakdown: dict[str, Any] | None,
    profile: dict[str, Any] | None,
) -> None:
    if receiver_figures:
        print("\n0. the receiver alone (asyncio, this process), loaded by keep-alive `requests` clients")
        print(f"{'clients':>8} {'requests/s':>11} {'round trip':>11} {'receiver CPU':>13}")
        for f in receiver_figures:
            print(
                f"{f['clients']:>8} {f['rate']:>11,.0f} {f['round_trip_us']:>8.0f} us {f['receiver_cpu_us']:>10.0f} us"
            )
    if throughput:
        n = ARGS.runs
        print(
            f"\n1. throughput: {n:,} runs from QUEUED (every message in Redis) to SUCCEEDED, one worker\n"
            f"   (prefork, concurrency {ARGS.concurrency}, loglevel {ARGS.loglevel}); the bare task until the receiver"
            f" has all {n:,};\n   median of {ARGS.repeat} interleaved rounds [range of the rate]; CPU ms per run"
            " from /proc (worker = parent and pool)"
            + (f";\n   the receiver answers {ARGS.answer_ms:g} ms after each request" if ARGS.answer_ms else "")
        )
        labels = {"bare": "bare Celery task", "ours": "ours", "reconnect": "ours, reconnecting"}
        header = ("", "runs/s", "[min-max]", "wall/run", f"x{ARGS.concurrency} procs", "worker", "PostgreSQL",
                  "Redis", "receiver")  # fmt: skip
        print("{:<22} {:>7} {:>13} {:>9} {:>9} {:>7} {:>10} {:>6} {:>8}".format(*header))
        medians = {variant: _median_round(rounds) for variant, rounds in throughput.items()}
        for variant, f in medians.items():
            rates = f"[{min(f['rates']):,.0f}-{max(f['rates']):,.0f}]"
            per_run = f["wall"] / f["n"] * 1000
            print(
                f"{labels[variant]:<22} {f['rate']:>7,.0f} {rates:>13} {per_run:>6.2f} ms "
                f"{per_run * ARGS.concurrency:>6.2f} ms {f['cpu_worker']:>7.2f} {f['cpu_postgres']:>10.2f} "
                f"{f['cpu_redis']:>6.2f} {f['cpu_receiver']:>8.2f}"
            )
        bare = medians["bare"]
        for variant in ("ours", "reconnect"):
            if variant in medians:
                f = medians[variant]
                cpu = sum(f[k] for k in ("cpu_worker", "cpu_postgres", "cpu_redis"))
                bare_cpu = sum(bare[k] for k in ("cpu_worker", "cpu_postgres", "cpu_redis"))
                print(
                    f"{labels[variant] + ' / bare':<36} time per run {f['wall'] / bare['wall']:.2f}x, "
                    f"CPU per run (worker + PostgreSQL + Redis) {cpu / bare_cpu:.2f}x"
                )
        ratio = medians["ours"]["wall"] / bare["wall"]
        print(f"   goal: ours at most 1.33x the bare task's time per run: {ratio:.2f}x, {_met(ratio <= 4 / 3)}")
    if latency:
        print(
            f"\n2. latency: slot time (scheduled_for) to the first byte at the receiver, {ARGS.rate} runs/s for "
            f"{ARGS.seconds} s, ms;\n   the same worker throughout, the beat a real `celery beat`"
        )
        labels = {
            "beat-burst": f"beat, {ARGS.rate} per-second crons",
            "beat-stream": f"beat, one-shots {1000 / ARGS.rate:g} ms apart",
            "bare-burst": f"bare task, {ARGS.rate} sent each second",
            "bare-stream": f"bare task, one per {1000 / ARGS.rate:g} ms",
            "beat-burst-reconnect": f"beat, {ARGS.rate} per-second crons, reconnecting",
        }
        print(f"{'':<44} {'received':>11} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}   CPU % of a core")
        for variant, f in latency.items():
            total = f["parts"]["total"]
            count = f"{f['received']:,}/{f['expected']:,}"
            cpu = ", ".join(f"{name} {value:.0f}" for name, value in f["cpu"].items() if value >= 0.5)
            print(
                f"{labels.get(variant, variant):<44} {count:>11} {statistics.median(total):7.1f} "
                f"{percentile(total, 0.95):7.1f} {percentile(total, 0.99):7.1f} {max(total):7.1f}   {cpu}"
            )
            if f["statuses"] != ["SUCCEEDED"] or f["received"] != f["expected"] or f["runs"] != f["expected"]:
                print(f"   !! {variant}: {f['runs']} runs, statuses {f['statuses']}")
        print("   where a run's latency goes, p50 / p99 ms: slot -> queued_at (the beat) -> started_at (broker, pool,")
        print("   connection) -> receiver (claim, delivery) -> finished_at (the answer, the finish)")
        for variant, f in latency.items():
            if variant.startswith("beat"):
                parts = f["parts"]
                line = "  ".join(
                    f"{name} {statistics.median(parts[name]):.1f} / {percentile(parts[name], 0.99):.1f}"
                    for name in ("beat", "pickup", "to_receiver", "after")
                    if parts[name]
                )
                print(f"   {variant:<18} {line}")
                if f["unqueued"]:
                    left_out = f"({f['unqueued']} runs were claimed before their sender marked them QUEUED: left out)"
                    print(f"   {'':<18} {left_out}")
        burst = latency.get("beat-burst")
        if burst:
            p99 = percentile(burst["parts"]["total"], 0.99)
            print(f"   goal: p99 under 500 ms at {ARGS.rate}/s through the beat: {p99:.0f} ms, {_met(p99 < 500)}")
    if breakdown:
        print(
            f"\n3. one run at a time in one process, no Celery ({breakdown['runs']} runs each, in blocks of 25 taking"
            " turns;\n   median us; SQL: statements and their time per run)"
        )
        print(f"{'':<24} {'connection':>10} {'claim':>18} {'delivery':>9} {'finish':>18} {'total':>8}")
        rows = (("kept", "ours, connection kept"), ("reconnect", "ours, reconnecting"), ("orm", "ORM path, kept"))
        for mode, label in rows:
            us, sqls = breakdown[mode]["us"], breakdown[mode]["sql"]
            claim = f"{us['claim']:>7.0f} ({sqls['claim'][0]:.0f}: {sqls['claim'][1]:>4.0f})"
            finish = f"{us['finish']:>7.0f} ({sqls['finish'][0]:.0f}: {sqls['finish'][1]:>4.0f})"
            cells = f"{us['connect']:>10.0f} {claim:>18} {us['delivery']:>9.0f} {finish:>18} {us['total']:>8.0f}"
            print(f"{label:<24} {cells}")
        bare = breakdown["bare_us"]
        print(f"{'bare task function':<24} {'':>10} {'':>18} {bare:>9.0f} {'':>18} {bare:>8.0f}")
        kept, orm = breakdown["kept"]["us"], breakdown["orm"]["us"]
        print(
            "   ORM path: SQLite's, and on PostgreSQL that of runs under a concurrency limit or BUFFER_ONE.\n"
            "   A floor for the bookkeeping alone (connection kept, no delivery, no worker lookup): the same rows\n"
            "   written by one SQL statement per transaction (BEGIN, the statement parsed and planned, COMMIT),\n"
            f"   claim and finish, {breakdown['floor_us']:.0f} us a run; ours (one prepared statement each, committing"
            f" by itself): {kept['claim'] + kept['finish']:.0f} us;\n"
            f"   the ORM path: {orm['claim'] + orm['finish']:.0f} us"
        )
        print(
            "   each statement of ours, per run and median us (outside a transaction a statement commits by itself,\n"
            "   a WAL flush included; PREPARE: once per connection):"
        )
        for kind, (per_run, us) in sorted(breakdown["kinds"].items(), key=lambda item: -item[1][0] * item[1][1]):
            print(f"     {kind:<36} {per_run:4.1f} x {us:5.0f} us")
        print(f"   the statements of one run_execute ({len(breakdown['statements'])}):")
        for statement in breakdown["statements"]:
            print(f"     {' '.join(statement.split())[:110]}")
    if profile:
        counts = profile["sql"]
        total = sum(c for c, _ in counts.values())
        print(f"\n4. inside the pool (cProfile on, so slower): SQL per run, {ARGS.runs:,} runs")
        for kind, (c, t) in sorted(counts.items(), key=lambda item: -item[1][1]):
            print(f"   {kind:<40} {c / ARGS.runs:6.2f} statements  {t / ARGS.runs * 1e6:8.0f} us")
        print(f"   {'all':<40} {total / ARGS.runs:6.2f} statements")
        profile["stats"].sort_stats("cumulative").print_stats(45)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    if ARGS.child == "breakdown":
        child_breakdown()
        return
    phases = set(ARGS.phases.split(","))
    load = os.getloadavg()[0]
    started = time.monotonic()
    call_command("migrate", verbosity=0)
    BROKER.flushdb()
    receiver = Receiver()
    workers: dict[str, Worker] = {}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-exec-") as tmp:
        workdir = ARGS.logs or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            job = make_job(receiver.url)
            if "receiver" in phases:
                results["receiver"] = phase_receiver(receiver)
            if phases & {"throughput", "latency"}:
                workers["ours"] = Worker("ours", workdir)
                workers["reconnect"] = Worker("reconnect", workdir, BENCH_EXEC_RECONNECT="1")
                for worker in workers.values():
                    worker.wait_ready()
            if "throughput" in phases:
                results["throughput"] = phase_throughput(job, receiver, workers)
            if "latency" in phases:
                results["latency"] = phase_latency(job, receiver, workers, workdir)
            for worker in workers.values():
                worker.stop()
            if "breakdown" in phases:
                results["breakdown"] = phase_breakdown(job, receiver)
            if ARGS.profile:
                results["profile"] = phase_profile(job, receiver, workdir)
        except BaseException:
            for log in sorted(workdir.glob("*.log")):
                print(f"== {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            for worker in workers.values():
                worker.stop()
            receiver.stop()
            BROKER.flushdb()
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {(time.monotonic() - started) / 60:.1f} "
        f"min; 1-minute load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    report(
        results.get("receiver"),
        results.get("throughput"),
        results.get("latency"),
        results.get("breakdown"),
        results.get("profile"),
    )


if __name__ == "__main__":
    main()
