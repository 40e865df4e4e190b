"""GET /schedules/{id}/explain: why a schedule did, will, or did not fire, on real PostgreSQL.

The endpoint explains as of the real clock, so each case builds its slots around ``now``:
daily rules fire twelve hours away from the current hour, far from the request's instant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from runs.models import RunKind, RunStatus
from scheduler_project.models import OutboxEvent
from schedules.models import Schedule
from schedules.services import _jitter
from tests.factories import OTHER_TENANT, CalendarDateFactory, CalendarFactory, RunFactory, ScheduleFactory

pytestmark = pytest.mark.django_db


def _explain(api: APIClient, schedule: Schedule, query: str = "") -> dict[str, Any]:
    response = api.get(f"/api/v1/schedules/{schedule.pk}/explain{query}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def _daily(now: datetime, days: int = 5) -> tuple[dict[str, Any], list[datetime]]:
    """A daily UTC rule twelve hours away from now, and its last ``days`` slots, oldest first."""
    hour = (now.hour + 12) % 24
    last = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if last > now:
        last -= timedelta(days=1)
    slots = [last - timedelta(days=n) for n in reversed(range(days))]
    return {"version": 1, "type": "CRON", "expression": f"0 {hour} * * *"}, slots


def _schedule(now: datetime, trigger: dict[str, Any], created_days_ago: int = 30, **fields: Any) -> Schedule:
    """A schedule created ``created_days_ago`` days before now (the factory stamps now)."""
    schedule = ScheduleFactory(trigger=trigger, timezone=fields.pop("timezone", "UTC"), **fields)
    Schedule.objects.filter(pk=schedule.pk).update(created_at=now - timedelta(days=created_days_ago))
    schedule.refresh_from_db()
    return schedule


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def test_fired_missed_and_overlap_skipped_slots(api: APIClient) -> None:
    now = timezone.now()
    trigger, slots = _daily(now)
    schedule = _schedule(now, trigger, overlap_policy="SKIP")
    fired = RunFactory(schedule=schedule, job=schedule.job, scheduled_for=slots[0], status=RunStatus.SUCCEEDED)
    missed = RunFactory(
        schedule=schedule,
        job=schedule.job,
        scheduled_for=slots[1],
        status=RunStatus.MISSED,
        reason=f"coalesced into the run of {slots[2].isoformat()}",
    )
    skipped = RunFactory(
        schedule=schedule,
        job=schedule.job,
        scheduled_for=slots[2],
        status=RunStatus.SKIPPED,
        reason="the previous run is still active (overlap policy SKIP)",
    )
    backfilled = RunFactory(
        schedule=schedule, job=schedule.job, scheduled_for=slots[3], kind=RunKind.BACKFILL, status=RunStatus.FAILED
    )
    manual = RunFactory(
        schedule=schedule, job=schedule.job, scheduled_for=slots[3] + timedelta(hours=1), kind=RunKind.MANUAL
    )

    body = _explain(api, schedule)

    last = body["last"]
    assert [_at(entry["slot"]) for entry in last] == slots
    assert [entry["outcome"] for entry in last] == ["fired", "missed", "skipped_overlap", "fired", "not_recorded"]
    assert last[0]["run"] == {"id": str(fired.pk), "kind": "SCHEDULED", "status": "SUCCEEDED"}
    assert last[1]["run"]["id"] == str(missed.pk)
    assert "misfire policy" in last[1]["reason"]
    assert "coalesced into the run of" in last[1]["reason"]
    assert last[2]["run"]["id"] == str(skipped.pk)
    assert "overlap policy" in last[2]["reason"]
    assert "still active" in last[2]["reason"]
    assert last[3]["run"] == {"id": str(backfilled.pk), "kind": "BACKFILL", "status": "FAILED"}
    assert last[3]["reason"].startswith("Backfilled")
    assert last[4]["run"] is None
    assert "No run recorded" in last[4]["reason"]
    # Manual runs are no slots: listed apart.
    assert [run["id"] for run in body["manual_runs"]] == [str(manual.pk)]
    assert str(manual.pk) not in str(last)
    assert _at(body["last_since"]) < slots[0]

    assert body["state"]["code"] == "active"
    assert body["next"]["overlap"]["policy"] == "SKIP"
    assert body["next"]["misfire"] == {
        "policy": "RUN_ONCE",
        "grace_seconds": 300,
        "description": body["next"]["misfire"]["description"],
    }
    assert "MISSED" in body["next"]["misfire"]["description"]
    assert [_at(t) for t in body["next"]["fire_times"]] == [slots[-1] + timedelta(days=n) for n in range(1, 6)]
    assert body["next"]["jitter"] is None


def test_slots_carry_the_local_offset_and_count_is_honoured(api: APIClient) -> None:
    now = timezone.now()
    schedule = _schedule(now, {"version": 1, "type": "CRON", "expression": "0 */6 * * *"}, timezone="Asia/Kolkata")
    body = _explain(api, schedule, "?count=12")
    assert len(body["last"]) == 12
    assert len(body["next"]["fire_times"]) == 12
    instants = [datetime.fromisoformat(entry["slot"]) for entry in body["last"]]
    assert instants == sorted(instants)
    assert all(instant.utcoffset() == timedelta(hours=5, minutes=30) for instant in instants)
    assert all(instant <= now + timedelta(seconds=5) for instant in instants)
    assert datetime.fromisoformat(body["now"]).utcoffset() == timedelta(hours=5, minutes=30)
    assert all(entry["outcome"] == "not_recorded" for entry in body["last"])


def test_a_custom_holiday_under_skip_is_a_calendar_skip(api: APIClient) -> None:
    now = timezone.now()
    trigger, slots = _daily(now)
    calendar = CalendarFactory(country="", weekend=[])
    CalendarDateFactory(calendar=calendar, date=slots[2].date(), name="Founders' Day")
    upcoming = slots[-1] + timedelta(days=2)
    CalendarDateFactory(calendar=calendar, date=upcoming.date(), name="Company outing")
    schedule = _schedule(now, trigger, calendar=calendar, calendar_policy="SKIP")

    body = _explain(api, schedule)

    entry = next(e for e in body["last"] if _at(e["slot"]) == slots[2])
    assert entry["outcome"] == "skipped_calendar"
    assert "Founders' Day" in entry["reason"]
    assert "SKIP" in entry["reason"]
    assert entry["moved_to"] is None
    assert entry["run"] is None
    assert [_at(e["slot"]) for e in body["last"]] == slots  # the rule's slots, skipped one included

    [skip] = body["next"]["calendar_skips"]
    assert _at(skip["slot"]) == upcoming
    assert skip["day"] == upcoming.date().isoformat()
    assert skip["reason"] == "Company outing"
    assert skip["moved_to"] is None
    assert body["next"]["calendar_skips_complete"] is True
    assert upcoming not in [_at(t) for t in body["next"]["fire_times"]]


def test_next_business_day_says_where_the_slot_moved(api: APIClient) -> None:
    now = timezone.now()
    _, slots = _daily(now, days=3)
    holiday = slots[0]  # three days back at most
    weekday = (holiday.weekday() + 1) % 7  # cron counts Sunday = 0
    trigger = {"version": 1, "type": "CRON", "expression": f"0 {holiday.hour} * * {weekday}"}
    calendar = CalendarFactory(country="", weekend=[])
    CalendarDateFactory(calendar=calendar, date=holiday.date(), name="Founders' Day")
    schedule = _schedule(now, trigger, calendar=calendar, calendar_policy="NEXT_BUSINESS_DAY")
    moved = holiday + timedelta(days=1)
    run = RunFactory(schedule=schedule, job=schedule.job, scheduled_for=moved, status=RunStatus.SUCCEEDED)

    body = _explain(api, schedule)

    by_slot = {_at(e["slot"]): e for e in body["last"]}
    skipped = by_slot[holiday]
    assert skipped["outcome"] == "skipped_calendar"
    assert "NEXT_BUSINESS_DAY" in skipped["reason"]
    assert _at(skipped["moved_to"]) == moved
    assert "Founders' Day" in skipped["reason"]
    landed = by_slot[moved]  # no slot of the weekly rule: the moved fire, with its run
    assert landed["outcome"] == "fired"
    assert landed["run"]["id"] == str(run.pk)
    assert landed["moved_from"] == holiday.date().isoformat()
    assert "Moved from" in landed["reason"]
    # The weekly rule's earlier slots (a week apart) fill the rest of `last`.
    assert [_at(e["slot"]) for e in body["last"]][-2:] == [holiday, moved]


def test_next_business_day_ahead_is_listed_with_its_landing(api: APIClient) -> None:
    now = timezone.now()
    trigger, slots = _daily(now)
    upcoming = slots[-1] + timedelta(days=2)
    calendar = CalendarFactory(country="", weekend=[])
    CalendarDateFactory(calendar=calendar, date=upcoming.date(), name="Company outing")
    schedule = _schedule(now, trigger, calendar=calendar, calendar_policy="NEXT_BUSINESS_DAY")

    skip = _explain(api, schedule)["next"]["calendar_skips"][0]
    assert _at(skip["slot"]) == upcoming
    assert _at(skip["moved_to"]) == upcoming + timedelta(days=1)
    assert "moves it to" in skip["message"]


def test_paused_slots_from_the_schedules_history(api: APIClient) -> None:
    now = timezone.now()
    trigger, slots = _daily(now)
    schedule = _schedule(now, trigger, created_days_ago=10)
    assert api.post(f"/api/v1/schedules/{schedule.pk}/disable").status_code == 200
    paused_at = slots[2] - timedelta(hours=1)
    OutboxEvent.objects.filter(aggregate_id=str(schedule.pk), type="scheduler.schedule.disabled").update(
        occurred_at=paused_at
    )

    body = _explain(api, schedule)

    assert body["state"]["code"] == "paused"
    assert "enabled is false" in body["state"]["message"]
    assert [e["outcome"] for e in body["last"]] == ["not_recorded", "not_recorded", "paused", "paused", "paused"]
    assert "paused" in body["last"][2]["reason"]
    assert any("resumed" in note for note in body["notes"])
    assert len(body["next"]["fire_times"]) == 5  # what it would fire if resumed


def test_a_paused_schedule_without_history_is_paused_since_its_last_change(api: APIClient) -> None:
    now = timezone.now()
    trigger, slots = _daily(now)
    schedule = _schedule(now, trigger, enabled=False)
    Schedule.objects.filter(pk=schedule.pk).update(updated_at=slots[3] - timedelta(hours=1))

    outcomes = [e["outcome"] for e in _explain(api, schedule)["last"]]
    assert outcomes == ["not_recorded", "not_recorded", "not_recorded", "paused", "paused"]


def test_slots_before_the_schedule_existed_say_so(api: APIClient) -> None:
    now = timezone.now()
    trigger, slots = _daily(now)
    schedule = _schedule(now, trigger, created_days_ago=0)
    Schedule.objects.filter(pk=schedule.pk).update(created_at=slots[3] + timedelta(hours=1))

    last = _explain(api, schedule)["last"]
    assert [e["outcome"] for e in last] == ["not_recorded"] * 5
    assert all("created later" in e["reason"] for e in last[:4])
    assert "created later" not in last[4]["reason"]


def test_an_exhausted_one_shot(api: APIClient) -> None:
    now = timezone.now()
    run_at = (now - timedelta(days=2)).replace(microsecond=0)
    schedule = _schedule(now, {"version": 1, "type": "ONE_SHOT", "run_at": run_at.isoformat()}, created_days_ago=3)
    run = RunFactory(schedule=schedule, job=schedule.job, scheduled_for=run_at, status=RunStatus.SUCCEEDED)

    body = _explain(api, schedule)

    assert body["state"]["code"] == "exhausted"
    assert "one-shot" in body["state"]["message"]
    [slot] = body["last"]
    assert slot["outcome"] == "fired"
    assert slot["run"]["id"] == str(run.pk)
    assert _at(slot["slot"]) == run_at
    assert body["next"]["fire_times"] == []
    assert body["next"]["calendar_skips"] == []


def test_not_started_yet(api: APIClient) -> None:
    now = timezone.now()
    trigger, _ = _daily(now)
    start = (now + timedelta(days=10)).replace(microsecond=0)
    schedule = _schedule(now, trigger, start_at=start)

    body = _explain(api, schedule)

    assert body["state"]["code"] == "not_started"
    assert "start_at" in body["state"]["message"]
    assert body["last"] == []  # no slot of the rule lies before its start
    first = _at(body["next"]["fire_times"][0])
    assert start <= first < start + timedelta(days=1)


def test_ended(api: APIClient) -> None:
    now = timezone.now()
    trigger, slots = _daily(now)
    schedule = _schedule(now, trigger, end_at=slots[2] + timedelta(hours=1))

    body = _explain(api, schedule)

    assert body["state"]["code"] == "ended"
    assert [_at(e["slot"]) for e in body["last"]][-1] == slots[2]
    assert body["next"]["fire_times"] == []


def test_an_unreadable_trigger_is_explained_not_refused(api: APIClient) -> None:
    schedule = ScheduleFactory(trigger={"version": 1, "type": "CRON", "expression": "0 2 32 * *"})
    body = _explain(api, schedule)
    assert body["state"]["code"] == "invalid"
    assert "trigger.expression" in body["state"]["errors"]
    assert body["next"]["fire_times"] == []
    assert body["notes"]


def test_jitter_and_an_overdue_slot(api: APIClient) -> None:
    now = timezone.now()
    trigger, slots = _daily(now)
    schedule = _schedule(now, trigger, jitter_seconds=600)
    jitter = _jitter(schedule)
    # The beat stopped before the newest slot: it is still due.
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=slots[-1] + jitter)

    body = _explain(api, schedule)

    assert body["state"]["code"] == "active"
    assert "not dispatched" in body["state"]["message"]
    assert "beat" in body["state"]["message"]
    assert "not dispatched by a beat yet" in body["last"][-1]["reason"]
    assert body["next"]["jitter"]["seconds"] == int(jitter.total_seconds())
    assert body["next"]["jitter"]["max_seconds"] == 600


def test_fixed_delay_lists_its_runs(api: APIClient) -> None:
    now = timezone.now()
    schedule = _schedule(now, {"version": 1, "type": "FIXED_DELAY", "delay_seconds": 3600})
    runs = [RunFactory(schedule=schedule, job=schedule.job, scheduled_for=now - timedelta(hours=h)) for h in (3, 2, 1)]
    body = _explain(api, schedule)
    assert [e["run"]["id"] for e in body["last"]] == [str(run.pk) for run in runs]
    assert any("FIXED_DELAY" in note for note in body["notes"])


@pytest.mark.parametrize(
    "expression",
    ["* * * * * *", "0 0 1 1 *", "* * * * *"],
    ids=["every_second", "yearly", "every_minute"],
)
def test_the_look_back_is_bounded(api: APIClient, expression: str) -> None:
    now = timezone.now()
    schedule = _schedule(now, {"version": 1, "type": "CRON", "expression": expression}, created_days_ago=3000)
    body = _explain(api, schedule, "?count=50")
    assert _at(body["last_since"]) >= now - timedelta(days=367)
    assert len(body["last"]) <= 50
    if expression != "0 0 1 1 *":
        assert len(body["last"]) == 50


def test_a_run_for_an_instant_the_trigger_no_longer_has(api: APIClient) -> None:
    now = timezone.now()
    trigger, slots = _daily(now)
    schedule = _schedule(now, trigger)
    old = RunFactory(schedule=schedule, job=schedule.job, scheduled_for=slots[-1] - timedelta(minutes=30))
    entry = next(e for e in _explain(api, schedule)["last"] if e["run"])
    assert entry["run"]["id"] == str(old.pk)
    assert "trigger was changed" in entry["reason"]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("?count=0", "count"),
        ("?count=51", "count"),
        ("?count=abc", "count"),
        ("?count=1&count=2", "count"),
        ("?x=1", "x"),
        ("?after=2027-01-01T00:00:00Z", "after"),
    ],
    ids=["zero", "over_50", "not_a_number", "repeated", "unknown", "after_is_not_a_parameter"],
)
def test_bad_query_is_400_naming_the_parameter(api: APIClient, query: str, name: str) -> None:
    schedule = ScheduleFactory()
    response = api.get(f"/api/v1/schedules/{schedule.pk}/explain{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert name in response.json()["errors"]


def test_a_path_id_that_is_not_a_uuid_is_400(api: APIClient) -> None:
    response = api.get("/api/v1/schedules/not-a-uuid/explain")
    assert response.status_code == 400
    assert "id" in response.json()["errors"]


def test_another_tenants_schedule_is_404(api: APIClient, other_api: APIClient) -> None:
    foreign = ScheduleFactory(tenant_id=OTHER_TENANT, name="Globex nightly")
    response = api.get(f"/api/v1/schedules/{foreign.pk}/explain")
    assert response.status_code == 404
    assert "Globex" not in response.content.decode()
    assert other_api.get(f"/api/v1/schedules/{foreign.pk}/explain").status_code == 200


def test_read_scope_suffices(client_for: Any) -> None:
    schedule = ScheduleFactory()
    assert client_for(scope="scheduler:read").get(f"/api/v1/schedules/{schedule.pk}/explain").status_code == 200


def test_times_in_a_dst_zone_carry_their_own_offset(api: APIClient) -> None:
    now = timezone.now()
    schedule = _schedule(now, {"version": 1, "type": "CRON", "expression": "0 12 * * *"}, timezone="Europe/Berlin")
    body = _explain(api, schedule, "?count=50")
    berlin = ZoneInfo("Europe/Berlin")
    for value in [e["slot"] for e in body["last"]] + body["next"]["fire_times"]:
        instant = datetime.fromisoformat(value)
        assert instant.utcoffset() == instant.astimezone(berlin).utcoffset()
        assert instant.astimezone(berlin).hour == 12
