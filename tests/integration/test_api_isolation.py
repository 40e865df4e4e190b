"""Every endpoint, walked the same way: no token 401, bad token 401, wrong scope 403,
another tenant's id 404 (and no trace of its data), own tenant 2xx.

The suite derives nothing from the views: it lists the endpoints itself, and a last test
checks that list against the router, so a new endpoint cannot slip in unexamined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from calendars.models import Calendar
from runs.models import Run, RunStatus
from scheduler_project.api import scopes
from scheduler_project.api.router import router
from schedules.models import Job, Schedule
from subscriptions.models import EventSubscription
from tests.conftest import make_token
from tests.factories import (
    OTHER_TENANT,
    TENANT,
    CalendarFactory,
    EventSubscriptionFactory,
    JobFactory,
    RunFactory,
    ScheduleFactory,
    WorkerFactory,
)
from workers.models import Worker, WorkerStatus

pytestmark = pytest.mark.django_db
_unique = count()


@dataclass(frozen=True)
class Endpoint:
    id: str
    method: str
    path: str  # "{id}" stands for the object made by `make`
    scope: str
    ok: int
    make: Callable[[str], Any] | None = None  # builds the addressed object for a tenant
    body: Callable[[str], dict[str, Any]] | None = None  # request body for a tenant
    still_there: Callable[[Any], bool] | None = field(default=None)  # after a refused write

    @property
    def detail(self) -> bool:
        return "{id}" in self.path


def _job_body(tenant: str) -> dict[str, Any]:
    return {
        "key": f"isolation.job_{next(_unique)}",
        "name": "Isolation job",
        "target": {"type": "EVENT", "subject": "isolation.job"},
    }


def _schedule_body(tenant: str) -> dict[str, Any]:
    return {
        "name": "Isolation schedule",
        "job": str(JobFactory(tenant_id=tenant).pk),
        "trigger": {"type": "CRON", "expression": "0 2 * * *"},
    }


def _calendar_body(tenant: str) -> dict[str, Any]:
    return {"name": f"Calendar {next(_unique)}", "country": "DE", "subdivision": "BY", "holidays": ["2027-12-24"]}


def _job_unchanged(job: Job) -> bool:
    job.refresh_from_db()
    return job.name != "renamed"


def _schedule_unchanged(schedule: Schedule) -> bool:
    return Schedule.objects.filter(pk=schedule.pk, name=schedule.name, enabled=schedule.enabled).exists()


def _calendar_unchanged(calendar: Calendar) -> bool:
    return Calendar.objects.filter(pk=calendar.pk, name=calendar.name).exists()


def _run_status_unchanged(run: Run) -> bool:
    return Run.objects.filter(pk=run.pk, status=run.status, series=run.series).exists()


def _dedicated_worker(tenant: str) -> Any:
    return WorkerFactory(tenant_id=tenant)


def _worker_unchanged(worker: Worker) -> bool:
    return Worker.objects.filter(
        pk=worker.pk, status=worker.status, drained_at=worker.drained_at, last_heartbeat_at=worker.last_heartbeat_at
    ).exists()


def _register_body(tenant: str) -> dict[str, Any]:
    return {"name": f"external-{next(_unique)}", "hostname": "ext.internal", "queues": ["default"], "concurrency": 2}


def _subscription_body(tenant: str) -> dict[str, Any]:
    return {"schedule": str(ScheduleFactory(tenant_id=tenant).pk), "subject": "erp.invoice.*"}


def _subscription_unchanged(subscription: EventSubscription) -> bool:
    return EventSubscription.objects.filter(
        pk=subscription.pk, subject=subscription.subject, enabled=subscription.enabled
    ).exists()


ENDPOINTS = [
    Endpoint("jobs-list", "get", "/api/v1/jobs", scopes.READ, 200),
    Endpoint("jobs-create", "post", "/api/v1/jobs", scopes.ADMIN, 201, body=_job_body),
    Endpoint("jobs-retrieve", "get", "/api/v1/jobs/{id}", scopes.READ, 200, make=lambda t: JobFactory(tenant_id=t)),
    Endpoint(
        "jobs-partial_update",
        "patch",
        "/api/v1/jobs/{id}",
        scopes.ADMIN,
        200,
        make=lambda t: JobFactory(tenant_id=t),
        body=lambda t: {"name": "renamed"},
        still_there=_job_unchanged,
    ),
    Endpoint("schedules-list", "get", "/api/v1/schedules", scopes.READ, 200),
    Endpoint("schedules-create", "post", "/api/v1/schedules", scopes.ADMIN, 201, body=_schedule_body),
    Endpoint(
        "schedules-retrieve",
        "get",
        "/api/v1/schedules/{id}",
        scopes.READ,
        200,
        make=lambda t: ScheduleFactory(tenant_id=t),
    ),
    Endpoint(
        "schedules-partial_update",
        "patch",
        "/api/v1/schedules/{id}",
        scopes.ADMIN,
        200,
        make=lambda t: ScheduleFactory(tenant_id=t),
        body=lambda t: {"name": "renamed"},
        still_there=_schedule_unchanged,
    ),
    Endpoint(
        "schedules-destroy",
        "delete",
        "/api/v1/schedules/{id}",
        scopes.ADMIN,
        204,
        make=lambda t: ScheduleFactory(tenant_id=t),
        still_there=_schedule_unchanged,
    ),
    Endpoint(
        "schedules-enable",
        "post",
        "/api/v1/schedules/{id}/enable",
        scopes.OPERATE,
        200,
        make=lambda t: ScheduleFactory(tenant_id=t, enabled=False),
        still_there=_schedule_unchanged,
    ),
    Endpoint(
        "schedules-disable",
        "post",
        "/api/v1/schedules/{id}/disable",
        scopes.OPERATE,
        200,
        make=lambda t: ScheduleFactory(tenant_id=t),
        still_there=_schedule_unchanged,
    ),
    Endpoint(
        "schedules-preview",
        "get",
        "/api/v1/schedules/{id}/preview",
        scopes.READ,
        200,
        make=lambda t: ScheduleFactory(tenant_id=t),
    ),
    Endpoint(
        "schedules-explain",
        "get",
        "/api/v1/schedules/{id}/explain",
        scopes.READ,
        200,
        make=lambda t: ScheduleFactory(tenant_id=t),
    ),
    Endpoint(
        "schedules-trigger",
        "post",
        "/api/v1/schedules/{id}/trigger",
        scopes.OPERATE,
        202,
        make=lambda t: ScheduleFactory(tenant_id=t),
    ),
    Endpoint(
        "schedules-backfill",
        "post",
        "/api/v1/schedules/{id}/backfill",
        scopes.OPERATE,
        202,
        make=lambda t: ScheduleFactory(tenant_id=t),
        body=lambda t: {"start": "2026-05-01T00:00:00Z", "end": "2026-05-01T03:00:00Z"},
    ),
    Endpoint(
        "triggers-preview",
        "post",
        "/api/v1/triggers/preview",
        scopes.READ,
        200,
        body=lambda t: {"trigger": {"type": "CRON", "expression": "0 2 * * *"}, "count": 3},
    ),
    Endpoint("runs-list", "get", "/api/v1/runs", scopes.READ, 200),
    Endpoint("runs-retrieve", "get", "/api/v1/runs/{id}", scopes.READ, 200, make=lambda t: RunFactory(tenant_id=t)),
    Endpoint(
        "runs-cancel",
        "post",
        "/api/v1/runs/{id}/cancel",
        scopes.OPERATE,
        200,
        make=lambda t: RunFactory(tenant_id=t, status=RunStatus.QUEUED),
        still_there=_run_status_unchanged,
    ),
    Endpoint(
        "runs-retry",
        "post",
        "/api/v1/runs/{id}/retry",
        scopes.OPERATE,
        202,
        make=lambda t: RunFactory(tenant_id=t, status=RunStatus.DEAD),
        still_there=_run_status_unchanged,
    ),
    Endpoint("runs-replay", "post", "/api/v1/runs/replay", scopes.OPERATE, 202, body=lambda t: {"status": ["DEAD"]}),
    Endpoint("calendars-list", "get", "/api/v1/calendars", scopes.READ, 200),
    Endpoint("calendars-create", "post", "/api/v1/calendars", scopes.ADMIN, 201, body=_calendar_body),
    Endpoint(
        "calendars-retrieve",
        "get",
        "/api/v1/calendars/{id}",
        scopes.READ,
        200,
        make=lambda t: CalendarFactory(tenant_id=t),
    ),
    Endpoint(
        "calendars-partial_update",
        "patch",
        "/api/v1/calendars/{id}",
        scopes.ADMIN,
        200,
        make=lambda t: CalendarFactory(tenant_id=t),
        body=lambda t: {"name": f"renamed {next(_unique)}"},
        still_there=_calendar_unchanged,
    ),
    Endpoint(
        "calendars-destroy",
        "delete",
        "/api/v1/calendars/{id}",
        scopes.ADMIN,
        204,
        make=lambda t: CalendarFactory(tenant_id=t),
        still_there=_calendar_unchanged,
    ),
    Endpoint(
        "calendars-holidays",
        "get",
        "/api/v1/calendars/{id}/holidays",
        scopes.READ,
        200,
        make=lambda t: CalendarFactory(tenant_id=t),
        body=lambda t: {"from": "2027-12-01", "to": "2027-12-31"},  # a GET's body is its query
    ),
    Endpoint("workers-list", "get", "/api/v1/workers", scopes.READ, 200),
    Endpoint("workers-retrieve", "get", "/api/v1/workers/{id}", scopes.READ, 200, make=_dedicated_worker),
    Endpoint("workers-register", "post", "/api/v1/workers/register", scopes.WORKER, 201, body=_register_body),
    Endpoint(
        "workers-heartbeat",
        "post",
        "/api/v1/workers/{id}/heartbeat",
        scopes.WORKER,
        200,
        make=_dedicated_worker,
        body=lambda t: {"active_runs": 1},
        still_there=_worker_unchanged,
    ),
    Endpoint(
        "workers-drain",
        "post",
        "/api/v1/workers/{id}/drain",
        scopes.OPERATE,
        200,
        make=_dedicated_worker,
        still_there=_worker_unchanged,
    ),
    Endpoint(
        "workers-undrain",
        "post",
        "/api/v1/workers/{id}/undrain",
        scopes.OPERATE,
        200,
        make=lambda t: WorkerFactory(tenant_id=t, status=WorkerStatus.DRAINING, drained_at=timezone.now()),
        still_there=_worker_unchanged,
    ),
    Endpoint("subscriptions-list", "get", "/api/v1/subscriptions", scopes.READ, 200),
    Endpoint("subscriptions-create", "post", "/api/v1/subscriptions", scopes.ADMIN, 201, body=_subscription_body),
    Endpoint(
        "subscriptions-retrieve",
        "get",
        "/api/v1/subscriptions/{id}",
        scopes.READ,
        200,
        make=lambda t: EventSubscriptionFactory(tenant_id=t),
    ),
    Endpoint(
        "subscriptions-partial_update",
        "patch",
        "/api/v1/subscriptions/{id}",
        scopes.ADMIN,
        200,
        make=lambda t: EventSubscriptionFactory(tenant_id=t),
        body=lambda t: {"subject": "erp.renamed.>", "enabled": False},
        still_there=_subscription_unchanged,
    ),
    Endpoint(
        "subscriptions-destroy",
        "delete",
        "/api/v1/subscriptions/{id}",
        scopes.ADMIN,
        204,
        make=lambda t: EventSubscriptionFactory(tenant_id=t),
        still_there=_subscription_unchanged,
    ),
]
DETAIL_ENDPOINTS = [e for e in ENDPOINTS if e.detail]
by_id = pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.id for e in ENDPOINTS])

# Scopes that do NOT satisfy each requirement (each is tried alone and all together).
INSUFFICIENT = {
    scopes.READ: (scopes.WORKER,),
    scopes.OPERATE: (scopes.READ, scopes.WORKER),
    scopes.ADMIN: (scopes.READ, scopes.OPERATE, scopes.WORKER),
    scopes.WORKER: (scopes.READ, scopes.OPERATE),
}


def _call(client: APIClient, endpoint: Endpoint, tenant: str = TENANT, obj: Any = None) -> Any:
    path = endpoint.path.replace("{id}", str(obj.pk)) if obj is not None else endpoint.path
    body = endpoint.body(tenant) if endpoint.body else None
    return getattr(client, endpoint.method)(path, data=body, format="json")


def _prepare(endpoint: Endpoint, tenant: str = TENANT) -> Any:
    return endpoint.make(tenant) if endpoint.make else None


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims = {
        "sub": "test",
        "tenant_id": TENANT,
        "scope": scopes.ADMIN,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "expired": lambda: make_token(hours=-1),
    "wrong_signature": lambda: jwt.encode(_claims(), "another-key-" * 4, algorithm="HS256"),
    "garbage": lambda: "not.a.token",
    "no_tenant_claim": lambda: jwt.encode(_claims(tenant_id=None), settings.SECRET_KEY, algorithm="HS256"),
    "no_exp_claim": lambda: jwt.encode(_claims(exp=None), settings.SECRET_KEY, algorithm="HS256"),
    "alg_none": lambda: jwt.encode(_claims(), None, algorithm="none"),
}


@by_id
def test_no_token_is_401(endpoint: Endpoint) -> None:
    obj = _prepare(endpoint)
    response = _call(APIClient(), endpoint, obj=obj)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")


@by_id
@pytest.mark.parametrize("variant", list(BAD_TOKENS), ids=list(BAD_TOKENS))
def test_bad_token_is_401(endpoint: Endpoint, variant: str) -> None:
    obj = _prepare(endpoint)
    response = _call(_bearer(BAD_TOKENS[variant]()), endpoint, obj=obj)
    assert response.status_code == 401, response.content
    if endpoint.still_there:
        assert endpoint.still_there(obj)


def test_other_auth_scheme_is_401() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {make_token()}")
    assert client.get("/api/v1/jobs").status_code == 401


@by_id
def test_insufficient_scope_is_403(endpoint: Endpoint, client_for: Callable[..., APIClient]) -> None:
    insufficient = INSUFFICIENT[endpoint.scope]
    for granted in [*[(s,) for s in insufficient], insufficient]:
        obj = _prepare(endpoint)
        response = _call(client_for(TENANT, granted), endpoint, obj=obj)
        assert response.status_code == 403, (granted, response.content)
        assert endpoint.scope in response.json()["detail"]
        if endpoint.still_there:
            assert endpoint.still_there(obj)


@pytest.mark.parametrize("endpoint", DETAIL_ENDPOINTS, ids=[e.id for e in DETAIL_ENDPOINTS])
def test_other_tenants_object_is_404_without_its_data(endpoint: Endpoint, client_for: Callable[..., APIClient]) -> None:
    foreign = _prepare(endpoint, OTHER_TENANT)
    response = _call(client_for(TENANT, scopes.ADMIN), endpoint, obj=foreign)
    assert response.status_code == 404, response.content
    assert str(foreign.pk) not in response.content.decode()
    assert getattr(foreign, "name", "\0") not in response.content.decode()
    if endpoint.still_there:
        assert endpoint.still_there(foreign)


@by_id
def test_own_tenant_succeeds_with_the_least_scope(endpoint: Endpoint, client_for: Callable[..., APIClient]) -> None:
    obj = _prepare(endpoint)
    response = _call(client_for(TENANT, endpoint.scope), endpoint, obj=obj)
    assert response.status_code == endpoint.ok, response.content
    if endpoint.ok != 204:
        assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.id.endswith("-list")], ids=lambda e: e.id)
def test_lists_show_only_own_tenant(endpoint: Endpoint, api: APIClient) -> None:
    mine = RunFactory(tenant_id=TENANT, status=RunStatus.FAILED)
    theirs = RunFactory(tenant_id=OTHER_TENANT, status=RunStatus.FAILED)
    CalendarFactory(tenant_id=TENANT)
    foreign_calendar = CalendarFactory(tenant_id=OTHER_TENANT)
    WorkerFactory(tenant_id="")
    foreign_worker = WorkerFactory(tenant_id=OTHER_TENANT)
    EventSubscriptionFactory(tenant_id=TENANT)
    foreign_subscription = EventSubscriptionFactory(tenant_id=OTHER_TENANT)

    response = api.get(endpoint.path)
    assert response.status_code == 200
    results = response.json()["results"]
    assert results, "the tenant's own objects are listed"
    text = json.dumps(results)
    for foreign in (theirs, theirs.schedule, theirs.job, foreign_calendar, foreign_worker, foreign_subscription):
        assert str(foreign.pk) not in text
    if endpoint.id == "runs-list":
        assert [r["id"] for r in results] == [str(mine.pk)]


def test_suite_covers_every_endpoint() -> None:
    """Every route the router serves is walked above, and nothing above is stale."""
    served = {
        f"{basename}s-{action}"
        for _prefix, viewset, basename in router.registry
        for route in router.get_routes(viewset)
        for action in route.mapping.values()
        if hasattr(viewset, action)
    }
    walked = {e.id for e in ENDPOINTS}
    assert served == walked
    for endpoint in ENDPOINTS:
        assert re.fullmatch(r"/api/v1/[a-z]+(/\{id\})?(/[a-z]+)?", endpoint.path)
