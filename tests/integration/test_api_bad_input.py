"""Bad input on every write endpoint and on the list filters, against real PostgreSQL.

Each malformed input must be a 400 problem document (``application/problem+json``) whose
``errors`` member names the offending field path with a reason; a body over the 1 MiB cap
is a 413. No input may reach a 500, and a refused write leaves nothing behind: no row and
no outbox event after a failed create, an unchanged resource after a failed PATCH.

Cases are shared between create and change where they make sense: a case is a *partial*
body; for POST it is merged into a known-good body (which is itself checked to be
accepted), for PATCH it is sent as it is.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.response import Response
from rest_framework.test import APIClient

from calendars.models import Calendar, CalendarDate
from runs.models import Run, RunAttempt
from scheduler_project.models import OutboxEvent
from schedules.models import Job, Schedule
from subscriptions.models import EventSubscription
from tests.factories import (
    OTHER_TENANT,
    TENANT,
    CalendarDateFactory,
    CalendarFactory,
    EventSubscriptionFactory,
    JobFactory,
    RunFactory,
    ScheduleFactory,
    WorkerFactory,
)
from workers.models import Worker

pytestmark = pytest.mark.django_db

PROBLEM_JSON = "application/problem+json"
KIB = 1024
MIB = 1024 * KIB
DROP = object()  # a case value that removes the field from the known-good body


@dataclass(frozen=True)
class Raw:
    """A request body sent byte for byte, for what ``json.dumps`` would never produce."""

    text: str | bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class Ref:
    """A placeholder for an object made by the test (another tenant's job, say)."""

    name: str


@dataclass(frozen=True)
class Case:
    body: dict[str, Any]
    path: str  # the field path that the ``errors`` member must name
    reason: str = ""  # a fragment the messages for ``path`` must contain (case-insensitive)
    create_only: bool = False  # meaningless for PATCH (a missing required field, say)


def cases(table: dict[str, Case], *, patch: bool = False) -> Any:
    """``parametrize`` arguments for a table of cases, with the case names as ids."""
    selected = {name: case for name, case in table.items() if not (patch and case.create_only)}
    return pytest.mark.parametrize("case", list(selected.values()), ids=list(selected))


# --- helpers ---------------------------------------------------------------------------------


def send(client: APIClient, method: str, url: str, body: Any = None) -> Response:
    if method == "GET":
        return client.get(url)
    if isinstance(body, Raw):
        data, content_type = body.text, body.content_type
    else:
        data, content_type = json.dumps(body), "application/json"
    return getattr(client, method.lower())(url, data=data, content_type=content_type)


def resolve(value: Any, refs: dict[str, Any]) -> Any:
    if isinstance(value, Ref):
        return refs[value.name]
    if isinstance(value, dict):
        return {key: resolve(item, refs) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, refs) for item in value]
    return value


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    body = {**base, **overrides}
    return {key: value for key, value in body.items() if value is not DROP}


def assert_problem(response: Response, status: int, path: str | None = None, reason: str = "") -> dict[str, Any]:
    """The response is a problem document; with ``path``, its errors name that field."""
    assert response.status_code == status, (response.status_code, response.content[:2000])
    assert response["Content-Type"].split(";")[0] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert body["type"]
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if path is not None:
        errors = body.get("errors")
        assert isinstance(errors, dict), body
        assert path in errors, f"expected an error at {path!r}, got {errors}"
        messages = errors[path]
        assert messages, errors
        assert all(isinstance(message, str) and message for message in messages), errors
        if reason:
            assert reason.lower() in " ".join(messages).lower(), (reason, messages)
    return body


def row_counts() -> dict[str, int]:
    models = (Job, Schedule, Calendar, CalendarDate, Run, RunAttempt, Worker, OutboxEvent, EventSubscription)
    return {model.__name__: model.objects.count() for model in models}


@contextmanager
def nothing_written() -> Iterator[None]:
    """No row of any kind, and no outbox event, appears inside the block."""
    before = row_counts()
    yield
    assert row_counts() == before


@contextmanager
def unchanged(client: APIClient, url: str) -> Iterator[None]:
    """The resource at ``url`` reads the same after the block, and nothing else was written."""
    before = client.get(url)
    assert before.status_code == 200
    counts = row_counts()
    yield
    after = client.get(url)
    assert after.status_code == 200
    assert after.json() == before.json()
    assert row_counts() == counts


# --- known-good bodies and the objects the cases refer to ------------------------------------


def job_body() -> dict[str, Any]:
    return {
        "key": "analytics.kpi_rebuild",
        "name": "Nightly KPI rebuild",
        "target": {"type": "HTTP", "method": "POST", "url": "https://analytics.internal/kpi", "headers": {}},
        "payload": {"scope": "all"},
        "max_attempts": 5,
        "backoff": {"strategy": "EXPONENTIAL_JITTER", "base_seconds": 10, "max_seconds": 600},
        "timeout_seconds": 300,
        "concurrency_limit": 1,
        "queue": "default",
    }


def schedule_body(job_id: str) -> dict[str, Any]:
    return {
        "name": "KPI rebuild 02:00",
        "job": job_id,
        "trigger": {"type": "CRON", "expression": "0 2 * * *"},
        "timezone": "Europe/Berlin",
        "calendar": None,
        "calendar_policy": "SKIP",
        "misfire_policy": "RUN_ONCE",
        "overlap_policy": "ALLOW",
        "payload": {},
        "enabled": True,
    }


def calendar_body() -> dict[str, Any]:
    return {
        "name": "Bavaria",
        "country": "DE",
        "subdivision": "BY",
        "weekend": [5, 6],
        "holidays": ["2027-12-24"],
        "working_days": [],
    }


@pytest.fixture
def refs() -> dict[str, Any]:
    """Objects the cases point at: ours, the other tenant's, and ids that exist nowhere."""
    return {
        "job": str(JobFactory().pk),
        "other_job": str(JobFactory(tenant_id=OTHER_TENANT).pk),
        "other_calendar": str(CalendarFactory(tenant_id=OTHER_TENANT).pk),
        "missing": str(uuid.uuid4()),
    }


# --- bodies that are not a JSON object, for every write endpoint ----------------------------

BAD_BODIES: dict[str, tuple[Raw, int, str | None]] = {
    "truncated_json": (Raw('{"name": "x",'), 400, "body"),
    "not_json": (Raw("name=x&key=y"), 400, "body"),
    "trailing_garbage": (Raw('{"name": "x"} {}'), 400, "body"),
    "single_quotes": (Raw("{'name': 'x'}"), 400, "body"),
    "nan_constant": (Raw('{"max_attempts": NaN, "jitter_seconds": NaN, "weekend": NaN}'), 400, "body"),
    "infinity_constant": (Raw('{"name": Infinity}'), 400, "body"),
    "deeply_nested": (Raw("[" * 100_000 + "]" * 100_000), 400, "body"),
    "invalid_utf8": (Raw(b'{"name": "\xff"}'), 400, "body"),
    # An unknown field whose name is a lone surrogate: refused, and the name echoed escaped.
    "lone_surrogate_field_name": (Raw('{"\\ud800": 1}'), 400, "\\ud800"),
    "list": (Raw("[]"), 400, "non_field_errors"),
    "list_of_object": (Raw('[{"name": "x"}]'), 400, "non_field_errors"),
    "string": (Raw('"x"'), 400, "non_field_errors"),
    "number": (Raw("42"), 400, "non_field_errors"),
    "null": (Raw("null"), 400, "non_field_errors"),
    "form_encoded": (Raw("name=x", "application/x-www-form-urlencoded"), 415, None),
    "plain_text": (Raw('{"name": "x"}', "text/plain"), 415, None),
}


