"""The beat (schedules/beat.py) against django-celery-beat's DatabaseScheduler, side by side.

Four measurements on one PostgreSQL database and one Redis DB of its own:

1. idle tick: our tick's work (lease renewal, the probe of what is due next, the dispatch and
   sleep decisions it feeds; and the whole ``tick()`` minus its sleep, of the leader and of a
   standby) at 1k .. 1M enabled schedules, next to DatabaseScheduler's ``tick()`` at 1k .. 50k
   periodic tasks (the anchors' crontab and interval mix), in this process;
2. start-up (construction + first tick) and resident memory, each size in a fresh process;
3. burst: N schedules due at the same instant, dispatched by calling ``schedule_dispatch_due``
   with the beat's batch size until nothing is left (real transactions, enqueue on commit), timed
   until every run row exists and every message is in the Redis queue: schedules sharing eight
   rules, every schedule a rule of its own, and two dispatching processes at once (as two beats);
   DatabaseScheduler the same at a smaller N (it dispatches one entry per O(N) tick);
4. scheduling lag (a run's message on the broker - its slot) of a real ``celery -A
   scheduler_project beat`` process under a steady stream of slots.

    .venv/bin/python bench/beat.py                      # everything, about 5 minutes
    .venv/bin/python bench/beat.py --phases burst --profile

It creates the database named by --postgres if missing (the name must contain "bench"), empties
its tables, and flushes the Redis DB named by --redis (not DB 0). Nothing else is touched.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import configure, sql

QUEUE = "bench-beat"  # our runs' messages
DCB_QUEUE = "bench-dcb"  # DatabaseScheduler's messages
TENANT = "bench-beat"
JOBS = 10


def _sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgres://postgres:postgres@127.0.0.1:5432/scheduler_bench_beat")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--phases", default="idle,burst,lag", help="any of idle (with memory), burst, lag")
    parser.add_argument("--sizes", type=_sizes, default=_sizes("1000,10000,50000,100000,1000000"))
    parser.add_argument("--dcb-sizes", type=_sizes, default=_sizes("1000,10000,50000"))
    parser.add_argument("--ticks", type=int, default=300, help="idle ticks timed per size (fewer if slow)")
    parser.add_argument("--burst", type=_sizes, default=_sizes("2000,10000"), help="sizes, the rule mix")
    parser.add_argument("--dispatchers", type=_sizes, default=_sizes("1,2"), help="processes, at the largest size")
    parser.add_argument("--burst-distinct", type=int, default=10000, help="size with every rule distinct; 0 skips")
    parser.add_argument("--dcb-burst", type=int, default=2000, help="0 skips DatabaseScheduler's burst")
    parser.add_argument("--dcb-burst-cap", type=float, default=120.0, help="seconds")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest burst and print the top")
    parser.add_argument("--lag-seconds", type=int, default=30)
    parser.add_argument("--lag-rate", type=int, default=100, help="slots per second")
    parser.add_argument("--lag-variants", default="one-shot,per-second-cron")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes and bursts per figure (median)")
    parser.add_argument("--child", choices=("ours", "dcb", "dispatch"), help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()
configure(ARGS, name="beat")

import django

django.setup()

import redis
from celery.beat import Scheduler as CeleryScheduler
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule
from django_celery_beat.schedulers import DatabaseScheduler

from scheduler_project.celery import app as celery_app
from schedules import services
from schedules.beat import Scheduler
from schedules.selectors import beat_probe
from schedules.wakeup import NOTIFY_CHANNEL

BROKER = redis.Redis.from_url(ARGS.redis)


# --- helpers ------------------------------------------------------------------------------------


def memory() -> dict[str, float]:
    """Resident and peak resident memory of this process, MiB."""
    status = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("Vm")
    )
    return {
        "rss": int(status["VmRSS"].split()[0]) / 1024,
        "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def timed(functions: dict[str, Callable[[], Any]], *, calls: int, budget: float, warmup: int = 5) -> dict[str, Any]:
    """Call each function in turn (interleaved, so drift hits all alike): median and p95, ms."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    deadline = time.perf_counter() + budget
    done = 0
    while done < calls and (done < 15 or time.perf_counter() < deadline):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            samples[name].append((time.perf_counter() - start) * 1000)
        done += 1
    return {
        name: {"median": statistics.median(s), "p95": sorted(s)[int(len(s) * 0.95) - 1], "n": len(s)}
        for name, s in samples.items()
    }


