"""Preview endpoints and next_fire_at: what the API promises is what the engine computes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from calendars.models import CalendarDateKind
from scheduler_project.models import OutboxEvent
from schedules.models import Schedule
from tests.factories import OTHER_TENANT, CalendarDateFactory, CalendarFactory, JobFactory, ScheduleFactory

pytestmark = pytest.mark.django_db
PREVIEW = "/api/v1/triggers/preview"


def _preview(api: APIClient, **body: Any) -> Any:
    response = api.post(PREVIEW, body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_design_example_business_days_with_a_custom_holiday(api: APIClient) -> None:
    body = _preview(
        api,
        trigger={"type": "CRON", "expression": "0 8 * * *"},
        timezone="Europe/Berlin",
        calendar={"country": "DE", "subdivision": "BY", "weekend": [5, 6], "holidays": ["2027-12-24"]},
        calendar_policy="SKIP",
        after="2027-12-20T00:00:00+01:00",
        count=6,
    )
    # 24th: custom holiday; 25th-26th: weekend and Christmas; 31st is a business day in Bavaria.
    assert body["fire_times"] == [
        "2027-12-20T08:00:00+01:00",
        "2027-12-21T08:00:00+01:00",
        "2027-12-22T08:00:00+01:00",
        "2027-12-23T08:00:00+01:00",
        "2027-12-27T08:00:00+01:00",
        "2027-12-28T08:00:00+01:00",
    ]
    assert body["details"] == []


def test_previous_business_day_is_explained(api: APIClient) -> None:
    body = _preview(
        api,
        trigger={"type": "CRON", "expression": "0 9 1 * *"},  # the 1st of each month
        timezone="Europe/Berlin",
        calendar={"country": "DE", "subdivision": "BY"},
        calendar_policy="PREVIOUS_BUSINESS_DAY",
        after="2027-04-15T00:00:00Z",
        count=3,
    )
    # 2027-05-01 is a Saturday and Labour Day -> Friday 30 April; 2027-06-01 a Tuesday;
    # 2027-07-01 a Thursday.
    assert body["fire_times"] == [
        "2027-04-30T09:00:00+02:00",
        "2027-06-01T09:00:00+02:00",
        "2027-07-01T09:00:00+02:00",
    ]
    [detail] = body["details"]
    assert detail["kind"] == "CALENDAR_SHIFT"
    assert detail["moved_from"] == "2027-05-01"
    assert "2027-05-01" in detail["message"]
    assert detail["fire_time"] == "2027-04-30T09:00:00+02:00"


def test_dst_gap_is_explained_with_the_local_offset(api: APIClient) -> None:
    body = _preview(
        api,
        trigger={"type": "CRON", "expression": "30 2 * * *"},
        timezone="Europe/Berlin",
        after="2027-03-27T12:00:00Z",
        count=2,
    )
    assert body["fire_times"] == ["2027-03-28T03:00:00+02:00", "2027-03-29T02:30:00+02:00"]
    assert body["details"][0]["kind"] == "DST_GAP"
    assert body["details"][0]["moved_from"] == "2027-03-28T02:30:00"


def test_last_business_day_with_a_stored_calendar(api: APIClient) -> None:
    calendar = CalendarFactory(country="DE", subdivision="BY")
    CalendarDateFactory(calendar=calendar, date=datetime(2027, 4, 30).date(), kind=CalendarDateKind.HOLIDAY)
    body = _preview(
        api,
        trigger={"type": "BUSINESS_DAY", "day": -1, "at": "18:00", "months": [3, 4, 6]},
        timezone="Europe/Berlin",
        calendar_id=str(calendar.pk),
        after="2027-01-01T00:00:00Z",
        count=3,
    )
    assert body["fire_times"] == [
        "2027-03-31T18:00:00+02:00",
        "2027-04-29T18:00:00+02:00",  # the 30th is the calendar's own holiday
        "2027-06-30T18:00:00+02:00",
    ]


def test_count_is_honoured_and_bounded(api: APIClient) -> None:
    body = _preview(api, trigger={"type": "CRON", "expression": "* * * * *"}, count=1000)
    assert len(body["fire_times"]) == 1000
    assert len(set(body["fire_times"])) == 1000
    for count in (0, 1001):
        response = api.post(
            PREVIEW, {"trigger": {"type": "CRON", "expression": "* * * * *"}, "count": count}, format="json"
        )
        assert response.status_code == 400
        assert "count" in response.json()["errors"]


def test_default_after_is_now_and_timezone_is_the_default(api: APIClient, settings: Any) -> None:
    before = timezone.now()
    body = _preview(api, trigger={"type": "CRON", "expression": "0 * * * *"}, count=1)
    fire = datetime.fromisoformat(body["fire_times"][0])
    assert before < fire <= before + timedelta(hours=1)
    assert fire.utcoffset() == fire.astimezone(ZoneInfo(settings.DEFAULT_TZ)).utcoffset()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"trigger": {"type": "CRON", "expression": "0 2 32 * *"}}, "trigger.expression"),
        ({"trigger": {"type": "CRON", "expression": "61 * * * *"}}, "trigger.expression"),
        (
            {"trigger": {"type": "RRULE", "rrule": "FREQ=DAILY;BYDAY=XX", "dtstart": "2027-01-01T09:00:00"}},
            "trigger.rrule",
        ),
        (
            {"trigger": {"type": "RRULE", "rrule": "FREQ=DAILY;UNTIL=20270101", "dtstart": "2027-01-01T09:00:00"}},
            "trigger.rrule",
        ),
        ({"trigger": {"type": "BUSINESS_DAY", "day": 3, "at": "09:00"}}, "trigger.type"),
        ({"trigger": {"type": "BUSINESS_DAY", "day": 0, "at": "25:00"}}, "trigger.day"),
        ({"trigger": {"type": "CRON", "expression": "* * * * *"}, "timezone": "Mars/Olympus"}, "timezone"),
        ({"trigger": {"type": "CRON", "expression": "* * * * *"}, "calendar": {"country": "XX"}}, "calendar.country"),
        (
            {
                "trigger": {"type": "CRON", "expression": "* * * * *"},
                "calendar": {"country": "DE", "subdivision": "ZZ"},
            },
            "calendar.subdivision",
        ),
        ({"trigger": {"type": "CRON", "expression": "* * * * *"}, "calendar": {"market": "NOPE"}}, "calendar.market"),
        ({"trigger": {"type": "CRON", "expression": "* * * * *"}, "calendar_policy": "NEAREST"}, "calendar_policy"),
        ({"trigger": {"type": "CRON", "expression": "* * * * *"}, "after": "2027-01-01T00:00:00"}, "after"),
        ({"trigger": {"type": "CRON", "expression": "* * * * *"}, "calendar_id": "nope"}, "calendar_id"),
        ({"trigger": {"type": "CRON", "expression": "* * * * *"}, "colour": "red"}, "colour"),
    ],
    ids=[
        "day_of_month_32",
        "minute_61",
        "byday_xx",
        "until_not_utc",
        "business_day_without_calendar",
        "business_day_bad_fields",
        "unknown_timezone",
        "unknown_country",
        "unknown_subdivision",
        "unknown_market",
        "unknown_policy",
        "naive_after",
        "calendar_id_not_uuid",
        "unknown_field",
    ],
)
def test_preview_bad_input_names_the_field(api: APIClient, body: dict[str, Any], path: str) -> None:
    response = api.post(PREVIEW, body, format="json")
    assert response.status_code == 400, response.content
    assert path in response.json()["errors"], response.json()


def test_cron_range_error_message_names_field_and_range(api: APIClient) -> None:
    response = api.post(PREVIEW, {"trigger": {"type": "CRON", "expression": "0 2 32 * *"}}, format="json")
    assert response.json()["errors"]["trigger.expression"] == ["Day-of-month 32 is out of range 1-31."]


def test_another_tenants_calendar_id_is_refused_without_leaking(api: APIClient) -> None:
    foreign = CalendarFactory(tenant_id=OTHER_TENANT, name="Globex secret calendar")
    response = api.post(
        PREVIEW, {"trigger": {"type": "CRON", "expression": "0 9 * * *"}, "calendar_id": str(foreign.pk)}, format="json"
    )
    assert response.status_code == 400
    assert "calendar_id" in response.json()["errors"]
    assert "Globex" not in response.content.decode()


def test_schedule_preview_uses_the_schedules_own_settings(api: APIClient) -> None:
    calendar = CalendarFactory(country="DE", subdivision="BY")
    schedule = ScheduleFactory(
        trigger={"version": 1, "type": "CRON", "expression": "0 7 * * *"},
        timezone="America/New_York",
        calendar=calendar,
        calendar_policy="SKIP",
    )
    response = api.get(f"/api/v1/schedules/{schedule.pk}/preview?count=3&after=2027-01-05T00:00:00Z")
    assert response.status_code == 200, response.content
    # 5 January 2027 07:00 in New York; the 6th is Epiphany in Bavaria; then the 7th.
    assert response.json()["fire_times"] == [
        "2027-01-05T07:00:00-05:00",
        "2027-01-07T07:00:00-05:00",
        "2027-01-08T07:00:00-05:00",
    ]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("count=0", "count"),
        ("count=abc", "count"),
        ("after=yesterday", "after"),
        ("x=1", "x"),
        ("count=1&count=2", "count"),
    ],
    ids=["zero", "not_a_number", "bad_after", "unknown", "repeated"],
)
def test_schedule_preview_bad_query(api: APIClient, query: str, name: str) -> None:
    schedule = ScheduleFactory()
    response = api.get(f"/api/v1/schedules/{schedule.pk}/preview?{query}")
    assert response.status_code == 400
    assert name in response.json()["errors"]


# --- next_fire_at on writes ------------------------------------------------------------------


def _create(api: APIClient, **fields: Any) -> Any:
    body = {"name": "nightly", "job": str(JobFactory().pk), "trigger": {"type": "CRON", "expression": "0 2 * * *"}}
    body.update(fields)
    return api.post("/api/v1/schedules", body, format="json")


def test_create_computes_next_fire_at_in_the_schedules_zone(api: APIClient) -> None:
    response = _create(api, timezone="Asia/Kolkata")
    assert response.status_code == 201, response.content
    next_fire = datetime.fromisoformat(response.json()["next_fire_at"])
    local = next_fire.astimezone(ZoneInfo("Asia/Kolkata"))
    assert (local.hour, local.minute) == (2, 0)
    assert timezone.now() < next_fire <= timezone.now() + timedelta(days=1)


def test_patching_the_trigger_moves_next_fire_at_and_other_fields_do_not(api: APIClient) -> None:
    created = _create(api, timezone="UTC").json()
    renamed = api.patch(f"/api/v1/schedules/{created['id']}", {"name": "renamed"}, format="json").json()
    assert renamed["next_fire_at"] == created["next_fire_at"]
    start = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    moved = api.patch(
        f"/api/v1/schedules/{created['id']}",
        {"trigger": {"type": "ONE_SHOT", "run_at": start.isoformat()}},
        format="json",
    ).json()
    assert datetime.fromisoformat(moved["next_fire_at"]) == start


def test_start_at_delays_the_first_fire(api: APIClient) -> None:
    start = (timezone.now() + timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)
    response = _create(api, timezone="UTC", start_at=start.isoformat())
    assert datetime.fromisoformat(response.json()["next_fire_at"]) == start + timedelta(hours=2)


def test_fixed_delay_first_fire_is_creation_plus_delay(api: APIClient) -> None:
    before = timezone.now()
    response = _create(api, trigger={"type": "FIXED_DELAY", "delay_seconds": 3600})
    next_fire = datetime.fromisoformat(response.json()["next_fire_at"])
    assert before + timedelta(hours=1) <= next_fire <= timezone.now() + timedelta(hours=1)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"trigger": {"type": "ONE_SHOT", "run_at": "2020-01-01T09:00:00+01:00"}}, "trigger.run_at"),
        (
            {
                "trigger": {
                    "type": "RRULE",
                    "rrule": "FREQ=DAILY;UNTIL=20200101T000000Z",
                    "dtstart": "2019-01-01T09:00:00",
                }
            },
            "trigger",
        ),
        ({"trigger": {"type": "CRON", "expression": "0 0 30 2 *"}}, "trigger"),
        ({"end_at": "2020-01-01T00:00:00Z"}, "end_at"),
        ({"trigger": {"type": "CRON", "expression": "0 2 32 * *"}}, "trigger.expression"),
        (
            {
                "trigger": {
                    "type": "RRULE",
                    "rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
                    "dtstart": "2027-01-01T00:00:00",
                }
            },
            "trigger.rrule",
        ),
    ],
    ids=["one_shot_in_the_past", "until_in_the_past", "february_30", "end_before_now", "day_32", "rrule_never"],
)
def test_a_schedule_that_never_fires_is_refused(api: APIClient, fields: dict[str, Any], path: str) -> None:
    response = _create(api, **fields)
    assert response.status_code == 400, response.content
    assert path in response.json()["errors"], response.json()
    assert not Schedule.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_resume_recomputes_next_fire_at_from_now(api: APIClient) -> None:
    schedule = ScheduleFactory(enabled=False, next_fire_at=datetime(2020, 1, 1, tzinfo=UTC), timezone="UTC")
    response = api.post(f"/api/v1/schedules/{schedule.pk}/enable")
    next_fire = datetime.fromisoformat(response.json()["next_fire_at"])
    assert timezone.now() < next_fire <= timezone.now() + timedelta(days=1)
    assert next_fire.hour == 2


def test_changing_a_calendar_moves_its_schedules(api: APIClient) -> None:
    calendar = CalendarFactory(country="", weekend=[5, 6])
    created = _create(api, timezone="UTC", calendar=str(calendar.pk), calendar_policy="SKIP").json()
    first = datetime.fromisoformat(created["next_fire_at"])
    response = api.patch(f"/api/v1/calendars/{calendar.pk}", {"holidays": [first.date().isoformat()]}, format="json")
    assert response.status_code == 200, response.content
    moved = datetime.fromisoformat(api.get(f"/api/v1/schedules/{created['id']}").json()["next_fire_at"])
    assert moved > first
    assert moved.date() != first.date()


def test_changing_a_calendar_moves_each_of_its_schedules_by_its_own_rule_and_jitter(api: APIClient) -> None:
    calendar = CalendarFactory(country="", weekend=[5, 6])
    plain, jittered, other = (
        _create(api, timezone="UTC", calendar=str(calendar.pk), calendar_policy="SKIP", **fields).json()
        for fields in ({}, {"jitter_seconds": 600}, {"trigger": {"type": "CRON", "expression": "30 4 * * *"}})
    )
    first = datetime.fromisoformat(plain["next_fire_at"])
    response = api.patch(f"/api/v1/calendars/{calendar.pk}", {"holidays": [first.date().isoformat()]}, format="json")
    assert response.status_code == 200, response.content

    moved = {
        created["id"]: datetime.fromisoformat(api.get(f"/api/v1/schedules/{created['id']}").json()["next_fire_at"])
        for created in (plain, jittered, other)
    }
    assert moved[plain["id"]].date() != first.date()
    assert moved[plain["id"]].time() == time(2, 0)
    offset = datetime.fromisoformat(jittered["next_fire_at"]) - first  # the schedule's fixed jitter
    assert moved[jittered["id"]] == moved[plain["id"]] + offset
    assert moved[other["id"]].time() == time(4, 30)
    assert moved[other["id"]].date() != first.date()


def test_a_business_day_schedule_is_created_with_its_calendar(api: APIClient) -> None:
    calendar = CalendarFactory(country="DE", subdivision="BY")
    response = _create(
        api,
        timezone="Europe/Berlin",
        calendar=str(calendar.pk),
        trigger={"type": "BUSINESS_DAY", "day": -1, "at": "18:00"},
    )
    assert response.status_code == 201, response.content
    local = datetime.fromisoformat(response.json()["next_fire_at"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (18, 0)
    assert local.weekday() < 5


def test_next_fire_at_includes_the_schedules_jitter(api: APIClient) -> None:
    plain = _create(api, timezone="UTC").json()
    jittered = _create(api, timezone="UTC", jitter_seconds=3600).json()
    offset = datetime.fromisoformat(jittered["next_fire_at"]) - datetime.fromisoformat(plain["next_fire_at"])
    schedule = Schedule.objects.get(pk=jittered["id"])
    from schedules.services import _jitter

    assert offset == _jitter(schedule)
    patched = api.patch(f"/api/v1/schedules/{plain['id']}", {"jitter_seconds": 3600}, format="json").json()
    assert datetime.fromisoformat(patched["next_fire_at"]) == datetime.fromisoformat(plain["next_fire_at"]) + _jitter(
        Schedule.objects.get(pk=plain["id"])
    )


def test_resuming_through_patch_recomputes_next_fire_at_from_now(api: APIClient) -> None:
    schedule = ScheduleFactory(enabled=False, next_fire_at=datetime(2020, 1, 1, tzinfo=UTC), timezone="UTC")
    response = api.patch(f"/api/v1/schedules/{schedule.pk}", {"enabled": True}, format="json")
    assert response.status_code == 200, response.content
    assert datetime.fromisoformat(response.json()["next_fire_at"]) > timezone.now()