def write_endpoints() -> dict[str, tuple[str, str]]:
    """id -> (method, url template); ``{job}``, ``{schedule}``, ``{calendar}`` are filled in."""
    return {
        "post_jobs": ("POST", "/api/v1/jobs"),
        "patch_job": ("PATCH", "/api/v1/jobs/{job}"),
        "post_schedules": ("POST", "/api/v1/schedules"),
        "patch_schedule": ("PATCH", "/api/v1/schedules/{schedule}"),
        "post_calendars": ("POST", "/api/v1/calendars"),
        "patch_calendar": ("PATCH", "/api/v1/calendars/{calendar}"),
        "post_workers_register": ("POST", "/api/v1/workers/register"),
        "post_worker_heartbeat": ("POST", "/api/v1/workers/{worker}/heartbeat"),
        "post_subscriptions": ("POST", "/api/v1/subscriptions"),
        "patch_subscription": ("PATCH", "/api/v1/subscriptions/{subscription}"),
    }


@pytest.fixture
def existing() -> dict[str, str]:
    """One job, schedule, calendar and dedicated worker of our tenant, addressed by the
    PATCH (and heartbeat) endpoints."""
    schedule = ScheduleFactory()
    calendar = CalendarFactory(subdivision="BY")
    CalendarDateFactory(calendar=calendar)
    worker = WorkerFactory(tenant_id=TENANT)
    return {
        "job": str(schedule.job_id),
        "schedule": str(schedule.pk),
        "calendar": str(calendar.pk),
        "worker": str(worker.pk),
        "subscription": str(EventSubscriptionFactory(schedule=schedule).pk),
    }