def reset() -> None:
    """Empty every table the benchmark writes (this database is the benchmark's own)."""
    sql(
        "TRUNCATE runs_runattempt, runs_run, schedules_schedule, schedules_job, schedules_beatlease, outbox_event, "
        "django_celery_beat_periodictask, django_celery_beat_periodictasks, django_celery_beat_crontabschedule, "
        "django_celery_beat_intervalschedule CASCADE"
    )
    sql(
        """
        INSERT INTO schedules_job (id, tenant_id, key, name, description, target, payload, max_attempts,
            backoff_strategy, backoff_base_seconds, backoff_max_seconds, timeout_seconds, queue,
            required_capabilities, priority, webhook_secret, created_at, updated_at)
        SELECT md5('bench-job' || j)::uuid, %s, 'bench.job' || j, 'Bench ' || j, '',
            '{"type": "EVENT", "subject": "bench"}', '{"scope": "all"}', 3, 'FIXED', 10, 600, 300, %s, '[]', 5,
            '', now(), now()
        FROM generate_series(0, %s - 1) j
        """,
        [TENANT, QUEUE, JOBS],
    )


SCHEDULE_INSERT = """
    INSERT INTO schedules_schedule (id, tenant_id, name, description, job_id, trigger, timezone, calendar_policy,
        payload, enabled, misfire_policy, misfire_grace_seconds, overlap_policy, jitter_seconds, next_fire_at,
        created_at, updated_at)
    SELECT gen_random_uuid(), %(tenant)s, 'bench ' || n, '', md5('bench-job' || (n %% %(jobs)s))::uuid,
        {trigger}, {zone}, 'SKIP', '{{"n": 1}}', true, 'RUN_ONCE', 300, 'ALLOW', 0, {next_fire_at}, now(), now()
    FROM generate_series(%(first)s, %(last)s) n
"""


def seed_idle(have: int, want: int) -> None:
    """Grow our schedules to ``want``: hourly crons at minute n % 60, first fire 1-3 hours ahead."""
    sql(
        SCHEDULE_INSERT.format(
            zone="'UTC'",
            trigger="""jsonb_build_object('version', 1, 'type', 'CRON', 'expression', (n %% 60) || ' * * * *')""",
            next_fire_at="date_trunc('hour', now()) + interval '2 hours' + (n %% 60) * interval '1 minute'",
        ),
        {"tenant": TENANT, "jobs": JOBS, "first": have, "last": want - 1},
    )
    sql("ANALYZE schedules_schedule")


def seed_dcb(n: int, *, queue: str | None = None) -> int:
    """The anchors' mix (bench/anchors/mix.py): 40% hourly crontab ``M * * * *``, 20% daily
    ``M H * * *`` (H uniform: DatabaseScheduler loads only hours within +-2 h of now, and 4), 40%
    intervals of 1 h, 6 h, 12 h, 1 d; every entry last ran now and none is due for 10 minutes.
    Returns how many the scheduler will load."""
    sql("TRUNCATE django_celery_beat_periodictask, django_celery_beat_crontabschedule CASCADE")
    now = timezone.now()
    minutes = [(now.minute + 11 + k) % 60 for k in range(48)]  # >= 11 minutes ahead, hourly or daily
    hourly = [CrontabSchedule.objects.create(minute=str(m), hour="*", timezone="UTC").pk for m in minutes]
    daily = CrontabSchedule.objects.bulk_create(
        [CrontabSchedule(minute=str(m), hour=str(h), timezone="UTC") for h in range(24) for m in minutes]
    )
    periods = [(1, "hours"), (6, "hours"), (12, "hours"), (1, "days")]
    intervals = [IntervalSchedule.objects.get_or_create(every=e, period=p)[0].pk for e, p in periods]
    sql(
        """
        INSERT INTO django_celery_beat_periodictask (name, task, args, kwargs, queue, enabled, last_run_at,
            total_run_count, date_changed, description, crontab_id, interval_id, one_off, headers)
        SELECT 'bench-' || n, 'bench.noop', '[]', '{}', %(queue)s, true, now(), 0, now(), '',
            CASE WHEN n %% 10 < 4 THEN (%(hourly)s::int[])[1 + (n / 10) %% 48]
                 WHEN n %% 10 < 6 THEN (%(daily)s::int[])[1 + ((n / 10) %% 24) * 48 + (n / 240) %% 48] END,
            CASE WHEN n %% 10 >= 6 THEN (%(intervals)s::int[])[1 + (n / 10) %% 4] END,
            false, '{}'
        FROM generate_series(0, %(n)s - 1) n
        """,
        {"queue": queue, "hourly": hourly, "daily": [c.pk for c in daily], "intervals": intervals, "n": n},
    )
    sql("ANALYZE django_celery_beat_periodictask")
    return DatabaseScheduler(app=celery_app, lazy=True).enabled_models_qs().filter(name__startswith="bench-").count()


