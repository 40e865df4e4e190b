"""Property tests: whatever JSON a client sends to a write endpoint, the answer is a success or
a 400 problem document with an ``errors`` object, never a 500, and a refused write leaves no
trace.

Bodies start from a known-good one, then fields (the endpoint's real field names, and the real
names inside ``target``, ``trigger`` and ``backoff``) are replaced by arbitrary JSON or dropped,
and a few unknown keys are added, so that examples reach past the first field check into the
services and the database. Strings include NUL characters and lone surrogates, numbers
include NaN and infinities: all valid for Python's ``json``, none storable as PostgreSQL jsonb.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from calendars.api.serializers import CalendarInputSerializer
from calendars.models import Calendar, CalendarDate
from runs.targets.spec import TARGET_TYPES
from scheduler_project.models import OutboxEvent
from schedules.api.serializers import JobInputSerializer, ScheduleInputSerializer
from schedules.engine.spec import TRIGGER_TYPES
from schedules.models import Job, Schedule
from tests.factories import CalendarFactory, JobFactory, ScheduleFactory

pytestmark = pytest.mark.django_db

PROBLEM_JSON = "application/problem+json"
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- arbitrary JSON ------------------------------------------------------------------------

# Any character, with a thumb on the scale for those that valid JSON carries and PostgreSQL
# refuses: NUL and unpaired surrogates.
characters = st.characters() | st.characters(codec=None, categories=["Cs"]) | st.sampled_from(["\x00", "\ud800"])
text = st.text(characters, max_size=12)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(text, json_values, max_size=4)


def shaped(names: list[str], **known: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with some of ``names`` (values from ``known`` or arbitrary JSON), and maybe a stray key."""
    value_for = {name: known.get(name, st.nothing()) | json_values | json_objects for name in names}
    return st.builds(
        lambda chosen, extra: {**chosen, **extra},
        st.fixed_dictionaries({}, optional=value_for),
        st.dictionaries(text, json_values, max_size=1),
    )


def writable_fields(serializer: type) -> list[str]:
    return sorted(name for name, field in serializer().fields.items() if not field.read_only)