@pytest.mark.parametrize("endpoint", list(write_endpoints()), ids=list(write_endpoints()))
@pytest.mark.parametrize(("body", "status", "path"), list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_write_refuses_a_body_that_is_not_a_json_object(
    api: APIClient, existing: dict[str, str], endpoint: str, body: Raw, status: int, path: str | None
) -> None:
    method, template = write_endpoints()[endpoint]
    url = template.format(**existing)
    if method == "PATCH":
        with unchanged(api, url):
            assert_problem(send(api, method, url, body), status, path)
    else:
        with nothing_written():
            assert_problem(send(api, method, url, body), status, path)


def _with_raw_payload(body: dict[str, Any], payload: str) -> Raw:
    """``body`` as JSON text with ``payload`` spliced in as it is (no Python value behind it)."""
    return Raw(json.dumps({**body, "payload": "__PAYLOAD__"}).replace('"__PAYLOAD__"', payload))


PAYLOAD_ENDPOINTS = ("post_jobs", "patch_job", "post_schedules", "patch_schedule")


@pytest.mark.parametrize("endpoint", PAYLOAD_ENDPOINTS)
def test_write_refuses_a_number_json_reads_as_infinity(api: APIClient, existing: dict[str, str], endpoint: str) -> None:
    """``1e400`` is valid JSON; Python reads it as ``inf``, which no JSON writer may emit."""
    method, template = write_endpoints()[endpoint]
    url = template.format(**existing)
    body = {"post_jobs": job_body(), "post_schedules": schedule_body(existing["job"])}.get(endpoint, {})
    raw = _with_raw_payload(body, '{"ratio": 1e400}')
    if method == "PATCH":
        with unchanged(api, url):
            assert_problem(send(api, method, url, raw), 400, "payload", "finite")
    else:
        with nothing_written():
            assert_problem(send(api, method, url, raw), 400, "payload", "finite")


def test_payload_nesting_up_to_the_limit_is_accepted(api: APIClient) -> None:
    raw = _with_raw_payload(job_body(), '{"a": ' * 31 + "[1]" + "}" * 31)  # 32 levels with the list
    assert send(api, "POST", "/api/v1/jobs", raw).status_code == 201


@pytest.mark.parametrize("depth", [33, 200, 800, 900, 950, 990, 2000], ids=lambda depth: f"depth_{depth}")
def test_deep_nesting_is_400_at_every_depth(api: APIClient, depth: int) -> None:
    """Somewhere around Python's recursion limit the parser still copes but the encoders on the
    way to the database do not; whichever refuses first, the answer is a 400."""
    raw = _with_raw_payload(job_body(), '{"a": ' * depth + "1" + "}" * depth)
    with nothing_written():
        body = assert_problem(send(api, "POST", "/api/v1/jobs", raw), 400)
    assert set(body["errors"]) & {"payload", "body"}, body


@pytest.mark.parametrize("endpoint", list(write_endpoints()), ids=list(write_endpoints()))
def test_write_refuses_a_body_over_one_mebibyte_with_413(
    api: APIClient, existing: dict[str, str], endpoint: str
) -> None:
    method, template = write_endpoints()[endpoint]
    url = template.format(**existing)
    body = {"payload": {"blob": "x" * (MIB + 1)}, "description": "x" * 10}
    if method == "PATCH":
        with unchanged(api, url):
            assert_problem(send(api, method, url, body), 413)
    else:
        with nothing_written():
            assert_problem(send(api, method, url, body), 413)


# --- jobs ------------------------------------------------------------------------------------

HTTP = {"type": "HTTP", "method": "POST", "url": "https://analytics.internal/kpi"}

JOB_CASES: dict[str, Case] = {
    # required fields
    "missing_key": Case({"key": DROP}, "key", "required", create_only=True),
    "missing_name": Case({"name": DROP}, "name", "required", create_only=True),
    "missing_target": Case({"target": DROP}, "target", "required", create_only=True),
    "null_key": Case({"key": None}, "key", "null"),
    # wrong types
    "max_attempts_text": Case({"max_attempts": "x"}, "max_attempts", "integer"),
    "max_attempts_bool": Case({"max_attempts": True}, "max_attempts", "integer"),
    "max_attempts_fraction": Case({"max_attempts": 1.5}, "max_attempts", "integer"),
    "max_attempts_list": Case({"max_attempts": [3]}, "max_attempts"),
    "timeout_seconds_object": Case({"timeout_seconds": {"value": 3}}, "timeout_seconds"),
    "concurrency_limit_text": Case({"concurrency_limit": "many"}, "concurrency_limit", "integer"),
    "name_object": Case({"name": {"en": "KPI"}}, "name"),
    "name_bool": Case({"name": True}, "name"),
    "key_list": Case({"key": ["a"]}, "key"),
    "payload_list": Case({"payload": [1, 2]}, "payload", "object"),
    "payload_text": Case({"payload": "scope=all"}, "payload", "object"),
    "payload_null": Case({"payload": None}, "payload", "null"),
    "backoff_text": Case({"backoff": "fast"}, "backoff"),
    "backoff_list": Case({"backoff": [10, 600]}, "backoff"),
    "required_capabilities_text": Case({"required_capabilities": "gpu"}, "required_capabilities"),
    "required_capabilities_nested": Case({"required_capabilities": [["gpu"]]}, "required_capabilities.0"),
    "required_capabilities_queue_syntax": Case({"required_capabilities": ["gpu+eu"]}, "required_capabilities.0"),
    "required_capabilities_too_many": Case(
        {"required_capabilities": [f"cap{i}" for i in range(9)]}, "required_capabilities"
    ),
    "webhook_secret_short": Case({"webhook_secret": "short"}, "webhook_secret", "at least 16"),
    "webhook_secret_object": Case({"webhook_secret": {"k": "v"}}, "webhook_secret"),
    # out of range
    "max_attempts_zero": Case({"max_attempts": 0}, "max_attempts", "greater than or equal to 1"),
    "max_attempts_101": Case({"max_attempts": 101}, "max_attempts", "less than or equal to 100"),
    "max_attempts_huge": Case({"max_attempts": 10**30}, "max_attempts"),
    "timeout_seconds_zero": Case({"timeout_seconds": 0}, "timeout_seconds"),
    "timeout_seconds_over_a_day": Case({"timeout_seconds": 86_401}, "timeout_seconds"),
    "priority_10": Case({"priority": 10}, "priority"),
    "priority_negative": Case({"priority": -1}, "priority"),
    "concurrency_limit_zero": Case({"concurrency_limit": 0}, "concurrency_limit"),
    "backoff_base_zero": Case({"backoff": {"base_seconds": 0}}, "backoff.base_seconds"),
    "backoff_max_over_a_week": Case({"backoff": {"max_seconds": 7 * 86_400 + 1}}, "backoff.max_seconds"),
    "backoff_max_below_base": Case(
        {"backoff": {"strategy": "FIXED", "base_seconds": 100, "max_seconds": 10}}, "backoff.max_seconds"
    ),
    "backoff_max_below_default_base": Case({"backoff": {"max_seconds": 5}}, "backoff.max_seconds"),
    # enums and patterns
    "backoff_strategy_linear": Case({"backoff": {"strategy": "LINEAR"}}, "backoff.strategy", "valid choice"),
    "backoff_strategy_lowercase": Case({"backoff": {"strategy": "fixed"}}, "backoff.strategy"),
    "backoff_strategy_null": Case({"backoff": {"strategy": None}}, "backoff.strategy"),
    "key_with_space": Case({"key": "kpi rebuild"}, "key"),
    "key_blank": Case({"key": ""}, "key"),
    "key_too_long": Case({"key": "k" * 201}, "key"),
    "key_nul": Case({"key": "kpi\x00"}, "key"),
    "name_blank": Case({"name": ""}, "name"),
    "description_too_long": Case({"description": "d" * 2001}, "description"),
    "description_null": Case({"description": None}, "description"),
    "name_lone_surrogate": Case({"name": "KPI \ud800"}, "name"),
    "queue_with_slash": Case({"queue": "reports/daily"}, "queue"),
    # unknown and read-only fields
    "unknown_field": Case({"schedule": "0 2 * * *"}, "schedule", "unknown"),
    "unknown_backoff_field": Case({"backoff": {"jitter": True}}, "backoff.jitter", "unknown"),
    "read_only_id": Case({"id": str(uuid.uuid4())}, "id", "read-only"),
    "read_only_created_at": Case({"created_at": "2027-01-01T00:00:00Z"}, "created_at"),
    # payload: an object of bounded size, storable in PostgreSQL
    "payload_over_64_kib": Case({"payload": {"blob": "x" * (64 * KIB)}}, "payload", "65536 bytes"),
    "payload_nul_in_value": Case({"payload": {"note": "a\x00b"}}, "payload"),
    "payload_nul_in_key": Case({"payload": {"a\x00b": 1}}, "payload"),
    "payload_lone_surrogate": Case({"payload": {"note": "\udc80"}}, "payload"),
    "payload_nested_too_deep": Case({"payload": json.loads('{"a": ' * 100 + "1" + "}" * 100)}, "payload", "deep"),
    # target
    "target_text": Case({"target": "https://analytics.internal/kpi"}, "target", "object"),
    "target_list": Case({"target": [HTTP]}, "target"),
    "target_missing_type": Case({"target": {"url": "https://analytics.internal/kpi"}}, "target.type"),
    "target_unknown_type": Case({"target": {"type": "SMTP", "to": "ops@example.test"}}, "target.type"),
    "target_type_lowercase": Case({"target": {**HTTP, "type": "http"}}, "target.type"),
    "target_type_object": Case({"target": {"type": {"name": "HTTP"}}}, "target.type"),
    "target_type_list": Case({"target": {"type": ["HTTP"]}}, "target.type"),
    "http_without_url": Case({"target": {"type": "HTTP", "method": "POST"}}, "target.url", "required"),
    "http_url_not_string": Case({"target": {**HTTP, "url": 42}}, "target.url"),
    "http_url_ftp": Case({"target": {**HTTP, "url": "ftp://files.internal/kpi"}}, "target.url", "http"),
    "http_url_relative": Case({"target": {**HTTP, "url": "/kpi"}}, "target.url"),
    "http_url_malformed_ipv6": Case({"target": {**HTTP, "url": "http://[::1/kpi"}}, "target.url"),
    "http_url_too_long": Case({"target": {**HTTP, "url": "https://a.test/" + "p" * 2000}}, "target.url"),
    "http_method_fetch": Case({"target": {**HTTP, "method": "FETCH"}}, "target.method"),
    "http_headers_list": Case({"target": {**HTTP, "headers": ["X-A: 1"]}}, "target.headers"),
    "http_reserved_header": Case(
        {"target": {**HTTP, "headers": {"Idempotency-Key": "abc"}}}, "target.headers.Idempotency-Key", "cannot"
    ),
    "http_reserved_header_lowercase": Case(
        {"target": {**HTTP, "headers": {"x-scheduler-signature": "v1=00"}}}, "target.headers.x-scheduler-signature"
    ),
    "http_header_bad_name": Case({"target": {**HTTP, "headers": {"X Bad": "1"}}}, "target.headers.X Bad"),
    "http_header_number_value": Case({"target": {**HTTP, "headers": {"X-Tries": 3}}}, "target.headers.X-Tries"),
    "http_header_newline_value": Case(
        {"target": {**HTTP, "headers": {"X-Note": "a\r\nX-Evil: 1"}}}, "target.headers.X-Note"
    ),
    "http_unknown_field": Case({"target": {**HTTP, "body": "{}"}}, "target.body", "unknown"),
    "event_bad_subject": Case({"target": {"type": "EVENT", "subject": "analytics kpi"}}, "target.subject"),
    "event_wildcard_subject": Case({"target": {"type": "EVENT", "subject": "analytics.*"}}, "target.subject"),
    "event_missing_subject": Case({"target": {"type": "EVENT"}}, "target.subject"),
    "queue_neither_queue_nor_task": Case({"target": {"type": "QUEUE"}}, "target.queue"),
    "queue_bad_task_name": Case({"target": {"type": "QUEUE", "task": "reports build"}}, "target.task"),
    "queue_bad_queue_name": Case({"target": {"type": "QUEUE", "queue": ["reports"]}}, "target.queue"),
    "target_over_16_kib": Case(
        {"target": {**HTTP, "headers": {f"X-H{i}": "v" * 400 for i in range(45)}}}, "target", "bytes"
    ),
    "target_nul": Case({"target": {"type": "EVENT", "subject": "kpi\x00"}}, "target"),
}


def test_the_known_good_job_body_is_accepted(api: APIClient) -> None:
    """The cases below break one thing each in this body, so it must pass on its own."""
    response = send(api, "POST", "/api/v1/jobs", job_body())
    assert response.status_code == 201, response.content


@cases(JOB_CASES)
def test_job_create_refuses(api: APIClient, case: Case) -> None:
    with nothing_written():
        response = send(api, "POST", "/api/v1/jobs", merged(job_body(), case.body))
        assert_problem(response, 400, case.path, case.reason)


@cases(JOB_CASES, patch=True)
def test_job_change_refuses(api: APIClient, case: Case) -> None:
    url = f"/api/v1/jobs/{JobFactory().pk}"
    with unchanged(api, url):
        assert_problem(send(api, "PATCH", url, case.body), 400, case.path, case.reason)


def test_job_key_is_unique_per_tenant(api: APIClient, other_api: APIClient) -> None:
    JobFactory(key="analytics.kpi_rebuild")
    with nothing_written():
        assert_problem(send(api, "POST", "/api/v1/jobs", job_body()), 400, "key", "already exists")
    # The same key in another tenant is no conflict.
    assert send(other_api, "POST", "/api/v1/jobs", job_body()).status_code == 201


def test_job_change_to_a_taken_key_is_400(api: APIClient) -> None:
    JobFactory(key="analytics.taken")
    JobFactory(tenant_id=OTHER_TENANT, key="analytics.elsewhere")
    url = f"/api/v1/jobs/{JobFactory().pk}"
    with unchanged(api, url):
        assert_problem(send(api, "PATCH", url, {"key": "analytics.taken"}), 400, "key", "already exists")
    assert send(api, "PATCH", url, {"key": "analytics.elsewhere"}).status_code == 200


def test_job_change_cannot_put_the_backoff_cap_below_the_stored_base(api: APIClient) -> None:
    url = f"/api/v1/jobs/{JobFactory(backoff_base_seconds=60, backoff_max_seconds=600).pk}"
    with unchanged(api, url):
        assert_problem(send(api, "PATCH", url, {"backoff": {"max_seconds": 30}}), 400, "backoff.max_seconds")


# --- schedules -------------------------------------------------------------------------------

SCHEDULE_CASES: dict[str, Case] = {
    # the job
    "missing_job": Case({"job": DROP}, "job", "required", create_only=True),
    "job_not_uuid": Case({"job": "not-a-uuid"}, "job", "uuid"),
    "job_number": Case({"job": 12345}, "job"),
    "job_null": Case({"job": None}, "job"),
    "job_object": Case({"job": {"id": Ref("job")}}, "job"),
    "job_unknown": Case({"job": Ref("missing")}, "job", "no job"),
    "job_of_other_tenant": Case({"job": Ref("other_job")}, "job", "no job"),
    # the trigger document
    "missing_trigger": Case({"trigger": DROP}, "trigger", "required", create_only=True),
    "trigger_text": Case({"trigger": "0 2 * * *"}, "trigger", "object"),
    "trigger_list": Case({"trigger": [{"type": "CRON", "expression": "0 2 * * *"}]}, "trigger", "object"),
    "trigger_null": Case({"trigger": None}, "trigger"),
    "trigger_empty": Case({"trigger": {}}, "trigger.type"),
    "trigger_type_unknown": Case({"trigger": {"type": "HOURLY"}}, "trigger.type"),
    "trigger_type_lowercase": Case({"trigger": {"type": "cron", "expression": "0 2 * * *"}}, "trigger.type"),
    "trigger_type_list": Case({"trigger": {"type": ["CRON"], "expression": "0 2 * * *"}}, "trigger.type"),
    "trigger_version_2": Case(
        {"trigger": {"version": 2, "type": "CRON", "expression": "0 2 * * *"}}, "trigger.version"
    ),
    "trigger_unknown_field": Case(
        {"trigger": {"type": "CRON", "expression": "0 2 * * *", "seconds": True}}, "trigger.seconds", "unknown"
    ),
    "trigger_field_of_other_type": Case(
        {"trigger": {"type": "CRON", "expression": "0 2 * * *", "delay_seconds": 60}}, "trigger.delay_seconds"
    ),
    "trigger_over_32_kib": Case({"trigger": {"type": "CRON", "expression": "0 2 * * *", "x": "y" * 33_000}}, "trigger"),
    "cron_without_expression": Case({"trigger": {"type": "CRON"}}, "trigger.expression", "required"),
    "cron_expression_number": Case({"trigger": {"type": "CRON", "expression": 5}}, "trigger.expression"),
    "cron_expression_blank": Case({"trigger": {"type": "CRON", "expression": "   "}}, "trigger.expression"),
    "cron_4_fields": Case({"trigger": {"type": "CRON", "expression": "0 2 * *"}}, "trigger.expression", "got 4"),
    "cron_7_fields": Case({"trigger": {"type": "CRON", "expression": "0 0 2 * * * *"}}, "trigger.expression", "got 7"),
    "cron_nul": Case({"trigger": {"type": "CRON", "expression": "0 2 * * *\x00"}}, "trigger"),
    "rrule_without_dtstart": Case({"trigger": {"type": "RRULE", "rrule": "FREQ=DAILY"}}, "trigger.dtstart"),
    "rrule_without_rrule": Case({"trigger": {"type": "RRULE", "dtstart": "2027-01-01T18:00:00"}}, "trigger.rrule"),
    "rrule_dtstart_with_offset": Case(
        {"trigger": {"type": "RRULE", "rrule": "FREQ=DAILY", "dtstart": "2027-01-01T18:00:00+01:00"}},
        "trigger.dtstart",
        "without a utc offset",
    ),
    "rrule_dtstart_garbage": Case(
        {"trigger": {"type": "RRULE", "rrule": "FREQ=DAILY", "dtstart": "new year"}}, "trigger.dtstart"
    ),
    "rrule_exdate_not_list": Case(
        {"trigger": {"type": "RRULE", "rrule": "FREQ=DAILY", "dtstart": "2027-01-01T18:00:00", "exdate": "x"}},
        "trigger.exdate",
    ),
    "rrule_exdate_item_garbage": Case(
        {"trigger": {"type": "RRULE", "rrule": "FREQ=DAILY", "dtstart": "2027-01-01T18:00:00", "exdate": ["x"]}},
        "trigger.exdate.0",
    ),
    "rrule_rdate_item_number": Case(
        {"trigger": {"type": "RRULE", "rrule": "FREQ=DAILY", "dtstart": "2027-01-01T18:00:00", "rdate": [1]}},
        "trigger.rdate.0",
    ),
    "fixed_delay_text": Case({"trigger": {"type": "FIXED_DELAY", "delay_seconds": "10"}}, "trigger.delay_seconds"),
    "fixed_delay_zero": Case({"trigger": {"type": "FIXED_DELAY", "delay_seconds": 0}}, "trigger.delay_seconds"),
    "fixed_delay_true": Case({"trigger": {"type": "FIXED_DELAY", "delay_seconds": True}}, "trigger.delay_seconds"),
    "fixed_delay_negative": Case({"trigger": {"type": "FIXED_DELAY", "delay_seconds": -60}}, "trigger.delay_seconds"),
    "fixed_delay_fraction": Case({"trigger": {"type": "FIXED_DELAY", "delay_seconds": 1.5}}, "trigger.delay_seconds"),
    "fixed_delay_over_a_year": Case(
        {"trigger": {"type": "FIXED_DELAY", "delay_seconds": 10**9}}, "trigger.delay_seconds"
    ),
    "fixed_delay_missing": Case({"trigger": {"type": "FIXED_DELAY"}}, "trigger.delay_seconds", "required"),
    "one_shot_tomorrow": Case({"trigger": {"type": "ONE_SHOT", "run_at": "tomorrow"}}, "trigger.run_at"),
    "one_shot_epoch": Case({"trigger": {"type": "ONE_SHOT", "run_at": 1_800_000_000}}, "trigger.run_at"),
    "one_shot_missing": Case({"trigger": {"type": "ONE_SHOT"}}, "trigger.run_at", "required"),
    # time zone and window
    "timezone_mars": Case({"timezone": "Mars/Olympus"}, "timezone", "unknown"),
    "timezone_directory": Case({"timezone": "Europe"}, "timezone"),
    "timezone_path": Case({"timezone": "../../etc/passwd"}, "timezone"),
    "timezone_blank": Case({"timezone": ""}, "timezone"),
    "timezone_null": Case({"timezone": None}, "timezone"),
    "timezone_too_long": Case({"timezone": "Europe/" + "B" * 100}, "timezone"),
    "start_at_naive": Case({"start_at": "2027-01-01T09:00:00"}, "start_at", "offset"),
    "start_at_garbage": Case({"start_at": "tomorrow"}, "start_at"),
    "start_at_number": Case({"start_at": 1_800_000_000}, "start_at"),
    "start_at_out_of_range": Case({"start_at": "0001-01-01T00:00:00+01:00"}, "start_at"),
    "end_at_before_start_at": Case(
        {"start_at": "2027-01-02T00:00:00+00:00", "end_at": "2027-01-01T00:00:00+00:00"}, "end_at", "later"
    ),
    "end_at_equal_start_at": Case(
        {"start_at": "2027-01-01T01:00:00+01:00", "end_at": "2027-01-01T00:00:00+00:00"}, "end_at", "later"
    ),
    # policies
    "misfire_policy_unknown": Case({"misfire_policy": "SOMETIMES"}, "misfire_policy", "valid choice"),
    "overlap_policy_unknown": Case({"overlap_policy": "QUEUE"}, "overlap_policy", "valid choice"),
    "calendar_policy_unknown": Case({"calendar_policy": "WEEKDAYS"}, "calendar_policy", "valid choice"),
    "misfire_policy_null": Case({"misfire_policy": None}, "misfire_policy"),
    # the calendar
    "calendar_not_uuid": Case({"calendar": "bavaria"}, "calendar"),
    "calendar_unknown": Case({"calendar": Ref("missing")}, "calendar", "no calendar"),
    "calendar_of_other_tenant": Case({"calendar": Ref("other_calendar")}, "calendar", "no calendar"),
    # numbers, flags, payload
    "jitter_negative": Case({"jitter_seconds": -1}, "jitter_seconds"),
    "jitter_over_an_hour": Case({"jitter_seconds": 3601}, "jitter_seconds"),
    "jitter_text": Case({"jitter_seconds": "lots"}, "jitter_seconds"),
    "misfire_grace_negative": Case({"misfire_grace_seconds": -1}, "misfire_grace_seconds"),
    "enabled_maybe": Case({"enabled": "maybe"}, "enabled"),
    "enabled_null": Case({"enabled": None}, "enabled"),
    "payload_list": Case({"payload": []}, "payload", "object"),
    "payload_over_64_kib": Case({"payload": {"blob": "x" * (64 * KIB)}}, "payload", "65536 bytes"),
    "payload_nul": Case({"payload": {"\x00": "\x00"}}, "payload"),
    "name_blank": Case({"name": ""}, "name"),
    "name_too_long": Case({"name": "n" * 201}, "name"),
    "description_list": Case({"description": ["a"]}, "description"),
    # unknown and read-only fields
    "unknown_field": Case({"cron": "0 2 * * *"}, "cron", "unknown"),
    "read_only_id": Case({"id": str(uuid.uuid4())}, "id"),
    "read_only_next_fire_at": Case({"next_fire_at": "2027-01-01T00:00:00Z"}, "next_fire_at"),
    "read_only_last_fired_at": Case({"last_fired_at": None}, "last_fired_at"),
    "tenant_id": Case({"tenant_id": OTHER_TENANT}, "tenant_id"),
}


def test_the_known_good_schedule_body_is_accepted(api: APIClient, refs: dict[str, Any]) -> None:
    response = send(api, "POST", "/api/v1/schedules", schedule_body(refs["job"]))
    assert response.status_code == 201, response.content


@cases(SCHEDULE_CASES)
def test_schedule_create_refuses(api: APIClient, refs: dict[str, Any], case: Case) -> None:
    body = merged(schedule_body(refs["job"]), resolve(case.body, refs))
    with nothing_written():
        assert_problem(send(api, "POST", "/api/v1/schedules", body), 400, case.path, case.reason)


@cases(SCHEDULE_CASES, patch=True)
def test_schedule_change_refuses(api: APIClient, refs: dict[str, Any], case: Case) -> None:
    url = f"/api/v1/schedules/{ScheduleFactory().pk}"
    with unchanged(api, url):
        assert_problem(send(api, "PATCH", url, resolve(case.body, refs)), 400, case.path, case.reason)


def test_schedule_change_cannot_end_before_the_stored_start(api: APIClient) -> None:
    schedule = ScheduleFactory(start_at="2027-06-01T00:00:00+00:00")
    url = f"/api/v1/schedules/{schedule.pk}"
    with unchanged(api, url):
        response = send(api, "PATCH", url, {"end_at": "2027-05-01T00:00:00+00:00"})
        assert_problem(response, 400, "end_at", "later")


def test_another_tenants_job_reads_like_a_missing_one(api: APIClient, refs: dict[str, Any]) -> None:
    """The 400 for a foreign job must not reveal that the id exists elsewhere."""

    def job_error(job_id: str) -> list[str]:
        response = send(api, "POST", "/api/v1/schedules", schedule_body(job_id))
        body = assert_problem(response, 400, "job")
        return [message.replace(job_id, "<id>") for message in body["errors"]["job"]]

    assert job_error(refs["other_job"]) == job_error(refs["missing"])


def test_another_tenants_calendar_reads_like_a_missing_one(api: APIClient, refs: dict[str, Any]) -> None:
    def calendar_error(calendar_id: str) -> list[str]:
        body = {**schedule_body(refs["job"]), "calendar": calendar_id}
        problem = assert_problem(send(api, "POST", "/api/v1/schedules", body), 400, "calendar")
        return [message.replace(calendar_id, "<id>") for message in problem["errors"]["calendar"]]

    assert calendar_error(refs["other_calendar"]) == calendar_error(refs["missing"])


def test_schedule_reports_every_bad_field_at_once(api: APIClient, refs: dict[str, Any]) -> None:
    body = {
        **schedule_body(refs["missing"]),
        "trigger": {"type": "FIXED_DELAY", "delay_seconds": "10"},
        "end_at": "2027-01-01T00:00:00+00:00",
        "start_at": "2027-01-02T00:00:00+00:00",
    }
    problem = assert_problem(send(api, "POST", "/api/v1/schedules", body), 400, "job")
    assert set(problem["errors"]) == {"job", "trigger.delay_seconds", "end_at"}


# --- calendars -------------------------------------------------------------------------------

CALENDAR_CASES: dict[str, Case] = {
    "missing_name": Case({"name": DROP}, "name", "required", create_only=True),
    "name_blank": Case({"name": ""}, "name"),
    "name_list": Case({"name": ["Bavaria"]}, "name"),
    "description_nul": Case({"description": "a\x00b"}, "description"),
    # holiday source
    "country_xx": Case({"country": "XX", "subdivision": ""}, "country", "unknown country"),
    "country_number": Case({"country": ["DE"], "subdivision": ""}, "country"),
    "country_too_long": Case({"country": "GERMANY!!", "subdivision": ""}, "country"),
    "unknown_subdivision": Case({"country": "DE", "subdivision": "ZZ"}, "subdivision", "unknown subdivision"),
    "subdivision_without_country": Case({"country": "", "subdivision": "BY"}, "subdivision", "needs a country"),
    "country_and_market": Case({"country": "DE", "subdivision": "", "market": "NYSE"}, "market", "not both"),
    "unknown_market": Case({"country": "", "subdivision": "", "market": "MOON"}, "market", "unknown"),
    "market_null": Case({"market": None}, "market"),
    # weekend
    "weekend_7": Case({"weekend": [7]}, "weekend.0"),
    "weekend_negative": Case({"weekend": [-1]}, "weekend.0"),
    "weekend_name": Case({"weekend": ["saturday"]}, "weekend.0"),
    "weekend_repeated_day": Case({"weekend": [5, 5]}, "weekend", "repeat"),
    "weekend_every_day": Case({"weekend": [0, 1, 2, 3, 4, 5, 6]}, "weekend"),
    "weekend_text": Case({"weekend": "5,6"}, "weekend"),
    "weekend_null": Case({"weekend": None}, "weekend"),
    # custom dates
    "holiday_month_13": Case({"holidays": ["2027-13-01"]}, "holidays.0", "date"),
    "holiday_february_30": Case({"holidays": ["2027-01-01", "2027-02-30"]}, "holidays.1"),
    "holiday_datetime": Case({"holidays": ["2027-12-24T00:00:00"]}, "holidays.0"),
    "holiday_number": Case({"holidays": [20271224]}, "holidays.0"),
    "holiday_object_extra_key": Case(
        {"holidays": [{"date": "2027-12-24", "name": "Eve", "closed": True}]}, "holidays.0"
    ),
    "holiday_object_without_date": Case({"holidays": [{"name": "Eve"}]}, "holidays.0"),
    "holiday_object_name_number": Case({"holidays": [{"date": "2027-12-24", "name": 24}]}, "holidays.0"),
    "holiday_object_name_nul": Case({"holidays": [{"date": "2027-12-24", "name": "Eve\x00"}]}, "holidays.0"),
    "holiday_object_name_surrogate": Case({"holidays": [{"date": "2027-12-24", "name": "\ud83d"}]}, "holidays.0"),
    "holiday_object_name_too_long": Case({"holidays": [{"date": "2027-12-24", "name": "n" * 201}]}, "holidays.0"),
    "holidays_text": Case({"holidays": "2027-12-24"}, "holidays"),
    "holidays_repeated_date": Case({"holidays": ["2027-12-24", {"date": "2027-12-24", "name": "Eve"}]}, "holidays"),
    "working_days_repeated_date": Case({"working_days": ["2027-12-27", "2027-12-27"]}, "working_days"),
    "same_date_holiday_and_working_day": Case(
        {"holidays": ["2027-12-24"], "working_days": ["2027-12-24"]}, "working_days", "2027-12-24"
    ),
    "too_many_holidays": Case({"holidays": [f"2027-01-{d:02d}" for d in range(1, 29)] * 40}, "holidays"),
    # unknown and read-only fields
    "unknown_field": Case({"region": "BY"}, "region", "unknown"),
    "read_only_id": Case({"id": str(uuid.uuid4())}, "id"),
    "read_only_updated_at": Case({"updated_at": "2027-01-01T00:00:00Z"}, "updated_at"),
}


def test_the_known_good_calendar_body_is_accepted(api: APIClient) -> None:
    response = send(api, "POST", "/api/v1/calendars", calendar_body())
    assert response.status_code == 201, response.content


@cases(CALENDAR_CASES)
def test_calendar_create_refuses(api: APIClient, case: Case) -> None:
    with nothing_written():
        response = send(api, "POST", "/api/v1/calendars", merged(calendar_body(), case.body))
        assert_problem(response, 400, case.path, case.reason)


@cases(CALENDAR_CASES, patch=True)
def test_calendar_change_refuses(api: APIClient, case: Case) -> None:
    calendar = CalendarFactory(subdivision="BY")
    CalendarDateFactory(calendar=calendar, date="2027-12-31", name="New Year's Eve")
    url = f"/api/v1/calendars/{calendar.pk}"
    with unchanged(api, url):
        assert_problem(send(api, "PATCH", url, case.body), 400, case.path, case.reason)


def test_calendar_change_cannot_make_a_stored_holiday_a_working_day(api: APIClient) -> None:
    calendar = CalendarFactory()
    CalendarDateFactory(calendar=calendar, date="2027-12-24")
    url = f"/api/v1/calendars/{calendar.pk}"
    with unchanged(api, url):
        assert_problem(send(api, "PATCH", url, {"working_days": ["2027-12-24"]}), 400, "working_days", "2027-12-24")


def test_calendar_change_cannot_add_a_market_to_a_country_calendar(api: APIClient) -> None:
    url = f"/api/v1/calendars/{CalendarFactory(country='DE').pk}"
    with unchanged(api, url):
        assert_problem(send(api, "PATCH", url, {"market": "NYSE"}), 400, "market")


def test_calendar_name_is_unique_per_tenant(api: APIClient, other_api: APIClient) -> None:
    CalendarFactory(name="Bavaria")
    with nothing_written():
        assert_problem(send(api, "POST", "/api/v1/calendars", calendar_body()), 400, "name", "already exists")
    assert send(other_api, "POST", "/api/v1/calendars", calendar_body()).status_code == 201

    url = f"/api/v1/calendars/{CalendarFactory(name='Berlin').pk}"
    with unchanged(api, url):
        assert_problem(send(api, "PATCH", url, {"name": "Bavaria"}), 400, "name", "already exists")


# --- workers ---------------------------------------------------------------------------------


def worker_register_body() -> dict[str, Any]:
    return {
        "name": "reports-1@ext.internal",
        "hostname": "ext.internal",
        "queues": ["default", "reports"],
        "capabilities": ["gpu"],
        "concurrency": 4,
        "version": "reports-worker 1.2.3",
    }


WORKER_REGISTER_CASES: dict[str, Case] = {
    "missing_name": Case({"name": DROP}, "name", "required"),
    "missing_hostname": Case({"hostname": DROP}, "hostname", "required"),
    "missing_queues": Case({"queues": DROP}, "queues", "required"),
    "name_blank": Case({"name": ""}, "name"),
    "name_null": Case({"name": None}, "name", "null"),
    "name_with_space": Case({"name": "reports 1"}, "name"),
    "name_with_slash": Case({"name": "reports/1"}, "name"),
    "name_too_long": Case({"name": "w" * 201}, "name"),
    "name_object": Case({"name": {"id": 1}}, "name"),
    "name_bool": Case({"name": True}, "name"),
    "hostname_with_slash": Case({"hostname": "ext/internal"}, "hostname"),
    "hostname_too_long": Case({"hostname": "h" * 256}, "hostname"),
    "hostname_list": Case({"hostname": ["ext.internal"]}, "hostname"),
    "queues_text": Case({"queues": "default"}, "queues"),
    "queues_empty": Case({"queues": []}, "queues"),
    "queues_nested": Case({"queues": [["default"]]}, "queues.0"),
    "queues_bad_name": Case({"queues": ["reports/daily"]}, "queues.0"),
    "queues_too_many": Case({"queues": [f"q{i}" for i in range(51)]}, "queues"),
    "capabilities_text": Case({"capabilities": "gpu"}, "capabilities"),
    "capabilities_queue_syntax": Case({"capabilities": ["gpu+eu"]}, "capabilities.0"),
    "capabilities_too_many": Case({"capabilities": [f"cap{i}" for i in range(9)]}, "capabilities"),
    "concurrency_zero": Case({"concurrency": 0}, "concurrency", "greater than or equal to 1"),
    "concurrency_huge": Case({"concurrency": 10_001}, "concurrency"),
    "concurrency_text": Case({"concurrency": "four"}, "concurrency", "integer"),
    "concurrency_fraction": Case({"concurrency": 1.5}, "concurrency", "integer"),
    "concurrency_bool": Case({"concurrency": True}, "concurrency", "integer"),
    "version_too_long": Case({"version": "v" * 65}, "version"),
    "version_newline": Case({"version": "1.0\nX-Evil: 1"}, "version"),
    "version_object": Case({"version": {"major": 1}}, "version"),
    # A token's tenant is the worker's tenant: no body field may pick another, or the shared fleet.
    "tenant_id_field": Case({"tenant_id": ""}, "tenant_id", "unknown"),
    "read_only_status": Case({"status": "ONLINE"}, "status", "unknown"),
    "read_only_id": Case({"id": str(uuid.uuid4())}, "id"),
}

WORKER_HEARTBEAT_CASES: dict[str, Case] = {
    "active_runs_negative": Case({"active_runs": -1}, "active_runs", "greater than or equal to 0"),
    "active_runs_huge": Case({"active_runs": 10**7}, "active_runs"),
    "active_runs_text": Case({"active_runs": "two"}, "active_runs", "integer"),
    "active_runs_fraction": Case({"active_runs": 0.5}, "active_runs", "integer"),
    "active_runs_bool": Case({"active_runs": False}, "active_runs", "integer"),
    "active_runs_null": Case({"active_runs": None}, "active_runs", "null"),
    "status_online": Case({"status": "ONLINE"}, "status", "operator"),
    "status_draining": Case({"status": "DRAINING"}, "status", "operator"),
    "status_lowercase": Case({"status": "offline"}, "status"),
    "status_object": Case({"status": {"value": "OFFLINE"}}, "status"),
    "unknown_field": Case({"last_heartbeat_at": "2027-01-01T00:00:00Z"}, "last_heartbeat_at", "unknown"),
}


def test_the_known_good_worker_register_body_is_accepted(api: APIClient) -> None:
    response = send(api, "POST", "/api/v1/workers/register", worker_register_body())
    assert response.status_code == 201, response.content


@cases(WORKER_REGISTER_CASES)
def test_worker_register_refuses(api: APIClient, case: Case) -> None:
    with nothing_written():
        response = send(api, "POST", "/api/v1/workers/register", merged(worker_register_body(), case.body))
        assert_problem(response, 400, case.path, case.reason)


@cases(WORKER_HEARTBEAT_CASES)
def test_worker_heartbeat_refuses(api: APIClient, case: Case) -> None:
    url = f"/api/v1/workers/{WorkerFactory(tenant_id=TENANT).pk}"
    with unchanged(api, url):
        assert_problem(send(api, "POST", f"{url}/heartbeat", case.body), 400, case.path, case.reason)


# --- event subscriptions ---------------------------------------------------------------------


def subscription_body(schedule_id: str) -> dict[str, Any]:
    return {
        "schedule": schedule_id,
        "subject": "erp.invoice.*",
        "filter": {"type": "erp.invoice.created", "data.kind": "invoice"},
        "description": "Invoices start the export",
        "enabled": True,
    }


@pytest.fixture
def subscription_refs(refs: dict[str, Any]) -> dict[str, Any]:
    return {
        **refs,
        "schedule": str(ScheduleFactory().pk),
        "other_schedule": str(ScheduleFactory(tenant_id=OTHER_TENANT).pk),
    }


SUBSCRIPTION_CASES: dict[str, Case] = {
    # the schedule
    "missing_schedule": Case({"schedule": DROP}, "schedule", "required", create_only=True),
    "schedule_not_uuid": Case({"schedule": "not-a-uuid"}, "schedule", "uuid"),
    "schedule_null": Case({"schedule": None}, "schedule", "null"),
    "schedule_object": Case({"schedule": {"id": Ref("schedule")}}, "schedule"),
    "schedule_unknown": Case({"schedule": Ref("missing")}, "schedule", "no schedule"),
    "schedule_of_other_tenant": Case({"schedule": Ref("other_schedule")}, "schedule", "no schedule"),
    # the subject: a NATS subject pattern
    "missing_subject": Case({"subject": DROP}, "subject", "required", create_only=True),
    "subject_blank": Case({"subject": ""}, "subject"),
    "subject_null": Case({"subject": None}, "subject", "null"),
    "subject_number": Case({"subject": 42}, "subject"),
    "subject_list": Case({"subject": ["erp.>"]}, "subject"),
    "subject_whole_bus": Case({"subject": ">"}, "subject", "first token"),
    "subject_leading_star": Case({"subject": "*.invoice.created"}, "subject", "first token"),
    "subject_gt_not_last": Case({"subject": "erp.>.created"}, "subject", "last token"),
    "subject_partial_wildcard": Case({"subject": "erp.inv*"}, "subject"),
    "subject_with_space": Case({"subject": "erp invoice"}, "subject"),
    "subject_empty_token": Case({"subject": "erp..created"}, "subject", "single dots"),
    "subject_trailing_dot": Case({"subject": "erp.invoice."}, "subject"),
    "subject_system": Case({"subject": "$JS.API.>"}, "subject", "NATS itself"),
    "subject_inbox": Case({"subject": "_INBOX.>"}, "subject", "NATS itself"),
    "subject_too_long": Case({"subject": "erp." + "x" * 252}, "subject"),
    "subject_nul": Case({"subject": "erp.\x00"}, "subject"),
    # the filter: dotted paths to scalar values
    "filter_list": Case({"filter": [{"type": "x"}]}, "filter", "object"),
    "filter_text": Case({"filter": "type=erp.invoice.created"}, "filter", "object"),
    "filter_null": Case({"filter": None}, "filter", "null"),
    "filter_object_value": Case({"filter": {"data": {"kind": "invoice"}}}, "filter.data", "exactly"),
    "filter_list_value": Case({"filter": {"data.kind": ["invoice"]}}, "filter.data.kind", "exactly"),
    "filter_empty_path": Case({"filter": {"": "x"}}, "filter", "single dots"),
    "filter_path_empty_segment": Case({"filter": {"data..kind": "x"}}, "filter.data..kind", "single dots"),
    "filter_path_trailing_dot": Case({"filter": {"data.": "x"}}, "filter.data.", "single dots"),
    "filter_path_too_long": Case({"filter": {"p" * 201: 1}}, "filter." + "p" * 201, "200"),
    "filter_string_too_long": Case({"filter": {"type": "x" * 1025}}, "filter.type", "1024"),
    "filter_too_many_conditions": Case({"filter": {f"k{i}": i for i in range(17)}}, "filter", "16"),
    "filter_over_8_kib": Case({"filter": {f"k{i}": "v" * 1000 for i in range(9)}}, "filter", "bytes"),
    "filter_nul": Case({"filter": {"type": "a\x00"}}, "filter"),
    # the rest
    "enabled_maybe": Case({"enabled": "maybe"}, "enabled"),
    "enabled_null": Case({"enabled": None}, "enabled", "null"),
    "description_too_long": Case({"description": "d" * 2001}, "description"),
    "description_object": Case({"description": {"en": "x"}}, "description"),
    # unknown and read-only fields
    "unknown_field": Case({"subjects": ["erp.>"]}, "subjects", "unknown"),
    "read_only_id": Case({"id": str(uuid.uuid4())}, "id", "read-only"),
    "read_only_matched_count": Case({"matched_count": 0}, "matched_count", "read-only"),
    "read_only_last_run": Case({"last_run": None}, "last_run"),
    "tenant_id": Case({"tenant_id": OTHER_TENANT}, "tenant_id"),
}


def test_the_known_good_subscription_body_is_accepted(api: APIClient, subscription_refs: dict[str, Any]) -> None:
    response = send(api, "POST", "/api/v1/subscriptions", subscription_body(subscription_refs["schedule"]))
    assert response.status_code == 201, response.content


@cases(SUBSCRIPTION_CASES)
def test_subscription_create_refuses(api: APIClient, subscription_refs: dict[str, Any], case: Case) -> None:
    body = merged(subscription_body(subscription_refs["schedule"]), resolve(case.body, subscription_refs))
    with nothing_written():
        assert_problem(send(api, "POST", "/api/v1/subscriptions", body), 400, case.path, case.reason)


@cases(SUBSCRIPTION_CASES, patch=True)
def test_subscription_change_refuses(api: APIClient, subscription_refs: dict[str, Any], case: Case) -> None:
    url = f"/api/v1/subscriptions/{EventSubscriptionFactory(filter={'type': 'erp.invoice.created'}).pk}"
    with unchanged(api, url):
        assert_problem(send(api, "PATCH", url, resolve(case.body, subscription_refs)), 400, case.path, case.reason)


# --- list filters and pagination -------------------------------------------------------------

LIST_QUERIES: dict[str, tuple[str, str]] = {
    "runs_status_bad": ("/api/v1/runs?status=BAD", "status"),
    "runs_status_one_bad_of_two": ("/api/v1/runs?status=FAILED&status=BAD", "status"),
    "runs_status_lowercase": ("/api/v1/runs?status=failed", "status"),
    "runs_kind_bad": ("/api/v1/runs?kind=BAD", "kind"),
    "runs_schedule_not_uuid": ("/api/v1/runs?schedule=not-a-uuid", "schedule"),
    "runs_job_not_uuid": ("/api/v1/runs?job=not-a-uuid", "job"),
    "runs_scheduled_for_after_garbage": ("/api/v1/runs?scheduled_for_after=garbage", "scheduled_for_after"),
    "runs_scheduled_for_before_garbage": ("/api/v1/runs?scheduled_for_before=2027-13-01", "scheduled_for_before"),
    "runs_cursor_garbage": ("/api/v1/runs?cursor=garbage", "cursor"),
    "runs_cursor_base64_garbage": ("/api/v1/runs?cursor=cD1nYXJiYWdl", "cursor"),
    "runs_page_size_0": ("/api/v1/runs?page_size=0", "page_size"),
    "runs_page_size_501": ("/api/v1/runs?page_size=501", "page_size"),
    "runs_page_size_abc": ("/api/v1/runs?page_size=abc", "page_size"),
    "runs_page_size_negative": ("/api/v1/runs?page_size=-1", "page_size"),
    "runs_page_size_superscript": ("/api/v1/runs?page_size=%C2%B2", "page_size"),
    "runs_unknown_parameter": ("/api/v1/runs?state=FAILED", "state"),
    "runs_page_is_not_a_runs_parameter": ("/api/v1/runs?page=2", "page"),
    "jobs_page_abc": ("/api/v1/jobs?page=abc", "page"),
    "jobs_page_0": ("/api/v1/jobs?page=0", "page"),
    "jobs_page_negative": ("/api/v1/jobs?page=-1", "page"),
    "jobs_page_superscript": ("/api/v1/jobs?page=%C2%B2", "page"),
    "jobs_page_size_0": ("/api/v1/jobs?page_size=0", "page_size"),
    "jobs_page_size_501": ("/api/v1/jobs?page_size=501", "page_size"),
    "jobs_page_size_superscript": ("/api/v1/jobs?page_size=%C2%B9", "page_size"),
    "jobs_unknown_parameter": ("/api/v1/jobs?key=analytics.kpi", "key"),
    "jobs_cursor_is_not_a_jobs_parameter": ("/api/v1/jobs?cursor=abc", "cursor"),
    "schedules_unknown_parameter": ("/api/v1/schedules?enabled=true", "enabled"),
    "schedules_page_abc": ("/api/v1/schedules?page=abc", "page"),
    "calendars_unknown_parameter": ("/api/v1/calendars?country=DE", "country"),
    "calendars_page_size_abc": ("/api/v1/calendars?page_size=abc", "page_size"),
    "workers_status_bad": ("/api/v1/workers?status=SLEEPING", "status"),
    "workers_unknown_parameter": ("/api/v1/workers?queue=default", "queue"),
    "subscriptions_unknown_parameter": ("/api/v1/subscriptions?subject=erp.%3E", "subject"),
    "subscriptions_page_size_abc": ("/api/v1/subscriptions?page_size=abc", "page_size"),
}


@pytest.mark.parametrize(("url", "path"), list(LIST_QUERIES.values()), ids=list(LIST_QUERIES))
def test_list_refuses_a_bad_query(api: APIClient, url: str, path: str) -> None:
    RunFactory()
    WorkerFactory()
    assert_problem(api.get(url), 400, path)


GOOD_LIST_QUERIES = {
    "runs_status_repeated": "/api/v1/runs?status=FAILED&status=DEAD",
    "runs_time_range": "/api/v1/runs?scheduled_for_after=2027-01-01T00:00Z&scheduled_for_before=2028-01-01T00:00Z",
    "runs_every_filter": "/api/v1/runs?status=SUCCEEDED&kind=SCHEDULED&schedule={schedule}&job={job}&page_size=10",
    "jobs_page_last": "/api/v1/jobs?page=last&page_size=500",
    "workers_status": "/api/v1/workers?status=ONLINE",
}


@pytest.mark.parametrize("url", list(GOOD_LIST_QUERIES.values()), ids=list(GOOD_LIST_QUERIES))
def test_list_accepts_the_documented_query_parameters(api: APIClient, url: str) -> None:
    """The refusal of unknown parameters must not catch the documented ones."""
    run = RunFactory()
    response = api.get(url.format(schedule=run.schedule_id, job=run.job_id))
    assert response.status_code == 200, response.content


def test_runs_time_range_filters(api: APIClient) -> None:
    inside = RunFactory(scheduled_for="2027-03-01T00:00:00+00:00")
    RunFactory(scheduled_for="2027-05-01T00:00:00+00:00")
    response = api.get("/api/v1/runs?scheduled_for_after=2027-02-01T00:00:00Z&scheduled_for_before=2027-04-01T00:00Z")
    assert response.status_code == 200, response.content
    assert [run["id"] for run in response.json()["results"]] == [str(inside.pk)]


# --- path ids --------------------------------------------------------------------------------

BAD_ID_REQUESTS: dict[str, tuple[str, str]] = {
    "get_job": ("GET", "/api/v1/jobs/{id}"),
    "patch_job": ("PATCH", "/api/v1/jobs/{id}"),
    "get_schedule": ("GET", "/api/v1/schedules/{id}"),
    "patch_schedule": ("PATCH", "/api/v1/schedules/{id}"),
    "delete_schedule": ("DELETE", "/api/v1/schedules/{id}"),
    "enable_schedule": ("POST", "/api/v1/schedules/{id}/enable"),
    "disable_schedule": ("POST", "/api/v1/schedules/{id}/disable"),
    "get_calendar": ("GET", "/api/v1/calendars/{id}"),
    "patch_calendar": ("PATCH", "/api/v1/calendars/{id}"),
    "delete_calendar": ("DELETE", "/api/v1/calendars/{id}"),
    "calendar_holidays": ("GET", "/api/v1/calendars/{id}/holidays"),
    "get_run": ("GET", "/api/v1/runs/{id}"),
    "get_worker": ("GET", "/api/v1/workers/{id}"),
    "worker_heartbeat": ("POST", "/api/v1/workers/{id}/heartbeat"),
    "drain_worker": ("POST", "/api/v1/workers/{id}/drain"),
    "undrain_worker": ("POST", "/api/v1/workers/{id}/undrain"),
    "get_subscription": ("GET", "/api/v1/subscriptions/{id}"),
    "patch_subscription": ("PATCH", "/api/v1/subscriptions/{id}"),
    "delete_subscription": ("DELETE", "/api/v1/subscriptions/{id}"),
}
BAD_IDS = {"word": "not-a-uuid", "number": "12345", "uuid_too_short": "123e4567-e89b-12d3-a456-42661417400"}


@pytest.mark.parametrize("bad_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
@pytest.mark.parametrize(("method", "template"), list(BAD_ID_REQUESTS.values()), ids=list(BAD_ID_REQUESTS))
def test_a_path_id_that_is_not_a_uuid_is_400(api: APIClient, method: str, template: str, bad_id: str) -> None:
    ScheduleFactory()
    with nothing_written():
        response = send(api, method, template.format(id=bad_id), {"name": "renamed"})
        assert_problem(response, 400, "id", "uuid")


# --- the cases above cover every field of every write endpoint --------------------------------


def _fields(serializer: Callable[[], Any]) -> set[str]:
    return {name for name, field in serializer().fields.items() if not field.read_only}


def test_every_input_field_has_a_bad_input_case() -> None:
    """A field added to an input serializer without a bad-input case here fails this test."""
    from calendars.api.serializers import CalendarInputSerializer
    from schedules.api.serializers import JobInputSerializer, ScheduleInputSerializer
    from subscriptions.api.serializers import SubscriptionInputSerializer
    from workers.api.serializers import WorkerHeartbeatSerializer, WorkerRegisterSerializer

    def covered(table: dict[str, Case]) -> set[str]:
        return {case.path.split(".")[0] for case in table.values()}

    assert _fields(JobInputSerializer) - covered(JOB_CASES) == set()
    assert _fields(ScheduleInputSerializer) - covered(SCHEDULE_CASES) == set()
    assert _fields(CalendarInputSerializer) - covered(CALENDAR_CASES) == set()
    assert _fields(WorkerRegisterSerializer) - covered(WORKER_REGISTER_CASES) == set()
    assert _fields(WorkerHeartbeatSerializer) - covered(WORKER_HEARTBEAT_CASES) == set()
    assert _fields(SubscriptionInputSerializer) - covered(SUBSCRIPTION_CASES) == set()