def quiet_dcb(scheduler: CeleryScheduler) -> list[int]:
    """Count apply_async instead of sending (the anchors' noop mode)."""
    sent = [0]

    def apply_async(*args: Any, **kwargs: Any) -> None:
        sent[0] += 1

    scheduler.apply_async = apply_async  # type: ignore[method-assign]
    return sent


def our_scheduler() -> Scheduler:
    scheduler = Scheduler(app=celery_app)
    scheduler._wait = lambda seconds: seconds  # type: ignore[method-assign]  # no sleep, no LISTEN
    return scheduler


def child(kind: str) -> dict[str, Any]:
    """Start-up and memory in fresh processes (``--child``), against what is seeded now: the
    median of ``--repeat`` processes, figure by figure."""
    runs = [_child(kind) for _ in range(ARGS.repeat)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _child(kind: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--postgres", ARGS.postgres, "--redis", ARGS.redis, "--child", kind],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(kind: str) -> None:
    if kind == "dispatch":
        _sleep_until(datetime.fromisoformat(os.environ["BENCH_AT"]))
        print(json.dumps(dispatch_until_done()))
        return
    base = memory()
    start = time.perf_counter()
    if kind == "ours":
        scheduler: CeleryScheduler = our_scheduler()
    else:
        scheduler = DatabaseScheduler(app=celery_app)
        quiet_dcb(scheduler)
    constructed = time.perf_counter() - start
    scheduler.tick()
    started = time.perf_counter() - start
    for _ in range(20):
        scheduler.tick()
    print(json.dumps({"base": base["rss"], "construct": constructed, "startup": started, **memory()}))
    if isinstance(scheduler, Scheduler):
        scheduler.close()


# --- 1 and 2: idle tick, start-up, memory ---------------------------------------------------------


def phase_idle() -> dict[str, Any]:
    results: dict[str, Any] = {"ours": {}, "dcb": {}}
    reset()
    have = 0
    scheduler = our_scheduler()
    scheduler._lead()  # the leader; the other one stands by
    standby = our_scheduler()

    def core() -> None:
        scheduler._lead()
        scheduler._read_probe()
        scheduler._dispatch()
        scheduler._until_next_due()

    def services_only() -> None:
        services.beat_lease_acquire(holder=scheduler.identity, ttl=scheduler.lease_ttl)
        beat_probe(leader=True)

    for n in sorted(ARGS.sizes):
        start = time.perf_counter()
        seed_idle(have, n)
        have = n
        print(f"ours: {n:>9,} schedules seeded in {time.perf_counter() - start:5.1f} s", flush=True)
        figures = timed({"core": core, "full": scheduler.tick, "standby": standby.tick}, calls=ARGS.ticks, budget=8)
        assert scheduler.token is not None, "the leader lost its lease"
        assert standby.token is None, "the standby took the lease"
        assert not sql("SELECT 1 FROM runs_run LIMIT 1"), "an idle tick dispatched something"
        services.beat_lease_release(holder=scheduler.identity)  # the child leads, as a lone beat does
        figures["process"] = child("ours")
        results["ours"][n] = figures
        print(
            f"      tick {figures['core']['median']:.2f} ms, full {figures['full']['median']:.2f} ms, "
            f"standby {figures['standby']['median']:.2f} ms",
            flush=True,
        )
    results["ours_services_1m"] = timed({"services": services_only}, calls=ARGS.ticks, budget=5)["services"]
    scheduler.close()
    standby.close()
    sql("TRUNCATE runs_runattempt, runs_run, schedules_schedule, schedules_beatlease CASCADE")

    for n in sorted(ARGS.dcb_sizes):
        start = time.perf_counter()
        loaded = seed_dcb(n)
        seeded = time.perf_counter() - start
        start = time.perf_counter()
        dcb = DatabaseScheduler(app=celery_app)
        sent = quiet_dcb(dcb)
        dcb.tick()
        startup = time.perf_counter() - start
        figures = timed({"tick": dcb.tick}, calls=ARGS.ticks, budget=8, warmup=2)
        assert sent[0] == 0, "an idle DatabaseScheduler tick dispatched something"
        figures["loaded"] = loaded
        figures["startup_in_process"] = startup
        figures["process"] = child("dcb")
        results["dcb"][n] = figures
        print(
            f"dcb:  {n:>9,} tasks seeded in {seeded:4.1f} s ({loaded:,} loaded), "
            f"tick {figures['tick']['median']:.2f} ms",
            flush=True,
        )
        del dcb
    sql("TRUNCATE django_celery_beat_periodictask, django_celery_beat_crontabschedule CASCADE")
    return results


# --- 3: burst ------------------------------------------------------------------------------------


def _sleep_until(at: datetime) -> None:
    time.sleep(max(0.0, (at - timezone.now()).total_seconds()))


def burst_rules(at: datetime, kind: str) -> tuple[str, str]:
    """SQL for the trigger and time zone of schedule ``n``, every one due at ``at``.

    ``mix``: the rules a burst "on the hour" is made of, eight of them (hourly, daily, weekly,
    monthly, every minute, every five minutes, daily in Berlin and in New York), so schedules
    share rules as they do in life. ``distinct``: every schedule a rule of its own, the worst
    case for the dispatcher's per-batch trigger cache. 6-field crons, seconds first, as the
    slot is a whole second and not a minute.
    """
    s, m, h = at.second, at.minute, at.hour
    if kind == "distinct":
        # extra minutes and hours in the lists (the next slot a minute or more away), and three
        # spellings of "every day" and of "every month": 59 * 23 * 3 * 3 = 12,213 rules
        assert ARGS.burst_distinct <= 12_213, "at most 12,213 distinct rules"
        expression = (
            f"format('%%s %%s,%%s %%s,%%s %%s %%s *', {s}, {m}, ({m} + 1 + n %% 59) %% 60, {h}, "
            f"({h} + 1 + (n / 59) %% 23) %% 24, (ARRAY['*', '1-31', '*/1'])[1 + (n / 1357) %% 3], "
            "(ARRAY['*', '1-12', '*/1'])[1 + n / 4071])"
        )
        return f"jsonb_build_object('version', 1, 'type', 'CRON', 'expression', {expression})", "'UTC'"
    local = {zone: at.astimezone(ZoneInfo(zone)).hour for zone in ("Europe/Berlin", "America/New_York")}
    rules = [
        (f"{s} {m} * * * *", "UTC"),
        (f"{s} {m} {h} * * *", "UTC"),
        (f"{s} {m} {h} * * {(at.weekday() + 1) % 7}", "UTC"),
        (f"{s} {m} {h} {at.day} * *", "UTC"),
        (f"{s} * * * * *", "UTC"),
        (f"{s} {m % 5}-59/5 * * * *", "UTC"),
        (f"{s} {m} {local['Europe/Berlin']} * * *", "Europe/Berlin"),
        (f"{s} {m} {local['America/New_York']} * * *", "America/New_York"),
    ]
    expressions = "ARRAY[" + ", ".join(f"'{e}'" for e, _ in rules) + "]"
    zones = "ARRAY[" + ", ".join(f"'{z}'" for _, z in rules) + "]"
    trigger = f"jsonb_build_object('version', 1, 'type', 'CRON', 'expression', ({expressions})[1 + n %% 8])"
    return trigger, f"({zones})[1 + n %% 8]"


def dispatch_until_done(profile: bool = False) -> dict[str, Any]:
    """The dispatch loop: the beat's batch size until nothing is due (``--child dispatch`` too)."""
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    first = None
    dispatched = 0
    while ids := services.schedule_dispatch_due(now=timezone.now(), limit=Scheduler.batch_size):
        dispatched += len(ids)
        first = first or time.time()
    end = time.time()
    if profiler:
        import pstats

        profiler.disable()
        print("\ncProfile of the burst's dispatch loop")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
    return {"dispatched": dispatched, "first": first, "end": end}


def burst_ours(n: int, rules: str, dispatchers: int, profile: bool = False) -> dict[str, Any]:
    """N schedules due at one whole second; time from that second until every run row exists
    and every message is in the Redis queue. More than one dispatcher: that many processes
    (started beforehand, waiting for the second) run the loop at once, as several beats do."""
    sql("TRUNCATE runs_runattempt, runs_run, schedules_schedule, schedules_beatlease, outbox_event CASCADE")
    BROKER.delete(QUEUE)
    at = (timezone.now() + timedelta(seconds=2 if dispatchers == 1 else 5)).replace(microsecond=0)
    trigger, zone = burst_rules(at, rules)
    sql(
        SCHEDULE_INSERT.format(trigger=trigger, zone=zone, next_fire_at="%(at)s"),
        {"tenant": TENANT, "jobs": JOBS, "first": 0, "last": n - 1, "at": at},
    )
    sql("ANALYZE schedules_schedule")
    sql("VACUUM ANALYZE runs_run")
    if dispatchers == 1:
        _sleep_until(at)
        loops = [dispatch_until_done(profile)]
    else:
        env = {**os.environ, "BENCH_AT": at.isoformat()}
        command = [sys.executable, __file__, "--postgres", ARGS.postgres, "--redis", ARGS.redis, "--child", "dispatch"]
        processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(dispatchers)]
        loops = []
        for process in processes:
            try:
                out, _ = process.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
            loops.append(json.loads(out.strip().splitlines()[-1]))
    in_broker = BROKER.llen(QUEUE)
    elapsed = max(loop["end"] for loop in loops) - at.timestamp()
    runs, queued = sql("SELECT count(*), count(*) FILTER (WHERE status = 'QUEUED') FROM runs_run")[0]
    assert runs == queued == in_broker == n, (runs, queued, in_broker, n)
    [[late]] = sql("SELECT count(*) FROM schedules_schedule WHERE next_fire_at <= %s", [at])
    assert late == 0, f"{late} schedules not advanced"
    first = min(loop["first"] for loop in loops if loop["first"]) - at.timestamp()
    shares = "/".join(str(loop["dispatched"]) for loop in loops)
    return {"n": n, "rules": rules, "dispatchers": dispatchers, "first": first, "elapsed": elapsed,
            "rate": n / elapsed, "shares": shares}  # fmt: skip


def burst_dcb(n: int) -> dict[str, Any]:
    """N crontab ``M * * * *`` entries whose minute M has just begun, all due; the loop of
    ``celery.beat.Service.start`` (tick, sleep when told) until all N are in the broker."""
    BROKER.delete(DCB_QUEUE)
    sql("TRUNCATE django_celery_beat_periodictask, django_celery_beat_crontabschedule CASCADE")
    slot = timezone.now().replace(second=0, microsecond=0)
    crontab = CrontabSchedule.objects.create(minute=str(slot.minute), hour="*", timezone="UTC")
    sql(
        """
        INSERT INTO django_celery_beat_periodictask (name, task, args, kwargs, queue, enabled, last_run_at,
            total_run_count, date_changed, description, crontab_id, one_off, headers)
        SELECT 'bench-' || n, 'bench.noop', '[]', '{}', %s, true, %s, 0, now(), '', %s, false, '{}'
        FROM generate_series(0, %s - 1) n
        """,
        [DCB_QUEUE, slot - timedelta(minutes=59, seconds=59), crontab.pk, n],
    )
    scheduler = DatabaseScheduler(app=celery_app)  # loaded before the slot, as a running beat would be
    start = time.perf_counter()
    first = None
    ticks = 0
    while time.perf_counter() - start < ARGS.dcb_burst_cap:
        interval = scheduler.tick()
        ticks += 1
        if first is None and BROKER.llen(DCB_QUEUE):
            first = time.perf_counter() - start
        if ticks % 20 == 0 and BROKER.llen(DCB_QUEUE) >= n:
            break
        if interval and interval > 0:
            time.sleep(interval)
    in_broker = BROKER.llen(DCB_QUEUE)
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    scheduler.sync()  # writing last_run_at back, which the beat does every 3 minutes
    write_back = time.perf_counter() - start
    scheduler._finalize.cancel()
    sql("TRUNCATE django_celery_beat_periodictask, django_celery_beat_crontabschedule CASCADE")
    return {
        "n": n,
        "sent": in_broker,
        "first": first,
        "elapsed": elapsed,
        "rate": in_broker / elapsed,
        "write_back": write_back,
    }


def phase_burst() -> dict[str, Any]:
    reset()
    results: dict[str, Any] = {"ours": [], "dcb": None}
    runs = [(n, "mix", 1) for n in ARGS.burst]
    runs += [(max(ARGS.burst), "mix", k) for k in ARGS.dispatchers if k > 1]
    runs += [(ARGS.burst_distinct, "distinct", 1)] if ARGS.burst_distinct else []
    for n, rules, dispatchers in runs:
        repeats = []
        for index in range(ARGS.repeat):
            profile = ARGS.profile and index == 0 and dispatchers == 1 and rules == "mix" and n == max(ARGS.burst)
            repeats.append(burst_ours(n, rules, dispatchers, profile))
            print(
                f"ours: burst of {n:,} ({rules} rules, {dispatchers} dispatcher(s)) in "
                f"{repeats[-1]['elapsed']:.2f} s, {repeats[-1]['rate']:,.0f} runs/s",
                flush=True,
            )
        results["ours"].append(_median_run(repeats))
    if ARGS.dcb_burst:
        repeats = []
        for _ in range(ARGS.repeat):
            repeats.append(burst_dcb(ARGS.dcb_burst))
            print(f"dcb:  burst of {ARGS.dcb_burst:,} in {repeats[-1]['elapsed']:.2f} s", flush=True)
        results["dcb"] = _median_run(repeats)
    return results


def _median_run(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time, plus the range of the rate over all runs."""
    ordered = sorted(repeats, key=lambda run: run["elapsed"])
    return {**ordered[len(ordered) // 2], "rates": [run["rate"] for run in repeats]}


# --- 4: scheduling lag of a real beat process ---------------------------------------------------


def _arrivals(stop: threading.Event, arrived: dict[str, float]) -> None:
    """When each run's message reaches the broker, by run id: taken off the queue as soon as it is
    there, as an idle worker would (the run's own ``queued_at`` is written before its batch's
    messages are sent)."""
    client = redis.Redis.from_url(ARGS.redis)
    while not stop.is_set():
        first = client.blpop([QUEUE], timeout=0.2)
        if first is None:
            continue
        now = time.time()
        for raw in [first[1], *(client.lpop(QUEUE, 1000) or [])]:
            args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
            arrived[args[0]] = now


def lag(variant: str, seconds: int, rate: int, workdir: Path) -> dict[str, Any]:
    sql("TRUNCATE runs_runattempt, runs_run, schedules_schedule, schedules_beatlease, outbox_event CASCADE")
    BROKER.delete(QUEUE)
    arrived: dict[str, float] = {}
    stop = threading.Event()
    consumer = threading.Thread(target=_arrivals, args=(stop, arrived), daemon=True)
    consumer.start()
    log = (workdir / f"beat-{variant}.log").open("wb")
    env = {**os.environ, "DATA_DIR": str(workdir)}
    beat = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "celery"), "-A", "scheduler_project", "beat", "--loglevel", "WARNING",
         "--schedule", str(workdir / f"beat-{variant}.db")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sql("SELECT 1 FROM schedules_beatlease WHERE holder <> '' AND expires_at > now()"):
            if beat.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the beat did not start: {(workdir / f'beat-{variant}.log').read_text()[-2000:]}")
            time.sleep(0.05)
        t0 = (timezone.now() + timedelta(seconds=3)).replace(microsecond=0)
        if variant == "one-shot":
            # seconds * rate one-shots, one every 1/rate s: a steady stream, one slot per wake-up
            sql(
                SCHEDULE_INSERT.format(
                    zone="'UTC'",
                    trigger="jsonb_build_object('version', 1, 'type', 'ONE_SHOT', 'run_at', "
                    "to_char((%(t0)s::timestamptz + n * %(step)s * interval '1 second') AT TIME ZONE 'UTC', "
                    """'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))""",
                    next_fire_at="%(t0)s::timestamptz + n * %(step)s * interval '1 second'",
                ),
                {"tenant": TENANT, "jobs": JOBS, "first": 0, "last": seconds * rate - 1, "t0": t0, "step": 1 / rate},
            )
        else:
            # rate per-second crons: every second, rate slots at once
            sql(
                SCHEDULE_INSERT.format(
                    zone="'UTC'",
                    trigger="""'{"version": 1, "type": "CRON", "expression": "* * * * * *"}'""",
                    next_fire_at="%(t0)s",
                ),
                {"tenant": TENANT, "jobs": JOBS, "first": 0, "last": rate - 1, "t0": t0},
            )
        sql("ANALYZE schedules_schedule")
        sql(f"NOTIFY {NOTIFY_CHANNEL}")  # what the services send on a change
        end = t0 + timedelta(seconds=seconds)
        _sleep_until(end + timedelta(seconds=1.5))
        status = Path(f"/proc/{beat.pid}/status").read_text()
        rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024
    finally:
        beat.send_signal(signal.SIGTERM)
        try:
            beat.wait(timeout=15)
        except subprocess.TimeoutExpired:
            beat.kill()
            beat.wait()
        log.close()
        stop.set()
        consumer.join()
    rows = sql(
        "SELECT id::text, scheduled_for FROM runs_run WHERE scheduled_for >= %s AND scheduled_for < %s",
        [t0, end],
    )
    slots = sql(
        "SELECT count(*), count(DISTINCT (schedule_id, scheduled_for)) FROM runs_run "
        "WHERE scheduled_for >= %s AND scheduled_for < %s",
        [t0, end],
    )[0]
    lags = sorted((arrived[pk] - slot.timestamp()) * 1000 for pk, slot in rows if pk in arrived)
    return {
        "variant": variant,
        "expected": seconds * rate,
        "runs": slots[0],
        "distinct_slots": slots[1],
        "queued": len(lags),
        "p50": statistics.median(lags),
        "p95": lags[max(0, math.ceil(len(lags) * 0.95) - 1)],
        "p99": lags[max(0, math.ceil(len(lags) * 0.99) - 1)],
        "max": lags[-1],
        "beat_rss": rss,
    }


