"""A calendar's edit refreshing the schedules that use it, against the refresh it replaced.

For each size N: N schedules on one calendar (the eight cron rules of bench/beat.py's burst mix,
in Europe/Berlin), then ``calendar_update`` adding a holiday, which recomputes every schedule's
``next_fire_at`` inside the request (``schedules.services.schedule_refresh_next_fire``: one engine
trigger per rule, one ``UPDATE … FROM unnest``). The baseline, timed in the same process on the
same rows: the refresh as it was before, a trigger built and asked per schedule and the rows
written by Django's ``bulk_update``, whose ``CASE WHEN`` has a branch per row and is evaluated for
each row, so it runs only up to ``--baseline-max`` schedules.

    .venv/bin/python bench/calendar_edit.py      # --sizes 500,2000,20000 --repeat 3 --baseline-max 2000

It creates the database named by --postgres if missing (the name must contain "bench") and
empties its schedules, jobs and calendars.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import configure, sql


def _sizes(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if part]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgres://postgres:postgres@127.0.0.1:5432/scheduler_bench_calendar")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--sizes", type=_sizes, default=_sizes("500,2000,20000"))
    parser.add_argument("--repeat", type=int, default=3, help="edits per size (median)")
    parser.add_argument("--baseline-max", type=int, default=2000, help="largest size the old refresh is run at")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()
configure(ARGS, name="calendar-edit")

import django

django.setup()

from django.core.management import call_command
from django.utils import timezone

from calendars.models import Calendar
from calendars.services import calendar_update
from schedules import services
from schedules.models import Job, Schedule

RULES = ["0 9 * * *", "30 8 * * 1-5", "0 */2 * * *", "15 10 1 * *", "0 18 * * 5", "45 7 * * *", "0 12 * * *"]
RULES.append("5 6 * * 1")


def seed(n: int) -> Calendar:
    sql("TRUNCATE runs_runattempt, runs_run, schedules_schedule, schedules_job, calendars_calendar CASCADE")
    calendar = Calendar.objects.create(tenant_id="bench", name="Bavaria", country="DE", subdivision="BY")
    job = Job.objects.create(
        tenant_id="bench", key="bench", target={"type": "HTTP", "method": "POST", "url": "http://127.0.0.1:9/"}
    )
    now = timezone.now()
    Schedule.objects.bulk_create(
        [
            Schedule(
                tenant_id="bench",
                name=f"bench {i}",
                job=job,
                calendar=calendar,
                calendar_policy="SKIP",
                trigger={"version": 1, "type": "CRON", "expression": RULES[i % len(RULES)]},
                timezone="Europe/Berlin",
                next_fire_at=now,
            )
            for i in range(n)
        ],
        batch_size=5000,
    )
    sql("ANALYZE schedules_schedule")
    return calendar


def edit(calendar: Calendar, day: int) -> float:
    """The edit, through the service the API calls: a holiday added ``day`` days ahead."""
    holiday = (timezone.now() + timedelta(days=day)).date()
    start = time.perf_counter()
    calendar_update(calendar=calendar, data={"holidays": [(holiday, "bench")]})
    return time.perf_counter() - start


def old_refresh(calendar: Calendar) -> float:
    """The refresh before: each schedule's trigger built and asked, the rows by ``bulk_update``."""
    schedules = list(calendar.schedules.select_related("calendar").prefetch_related("calendar__dates"))
    start = time.perf_counter()
    now = timezone.now()
    for schedule in schedules:
        schedule.next_fire_at = services._next_fire(schedule, now=now)
        schedule.updated_at = now
    Schedule.objects.bulk_update(schedules, ["next_fire_at", "updated_at"])
    return time.perf_counter() - start


def main() -> None:
    call_command("migrate", verbosity=0)
    print(f"calendar edit refreshing N schedules (8 cron rules, Europe/Berlin), median of {ARGS.repeat}, seconds")
    print(f"{'N':>8} {'edit (ours)':>12} {'old refresh':>12} {'old / ours':>11}")
    for n in ARGS.sizes:
        calendar = seed(n)
        ours = statistics.median(edit(calendar, day) for day in range(1, ARGS.repeat + 1))
        if n <= ARGS.baseline_max:
            old = statistics.median(old_refresh(calendar) for _ in range(ARGS.repeat))
            print(f"{n:>8,} {ours:>12.3f} {old:>12.3f} {old / ours:>10.1f}x", flush=True)
        else:
            print(f"{n:>8,} {ours:>12.3f} {'-':>12} {'-':>11}", flush=True)
    sql("TRUNCATE runs_runattempt, runs_run, schedules_schedule, schedules_job, calendars_calendar CASCADE")


if __name__ == "__main__":
    main()
