"""How the runs list of one tenant scales with the size of the runs table.

Seeds the runs table first with 10,000 rows, times the API's runs list (first page, a later
cursor page, each filter), then grows the same table to --rows (default 1,000,000) and times the
same requests again. Prints medians and the ratio large/small: a flat list stays near 1x.

    POSTGRES_URL=postgres://postgres:postgres@127.0.0.1:5432/scheduler_bench \\
    SECRET_KEY=bench-only-secret-key-0123456789abcdef REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/runs_list.py --rows 1000000

It drops and recreates the runs it made (all in tenants named bench-*), never others.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_project.settings")

import django

django.setup()

from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import setup_test_environment

from scheduler_project.api.authentication import token_issue

TENANT = "bench-big"
OTHER_TENANTS = 49  # the rest of the table belongs to these
SCHEDULES = 100


def seed(total_rows: int) -> dict[str, str]:
    """Make (or grow) the bench tenants' runs to total_rows; return ids used in filters."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs_run WHERE tenant_id LIKE 'bench-%%'")
        have = cursor.fetchone()[0]
        if have == 0:
            cursor.execute("DELETE FROM schedules_schedule WHERE tenant_id LIKE 'bench-%%'")
            cursor.execute("DELETE FROM schedules_job WHERE tenant_id LIKE 'bench-%%'")
            cursor.execute(
                """
                INSERT INTO schedules_job (id, tenant_id, key, name, description, target, payload, max_attempts,
                    backoff_strategy, backoff_base_seconds, backoff_max_seconds, timeout_seconds, queue,
                    required_capabilities, priority, webhook_secret, created_at, updated_at)
                SELECT md5('job' || t)::uuid, CASE WHEN t = 0 THEN %s ELSE 'bench-' || t END, 'bench.job', 'Bench',
                    '', '{"type": "EVENT", "subject": "bench"}', '{}', 3, 'FIXED', 10, 600, 300, 'default', '[]', 5,
                    '', now(), now()
                FROM generate_series(0, %s) t
                """,
                [TENANT, OTHER_TENANTS],
            )
            cursor.execute(
                """
                INSERT INTO schedules_schedule (id, tenant_id, name, description, job_id, trigger, timezone,
                    calendar_policy, payload, enabled, misfire_policy, misfire_grace_seconds, overlap_policy,
                    jitter_seconds, created_at, updated_at)
                SELECT md5('schedule' || t || '.' || s)::uuid, CASE WHEN t = 0 THEN %s ELSE 'bench-' || t END,
                    'Bench ' || s, '', md5('job' || t)::uuid,
                    '{"version": 1, "type": "CRON", "expression": "* * * * *"}', 'UTC', 'SKIP', '{}', true,
                    'RUN_ONCE', 300, 'ALLOW', 0, now(), now()
                FROM generate_series(0, %s) t, generate_series(0, %s) s
                """,
                [TENANT, OTHER_TENANTS, SCHEDULES - 1],
            )
        # Half of all rows belong to the big tenant, the rest spread over the others; one slot a
        # minute per schedule, one run in 20 failed.
        cursor.execute(
            """
            INSERT INTO runs_run (id, tenant_id, job_id, schedule_id, kind, scheduled_for, status, attempt, series,
                payload, error_type, error_message, reason, outcome, created_at, updated_at)
            SELECT gen_random_uuid(), CASE WHEN t = 0 THEN %s ELSE 'bench-' || t END, md5('job' || t)::uuid,
                md5('schedule' || t || '.' || (n %% %s))::uuid, 'SCHEDULED',
                timestamptz '2020-01-01' + (n / %s) * interval '1 minute',
                CASE WHEN n %% 20 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END, 1, 1, '{}', '', '', '', '{}', now(), now()
            FROM generate_series(%s, %s - 1) n,
                 LATERAL (SELECT CASE WHEN n %% 2 = 0 THEN 0 ELSE 1 + (n / 2) %% %s END AS t) tenant
            ON CONFLICT DO NOTHING
            """,
            [TENANT, SCHEDULES, SCHEDULES, have, total_rows, OTHER_TENANTS],
        )
        cursor.execute("ANALYZE runs_run")
        cursor.execute("SELECT count(*) FROM runs_run WHERE tenant_id LIKE 'bench-%%'")
        assert cursor.fetchone()[0] >= total_rows * 0.99
    return {"schedule": str(_uuid(f"schedule0.{SCHEDULES // 2}")), "job": str(_uuid("job0"))}


def _uuid(text: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT md5(%s)::uuid", [text])
        return str(cursor.fetchone()[0])


def measure(client: Client, token: str, ids: dict[str, str], repeat: int) -> dict[str, float]:
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    first = client.get("/api/v1/runs?page_size=50", **auth).json()
    next_link = urlsplit(first["next"])
    later = f"{next_link.path}?{next_link.query}"
    requests = {
        "first page": "/api/v1/runs?page_size=50",
        "next page (cursor)": later,
        "status=FAILED": "/api/v1/runs?status=FAILED&page_size=50",
        "one schedule": f"/api/v1/runs?schedule={ids['schedule']}&page_size=50",
        "one job": f"/api/v1/runs?job={ids['job']}&page_size=50",
        "time range (30 min)": "/api/v1/runs?scheduled_for_after=2020-01-01T00:30:00Z"
        "&scheduled_for_before=2020-01-01T01:00:00Z&page_size=50",
    }
    results = {}
    for name, path in requests.items():
        timings = []
        for _ in range(repeat):
            start = time.perf_counter()
            response = client.get(path, **auth)
            timings.append(time.perf_counter() - start)
            assert response.status_code == 200, response.content
            assert response.json()["results"], name
        results[name] = statistics.median(timings) * 1000
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=25)
    args = parser.parse_args()

    setup_test_environment()  # lets the test client run with DEBUG off and any ALLOWED_HOSTS
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM runs_run WHERE tenant_id LIKE 'bench-%%'")
    token = token_issue(tenant_id=TENANT, scopes=["scheduler:read"], lifetime=timedelta(hours=1))
    client = Client()

    start = time.perf_counter()
    ids = seed(args.baseline_rows)
    print(f"seeded {args.baseline_rows:,} rows in {time.perf_counter() - start:.1f} s")
    small = measure(client, token, ids, args.repeat)
    start = time.perf_counter()
    seed(args.rows)
    print(f"grew the table to {args.rows:,} rows in {time.perf_counter() - start:.1f} s")
    large = measure(client, token, ids, args.repeat)

    print(f"\nGET /api/v1/runs for one tenant, median of {args.repeat} requests through Django's test client")
    print(f"{'request':<22}{args.baseline_rows:>12,} rows{args.rows:>14,} rows{'ratio':>9}")
    for name in small:
        print(f"{name:<22}{small[name]:>14.2f} ms{large[name]:>15.2f} ms{large[name] / small[name]:>8.2f}x")


if __name__ == "__main__":
    main()