def phase_lag() -> list[dict[str, Any]]:
    reset()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-beat-") as workdir:
        for variant in ARGS.lag_variants.split(","):
            figures = lag(variant, ARGS.lag_seconds, ARGS.lag_rate, Path(workdir))
            results.append(figures)
            print(f"lag {variant}: p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms", flush=True)
    return results


# --- report ---------------------------------------------------------------------------------------


def _range(values: list[float]) -> str:
    return f"[{min(values):,.0f}-{max(values):,.0f}]"


def _ms(figure: dict[str, Any]) -> str:
    return f"{figure['median']:7.2f} [{figure['p95']:6.2f}]"


def report(idle: dict[str, Any] | None, burst: dict[str, Any] | None, lags: list[dict[str, Any]] | None) -> None:
    if idle:
        ours, dcb = idle["ours"], idle["dcb"]
        print("\n1. idle tick, nothing due: median [p95] ms, interleaved in one process")
        print("   ours = lease renewal + beat_probe + the dispatch and sleep decisions (the beat's methods);")
        print("   ours tick() = the whole Scheduler.tick() of the leader minus its sleep (connection check, lease,")
        print("   probe, django-celery-beat's tick for housekeeping, dispatch, recovery); standby = a standby's;")
        print("   DCB = DatabaseScheduler.tick()")
        print(
            f"{'N':>10} {'ours':>17} {'ours tick()':>17} {'standby tick()':>17} {'DCB (loaded)':>27} "
            f"{'DCB/ours tick()':>16}"
        )
        for n in sorted(set(ours) | set(dcb)):
            a, b = ours.get(n), dcb.get(n)
            left = f"{_ms(a['core'])} {_ms(a['full'])} {_ms(a['standby'])}" if a else f"{'-':>17} {'-':>17} {'-':>17}"
            right = f"{_ms(b['tick'])} ({b['loaded']:>6,})" if b else f"{'-':>27}"
            ratio = f"{b['tick']['median'] / a['full']['median']:15.1f}x" if a and b else f"{'-':>16}"
            print(f"{n:>10,} {left} {right} {ratio}")
        services_figure = idle["ours_services_1m"]
        print(f"   beat_lease_acquire + beat_probe called directly at {max(ours):,}: {_ms(services_figure)} ms")
        print(f"\n2. start-up (construction + first tick) and memory (MiB), median of {ARGS.repeat} fresh processes")
        print(f"{'N':>10} {'ours start-up':>14} {'RSS':>7} {'peak':>7} {'DCB start-up':>13} {'RSS':>7} {'peak':>7}")
        for n in sorted(set(ours) | set(dcb)):
            a = ours[n]["process"] if n in ours else None
            b = dcb[n]["process"] if n in dcb else None
            left = f"{a['startup'] * 1000:11.1f} ms {a['rss']:7.1f} {a['peak']:7.1f}" if a else f"{'-':>14} {'':15}"
            right = f"{b['startup']:11.2f} s {b['rss']:7.1f} {b['peak']:7.1f}" if b else f"{'-':>13}"
            print(f"{n:>10,} {left} {right}")
        bases = [f["process"]["base"] for f in ours.values()]
        print(f"   process base once Django and Celery are imported: {statistics.median(bases):.1f} MiB")
    if burst:
        print("\n3. burst: N schedules due at one instant; seconds from that instant until every run row")
        print("   exists and every message is in the Redis queue (LLEN); ours in batches of the beat's size;")
        print(f"   the median of {ARGS.repeat} runs, and the range of the rate")
        header = ("scheduler", "rules", "procs", "N due", "first message", "all done", "runs/s", "[min-max]")
        print("{:<19} {:<9} {:>5} {:>7} {:>14} {:>10} {:>8} {}".format(*header))
        for f in burst["ours"]:
            print(
                f"{'ours':<19} {f['rules']:<9} {f['dispatchers']:>5} {f['n']:>7,} {f['first']:>12.3f} s "
                f"{f['elapsed']:>8.2f} s {f['rate']:>8,.0f} {_range(f['rates'])}"
            )
        d = burst["dcb"]
        if d:
            done = "" if d["sent"] >= d["n"] else f" ({d['sent']:,} sent at the cap)"
            print(
                f"{'DatabaseScheduler':<19} {'crontab':<9} {1:>5} {d['n']:>7,} {d['first']:>12.3f} s "
                f"{d['elapsed']:>8.2f} s {d['rate']:>8,.0f} {_range(d['rates'])}{done}"
            )
            print(f"   then DatabaseScheduler's write-back of last_run_at (sync): {d['write_back']:.2f} s")
            same = next((f for f in burst["ours"] if f["n"] == d["n"] and f["dispatchers"] == 1), None)
            if same:
                print(
                    f"   at {d['n']:,} due, one process each: ours is {same['rate'] / d['rate']:.0f}x DatabaseScheduler"
                )
    if lags:
        print(
            f"\n4. scheduling lag of a real `celery beat` process, message on the broker - slot ({ARGS.lag_rate}/s), ms"
        )
        print(f"{'slots':<42} {'runs':>6} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'beat RSS':>9}")
        for f in lags:
            label = {
                "one-shot": f"one-shots, one every {1000 / ARGS.lag_rate:g} ms, {ARGS.lag_seconds} s",
                "per-second-cron": f"{ARGS.lag_rate} per-second crons, {ARGS.lag_seconds} s",
            }.get(f["variant"], f["variant"])
            count = f"{f['queued']:,}/{f['expected']:,}"
            print(
                f"{label:<42} {count:>6} {f['p50']:7.1f} {f['p95']:7.1f} {f['p99']:7.1f} {f['max']:7.1f} "
                f"{f['beat_rss']:6.1f} MiB"
            )
            if not f["runs"] == f["distinct_slots"] == f["expected"]:
                print(
                    f"   !! {f['variant']}: {f['runs']} runs for {f['distinct_slots']} slots, {f['expected']} expected"
                )


def main() -> None:
    # DatabaseScheduler logs each entry it sends at INFO; its burst is timed without that.
    logging.getLogger("celery.beat").setLevel(logging.WARNING)
    if ARGS.child:
        run_child(ARGS.child)
        return
    call_command("migrate", verbosity=0)
    BROKER.flushdb()
    phases = set(ARGS.phases.split(","))
    idle = phase_idle() if "idle" in phases else None
    burst = phase_burst() if "burst" in phases else None
    lags = phase_lag() if "lag" in phases else None
    report(idle, burst, lags)
    BROKER.flushdb()


if __name__ == "__main__":
    main()
