"""The runs and workers lists over real rows: order, filters, cursor pagination, attempts, and
what one tenant can see of another's runs and workers (nothing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from rest_framework.test import APIClient

from runs.models import AttemptOutcome, Run, RunKind, RunStatus
from schedules.models import Job, Schedule
from tests.factories import (
    OTHER_TENANT,
    TENANT,
    RunAttemptFactory,
    RunFactory,
    ScheduleFactory,
    WorkerFactory,
)
from workers.models import WorkerStatus

pytestmark = pytest.mark.django_db

T0 = datetime(2027, 3, 1, 2, tzinfo=UTC)
DAY = timedelta(days=1)
# Run ids that sort first and last among runs of the same instant (newest first, id descending).
FIRST_OF_TIE = "ffffffff-ffff-4fff-bfff-ffffffffffff"
LAST_OF_TIE = "00000000-0000-4000-8000-000000000000"


def _ordered(runs: list[Run]) -> list[str]:
    """Newest slot first, the id breaking ties: the order the API promises."""
    return [str(run.pk) for run in sorted(runs, key=lambda r: (r.scheduled_for, r.pk), reverse=True)]


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@dataclass
class Ledger:
    """Runs of the default tenant (by name) and of another tenant, over two jobs and schedules."""

    s1: Schedule
    s2: Schedule
    j1: Job
    j2: Job
    runs: dict[str, Run]
    foreign: list[Run]

    def ids(self, *names: str) -> list[str]:
        return _ordered([self.runs[name] for name in names])


@pytest.fixture
def ledger() -> Ledger:
    s1 = ScheduleFactory(name="nightly")
    s2 = ScheduleFactory(name="hourly")
    runs = {
        "r1": RunFactory(schedule=s1, scheduled_for=T0, status=RunStatus.SUCCEEDED),
        "r2": RunFactory(schedule=s1, scheduled_for=T0 + DAY, status=RunStatus.FAILED),
        "r3": RunFactory(schedule=s1, kind=RunKind.BACKFILL, scheduled_for=T0 - DAY, status=RunStatus.DEAD),
        "r4": RunFactory(schedule=s2, scheduled_for=T0 + 2 * DAY, status=RunStatus.SUCCEEDED),
        # Same instant as r2: the id decides the order between them.
        "r5": RunFactory(schedule=s2, kind=RunKind.MANUAL, scheduled_for=T0 + DAY, status=RunStatus.RUNNING),
        # A run of a deleted schedule: detached, still the job's.
        "r6": RunFactory(schedule=None, job=s1.job, kind=RunKind.MANUAL, scheduled_for=T0 + 3 * DAY),
    }
    foreign_schedule = ScheduleFactory(tenant_id=OTHER_TENANT)
    foreign = [
        RunFactory(tenant_id=OTHER_TENANT, schedule=foreign_schedule, scheduled_for=when, status=status)
        for when, status in [(T0, RunStatus.FAILED), (T0 + DAY, RunStatus.DEAD), (T0 + 5 * DAY, RunStatus.SUCCEEDED)]
    ]
    return Ledger(s1=s1, s2=s2, j1=s1.job, j2=s2.job, runs=runs, foreign=foreign)


def test_runs_list_newest_slot_first(api: APIClient, ledger: Ledger) -> None:
    assert _ids(api.get("/api/v1/runs")) == ledger.ids(*ledger.runs)


def test_runs_list_shows_no_run_of_another_tenant(api: APIClient, other_api: APIClient, ledger: Ledger) -> None:
    foreign_ids = {str(run.pk) for run in ledger.foreign}

    assert foreign_ids.isdisjoint(_ids(api.get("/api/v1/runs")))
    assert set(_ids(other_api.get("/api/v1/runs"))) == foreign_ids
    # Filtering by the other tenant's schedule or job finds nothing, rather than its runs.
    foreign = ledger.foreign[0]
    assert _ids(api.get("/api/v1/runs", {"schedule": str(foreign.schedule_id)})) == []
    assert _ids(api.get("/api/v1/runs", {"job": str(foreign.job_id)})) == []
    assert api.get(f"/api/v1/runs/{foreign.pk}").status_code == 404


FILTERS: list[tuple[str, Callable[[Ledger], dict[str, Any]], list[str]]] = [
    ("status_single", lambda d: {"status": "FAILED"}, ["r2"]),
    ("status_repeated", lambda d: {"status": ["FAILED", "DEAD"]}, ["r2", "r3"]),
    ("status_none_match", lambda d: {"status": "CANCELLED"}, []),
    ("kind_manual", lambda d: {"kind": "MANUAL"}, ["r5", "r6"]),
    ("kind_backfill", lambda d: {"kind": "BACKFILL"}, ["r3"]),
    ("schedule", lambda d: {"schedule": str(d.s1.pk)}, ["r1", "r2", "r3"]),
    ("job", lambda d: {"job": str(d.j1.pk)}, ["r1", "r2", "r3", "r6"]),
    (
        "range_inclusive",
        lambda d: {"scheduled_for_after": T0.isoformat(), "scheduled_for_before": (T0 + DAY).isoformat()},
        ["r1", "r2", "r5"],
    ),
    ("range_open_end", lambda d: {"scheduled_for_after": (T0 + 2 * DAY).isoformat()}, ["r4", "r6"]),
    ("range_open_start", lambda d: {"scheduled_for_before": T0.isoformat()}, ["r1", "r3"]),
    ("range_utc_z", lambda d: {"scheduled_for_after": "2027-03-04T02:00:00Z"}, ["r6"]),
    ("range_other_offset", lambda d: {"scheduled_for_before": "2027-03-01T03:00:00+01:00"}, ["r1", "r3"]),
    ("status_and_job", lambda d: {"status": "SUCCEEDED", "job": str(d.j2.pk)}, ["r4"]),
]


@pytest.mark.parametrize(("query", "expected"), [f[1:] for f in FILTERS], ids=[f[0] for f in FILTERS])
def test_runs_list_filter(
    api: APIClient, ledger: Ledger, query: Callable[[Ledger], dict[str, Any]], expected: list[str]
) -> None:
    assert _ids(api.get("/api/v1/runs", query(ledger))) == ledger.ids(*expected)


# --- cursor pagination ----------------------------------------------------------------------


def _walk(client: APIClient, url: str) -> list[list[str]]:
    """Every page from ``url`` on, following ``next`` links."""
    pages: list[list[str]] = []
    while url:
        response = client.get(url)
        pages.append(_ids(response))
        url = response.json()["next"]
        assert len(pages) < 50, "pagination does not end"
    return pages


@pytest.fixture
def many_runs() -> list[Run]:
    schedule = ScheduleFactory()
    slots = [T0 + timedelta(hours=h) for h in (5, 1, 3, 3, 3, 0, 2)]  # three runs share 03:00
    # Manual runs: several may share an instant, so the ties exercise the id tie-breaker.
    runs = [RunFactory(schedule=schedule, kind=RunKind.MANUAL, scheduled_for=slot) for slot in slots]
    RunFactory(tenant_id=OTHER_TENANT, scheduled_for=T0 + timedelta(hours=4))
    return runs


def test_cursor_pagination_walks_every_run_exactly_once(api: APIClient, many_runs: list[Run]) -> None:
    pages = _walk(api, "/api/v1/runs?page_size=2")
    walked = [run_id for page in pages for run_id in page]

    assert [len(page) for page in pages] == [2, 2, 2, 1]
    assert walked == _ordered(many_runs)
    assert len(set(walked)) == len(walked)


def test_cursor_pagination_is_repeatable(api: APIClient, many_runs: list[Run]) -> None:
    assert _walk(api, "/api/v1/runs?page_size=2") == _walk(api, "/api/v1/runs?page_size=2")


def test_cursor_pagination_stays_stable_when_newer_runs_arrive(api: APIClient, many_runs: list[Run]) -> None:
    """A cursor points into the ordering, not at an offset: rows added at the head while a client
    pages on neither repeat nor push rows out of its walk."""
    first = api.get("/api/v1/runs", {"page_size": 2})
    seen = _ids(first)
    RunFactory(job=many_runs[0].job, schedule=None, kind=RunKind.MANUAL, scheduled_for=T0 + 10 * DAY)
    RunFactory(job=many_runs[0].job, schedule=None, kind=RunKind.MANUAL, scheduled_for=T0 + 11 * DAY)

    rest = _walk(api, first.json()["next"])

    assert seen + [run_id for page in rest for run_id in page] == _ordered(many_runs)


def test_cursor_pagination_stays_stable_when_a_run_arrives_at_the_page_boundary(
    api: APIClient, many_runs: list[Run]
) -> None:
    """A backfill or another schedule may add a run at the very instant a page ended on; the
    tie-breaking id places it, so no row of the walk repeats or goes missing."""
    first = api.get("/api/v1/runs", {"page_size": 2})
    seen = _ids(first)
    boundary = Run.objects.get(pk=seen[-1]).scheduled_for
    assert sum(run.scheduled_for == boundary for run in many_runs) == 3  # the page ends inside a tie
    # Ids at both ends of the tie: one sorts before the rows already seen, one after the rest.
    for run_id in (FIRST_OF_TIE, LAST_OF_TIE):
        RunFactory(id=run_id, job=many_runs[0].job, schedule=None, kind=RunKind.MANUAL, scheduled_for=boundary)

    walked = seen + [run_id for page in _walk(api, first.json()["next"]) for run_id in page]

    assert len(set(walked)) == len(walked)
    # Every original run once; of the newcomers only the one behind the cursor shows up.
    assert walked == [
        run_id for run_id in _ordered(list(Run.objects.filter(tenant_id=TENANT))) if run_id != FIRST_OF_TIE
    ]


def test_cursor_pagination_through_thousands_of_runs_of_one_instant(api: APIClient) -> None:
    """A tenant with many schedules at 02:00 gets that many runs of the same instant."""
    job = ScheduleFactory().job
    Run.objects.bulk_create(
        Run(tenant_id=TENANT, job=job, kind=RunKind.MANUAL, scheduled_for=T0, status=RunStatus.SUCCEEDED)
        for _ in range(1600)
    )
    expected = _ordered(list(Run.objects.filter(tenant_id=TENANT)))

    pages = _walk(api, "/api/v1/runs?page_size=500")

    assert [run_id for page in pages for run_id in page] == expected


def test_cursor_pagination_previous_link_returns_the_page_before(api: APIClient, many_runs: list[Run]) -> None:
    pages = [api.get("/api/v1/runs", {"page_size": 2}).json()]
    while pages[-1]["next"]:
        pages.append(api.get(pages[-1]["next"]).json())

    assert pages[0]["previous"] is None
    for before, page in pairwise(pages):
        back = api.get(page["previous"])
        assert _ids(back) == [row["id"] for row in before["results"]]
        # ... and forward again from there lands on the same page.
        assert _ids(api.get(back.json()["next"])) == [row["id"] for row in page["results"]]


# --- run detail -----------------------------------------------------------------------------


def test_run_detail_lists_attempts_in_order_with_durations(api: APIClient) -> None:
    worker = WorkerFactory(name="worker-7@host")
    run = RunFactory(
        status=RunStatus.RUNNING,
        series=2,
        attempt=2,
        worker=worker,
        started_at=T0,
        finished_at=None,
    )
    # Written out of order: the response orders them by series, then number.
    for series, number, millis, outcome in [
        (2, 1, 1500, AttemptOutcome.RETRYABLE_ERROR),
        (1, 2, 2000, AttemptOutcome.FATAL_ERROR),
        (2, 2, None, AttemptOutcome.RUNNING),
        (1, 1, 250, AttemptOutcome.RETRYABLE_ERROR),
    ]:
        started = T0 + timedelta(minutes=10 * series + number)
        RunAttemptFactory(
            run=run,
            series=series,
            number=number,
            worker=worker,
            worker_name=worker.name,
            started_at=started,
            finished_at=None if millis is None else started + timedelta(milliseconds=millis),
            outcome=outcome,
        )

    response = api.get(f"/api/v1/runs/{run.pk}")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(run.pk)
    assert body["worker_name"] == "worker-7@host"
    assert body["duration_ms"] is None  # still running
    attempts = [(a["series"], a["number"], a["duration_ms"], a["outcome"]) for a in body["attempts"]]
    assert attempts == [
        (1, 1, 250, "RETRYABLE_ERROR"),
        (1, 2, 2000, "FATAL_ERROR"),
        (2, 1, 1500, "RETRYABLE_ERROR"),
        (2, 2, None, "RUNNING"),
    ]
    assert all(a["worker_name"] == "worker-7@host" for a in body["attempts"])


def test_run_detail_duration_of_finished_run(api: APIClient) -> None:
    run = RunFactory(started_at=T0, finished_at=T0 + timedelta(seconds=3, milliseconds=5))

    body = api.get(f"/api/v1/runs/{run.pk}").json()

    assert body["duration_ms"] == 3005
    assert body["attempts"] == []


def test_runs_list_carries_no_attempts(api: APIClient) -> None:
    RunAttemptFactory(run=RunFactory())

    [row] = api.get("/api/v1/runs").json()["results"]

    assert "attempts" not in row


# --- workers --------------------------------------------------------------------------------


@pytest.fixture
def fleet() -> dict[str, Any]:
    return {
        "shared": WorkerFactory(name="shared-1", tenant_id="", concurrency=4, active_runs=3),
        "shared_offline": WorkerFactory(name="shared-2", tenant_id="", status=WorkerStatus.OFFLINE, active_runs=0),
        "own": WorkerFactory(name="acme-1", tenant_id=TENANT, concurrency=8, active_runs=2),
        "own_offline": WorkerFactory(name="acme-2", tenant_id=TENANT, status=WorkerStatus.OFFLINE),
        "foreign": WorkerFactory(name="globex-1", tenant_id=OTHER_TENANT, concurrency=2, active_runs=2),
        "foreign_offline": WorkerFactory(name="globex-2", tenant_id=OTHER_TENANT, status=WorkerStatus.OFFLINE),
    }


def _names(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["name"] for row in response.json()["results"]]


def test_workers_list_shows_shared_and_own_dedicated_workers(api: APIClient, fleet: dict[str, Any]) -> None:
    response = api.get("/api/v1/workers")

    assert _names(response) == ["acme-1", "acme-2", "shared-1", "shared-2"]
    dedicated = {row["name"]: row["dedicated"] for row in response.json()["results"]}
    assert dedicated == {"acme-1": True, "acme-2": True, "shared-1": False, "shared-2": False}
    assert response.json()["count"] == 4


def test_workers_list_of_other_tenant(other_api: APIClient, fleet: dict[str, Any]) -> None:
    assert _names(other_api.get("/api/v1/workers")) == ["globex-1", "globex-2", "shared-1", "shared-2"]


@pytest.mark.parametrize(
    ("worker", "status"),
    [("shared", 200), ("own", 200), ("foreign", 404)],
    ids=["shared", "own_dedicated", "other_tenants_dedicated"],
)
def test_worker_detail_visibility(api: APIClient, fleet: dict[str, Any], worker: str, status: int) -> None:
    assert api.get(f"/api/v1/workers/{fleet[worker].pk}").status_code == status


@pytest.mark.parametrize(
    ("concurrency", "active_runs", "utilisation"),
    [(4, 3, 0.75), (8, 0, 0.0), (2, 2, 1.0), (1, 3, 3.0)],
    ids=["three_of_four", "idle", "full", "over_committed"],
)
def test_worker_utilisation(api: APIClient, concurrency: int, active_runs: int, utilisation: float) -> None:
    WorkerFactory(name="w", concurrency=concurrency, active_runs=active_runs)

    [row] = api.get("/api/v1/workers").json()["results"]

    assert row["utilisation"] == pytest.approx(utilisation)
    assert row["active_runs"] == active_runs
    assert row["concurrency"] == concurrency


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "OFFLINE"}, ["acme-2", "shared-2"]),
        ({"status": "ONLINE"}, ["acme-1", "shared-1"]),
        ({"status": ["ONLINE", "OFFLINE"]}, ["acme-1", "acme-2", "shared-1", "shared-2"]),
        ({"status": "DRAINING"}, []),
    ],
    ids=["offline", "online", "online_or_offline", "draining_none"],
)
def test_workers_status_filter(
    api: APIClient, fleet: dict[str, Any], query: dict[str, Any], expected: list[str]
) -> None:
    assert _names(api.get("/api/v1/workers", query)) == expected