def mutated(valid: dict[str, Any], fields: list[str], **known: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` with one or two fields replaced, maybe one dropped, maybe an unknown key added.

    Few changes per example, so that most bodies get past the serializer's first refusal and
    the odd value reaches the service and the database.
    """

    def build(replaced: dict[str, Any], dropped: set[str], extra: dict[str, Any]) -> dict[str, Any]:
        body = {key: value for key, value in {**valid, **replaced}.items() if key not in dropped}
        return {**body, **extra}

    value_for = {name: known.get(name, st.nothing()) | json_values | json_objects for name in fields}
    replaced = st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({name: value_for[name] for name in names})
    )
    return st.builds(
        build,
        replaced,
        st.just(set()) | st.sets(st.sampled_from(fields), min_size=1, max_size=1),
        st.just({}) | st.dictionaries(text, json_values, min_size=1, max_size=1),
    )


iso_datetimes = st.datetimes().map(lambda d: d.isoformat()) | st.sampled_from(
    ["2027-01-01T09:00:00+01:00", "2027-01-01T09:00:00", "2027-01-01", "tomorrow"]
)
dates = st.dates().map(str) | st.sampled_from(["2027-12-24", "2027-13-01", "24.12.2027"])

TARGETS = shaped(
    ["type", "url", "method", "headers", "subject", "queue", "task"],
    type=st.sampled_from(TARGET_TYPES),
    url=st.sampled_from(["https://a.test/x", "ftp://a.test", "http://[::1", "/x"]) | text,
    method=st.sampled_from(["GET", "POST", "post", "FETCH"]),
    headers=st.dictionaries(st.sampled_from(["X-A", "Idempotency-Key", "Bad Name"]) | text, json_values, max_size=3),
    subject=st.sampled_from(["a.b", "a.*", "a b"]) | text,
    queue=st.sampled_from(["reports", "bad queue"]) | text,
    task=st.sampled_from(["reports.build", "not a task"]) | text,
)
TRIGGERS = shaped(
    ["type", "version", "expression", "rrule", "dtstart", "rdate", "exdate", "delay_seconds", "run_at"],
    type=st.sampled_from(TRIGGER_TYPES),
    version=st.sampled_from([1, 2, "1", True]),
    expression=st.sampled_from(["0 2 * * *", "*/30 * * * * *", "0 2 * *", "61 * * * *"]) | text,
    rrule=st.sampled_from(["FREQ=DAILY", "FREQ=BOGUS", "DTSTART:20270101T000000\nRRULE:FREQ=DAILY"]) | text,
    dtstart=iso_datetimes,
    rdate=st.lists(iso_datetimes, max_size=3),
    exdate=st.lists(iso_datetimes, max_size=3),
    delay_seconds=st.integers(min_value=-10, max_value=10**10),
    run_at=iso_datetimes,
)
BACKOFFS = shaped(
    ["strategy", "base_seconds", "max_seconds"],
    strategy=st.sampled_from(["FIXED", "EXPONENTIAL", "EXPONENTIAL_JITTER", "LINEAR"]),
    base_seconds=st.integers(min_value=-1, max_value=10**6),
    max_seconds=st.integers(min_value=-1, max_value=10**6),
)
CUSTOM_DATES = st.lists(
    dates | st.fixed_dictionaries({"date": dates}, optional={"name": text}) | json_values, max_size=4
)

JOB_VALUES = {
    "target": TARGETS,
    "payload": json_objects,
    "backoff": BACKOFFS,
    "key": st.sampled_from(["fuzz.job", "bad key", ""]) | text,
    "max_attempts": st.integers(min_value=-1, max_value=200),
    "priority": st.integers(min_value=-1, max_value=12),
}
SCHEDULE_VALUES = {
    "trigger": TRIGGERS,
    "payload": json_objects,
    "timezone": st.sampled_from(["Europe/Berlin", "UTC", "Mars/Olympus", "Europe", "../etc"]) | text,
    "start_at": iso_datetimes,
    "end_at": iso_datetimes,
    "calendar_policy": st.sampled_from(["SKIP", "NEXT_BUSINESS_DAY", "BOGUS"]),
    "misfire_policy": st.sampled_from(["SKIP", "RUN_ONCE", "RUN_ALL", "BOGUS"]),
    "overlap_policy": st.sampled_from(["ALLOW", "SKIP", "BUFFER_ONE", "CANCEL_PREVIOUS", "BOGUS"]),
    "jitter_seconds": st.integers(min_value=-1, max_value=4000),
}
CALENDAR_VALUES = {
    "country": st.sampled_from(["DE", "de", "US", "XX", ""]),
    "subdivision": st.sampled_from(["BY", "CA", "ZZ", ""]),
    "market": st.sampled_from(["NYSE", "XNYS", "MOON", ""]),
    "weekend": st.lists(st.integers(min_value=-1, max_value=8), max_size=8),
    "holidays": CUSTOM_DATES,
    "working_days": CUSTOM_DATES,
}

VALID_JOB = {"key": "fuzz.job", "name": "Fuzz", "target": {"type": "EVENT", "subject": "fuzz.job"}}
VALID_CALENDAR = {"name": "Fuzz", "country": "DE", "subdivision": "BY", "holidays": ["2027-12-24"]}


def valid_schedule(job_id: str) -> dict[str, Any]:
    return {"name": "Fuzz", "job": job_id, "trigger": {"type": "CRON", "expression": "0 2 * * *"}}


# --- the checks --------------------------------------------------------------------------------


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in (Job, Schedule, Calendar, CalendarDate, OutboxEvent)}


def send(client: APIClient, method: str, url: str, body: Any) -> Any:
    # json.dumps writes NaN, which the API must refuse as bad JSON; an infinity goes as 1e400,
    # valid JSON that Python reads as inf and PostgreSQL cannot store.
    encoded = json.dumps(body).replace("Infinity", "1e400")
    return getattr(client, method)(url, data=encoded, content_type="application/json")


def as_stored(response: Any) -> Any:
    """The response body with numbers compared by decimal value: PostgreSQL's jsonb keeps the
    digits the client sent (``4.425325357580735e+16``), while the response to the write
    echoes Python's float of them."""
    return json.loads(response.content, parse_float=Decimal)


def assert_refusal(response: Any) -> None:
    assert response["Content-Type"].split(";")[0] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == 400
    errors = problem.get("errors")
    assert isinstance(errors, dict), problem
    assert errors, problem
    for path, messages in errors.items():
        assert isinstance(path, str), errors
        assert isinstance(messages, list), errors
        assert messages, errors
        assert all(isinstance(message, str) and message for message in messages), errors


def check_create(client: APIClient, url: str, body: Any, model: type) -> None:
    before = counts()
    response = send(client, "post", url, body)
    assert response.status_code in (201, 400), (response.status_code, body, response.content[:1000])
    if response.status_code == 400:
        assert_refusal(response)
        assert counts() == before
    else:
        assert model.objects.count() == before[model.__name__] + 1
        assert as_stored(client.get(f"{url}/{response.json()['id']}")) == as_stored(response)


def check_change(client: APIClient, url: str, body: Any) -> None:
    before, rows = client.get(url).json(), counts()
    response = send(client, "patch", url, body)
    assert response.status_code in (200, 400), (response.status_code, body, response.content[:1000])
    if response.status_code == 400:
        assert_refusal(response)
        assert client.get(url).json() == before
        assert counts() == rows
    else:
        assert as_stored(client.get(url)) == as_stored(response)


# --- create ------------------------------------------------------------------------------------


@pytest.fixture
def job_id() -> str:
    return str(JobFactory().pk)


@FUZZ
@given(body=mutated(VALID_JOB, writable_fields(JobInputSerializer), **JOB_VALUES))
def test_job_create_never_fails_on_input(api: APIClient, body: Any) -> None:
    check_create(api, "/api/v1/jobs", body, Job)


@FUZZ
@given(data=st.data())
def test_schedule_create_never_fails_on_input(api: APIClient, job_id: str, data: st.DataObject) -> None:
    fields = writable_fields(ScheduleInputSerializer)
    body = data.draw(mutated(valid_schedule(job_id), fields, **SCHEDULE_VALUES))
    check_create(api, "/api/v1/schedules", body, Schedule)


@FUZZ
@given(body=mutated(VALID_CALENDAR, writable_fields(CalendarInputSerializer), **CALENDAR_VALUES))
def test_calendar_create_never_fails_on_input(api: APIClient, body: Any) -> None:
    check_create(api, "/api/v1/calendars", body, Calendar)


# --- change ------------------------------------------------------------------------------------


def partial(fields: list[str], **known: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return shaped(fields, **known) | json_values


@FUZZ
@given(body=partial(writable_fields(JobInputSerializer), **JOB_VALUES))
def test_job_change_never_fails_on_input(api: APIClient, job_id: str, body: Any) -> None:
    check_change(api, f"/api/v1/jobs/{job_id}", body)


@pytest.fixture
def schedule_id() -> str:
    return str(ScheduleFactory().pk)


@FUZZ
@given(body=partial(writable_fields(ScheduleInputSerializer), **SCHEDULE_VALUES))
def test_schedule_change_never_fails_on_input(api: APIClient, schedule_id: str, body: Any) -> None:
    check_change(api, f"/api/v1/schedules/{schedule_id}", body)


@pytest.fixture
def calendar_id() -> str:
    return str(CalendarFactory(subdivision="BY").pk)


@FUZZ
@given(body=partial(writable_fields(CalendarInputSerializer), **CALENDAR_VALUES))
def test_calendar_change_never_fails_on_input(api: APIClient, calendar_id: str, body: Any) -> None:
    check_change(api, f"/api/v1/calendars/{calendar_id}", body)
