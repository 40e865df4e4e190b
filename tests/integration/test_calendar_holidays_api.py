"""``GET /api/v1/calendars/{id}/holidays``: a calendar's non-working days, on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient

from calendars.engine import MAX_RANGE_DAYS
from calendars.models import Calendar, CalendarDateKind
from scheduler_project.api import scopes
from tests.factories import OTHER_TENANT, CalendarDateFactory, CalendarFactory

pytestmark = pytest.mark.django_db


def url(calendar: Calendar | str, **query: str) -> str:
    pk = calendar.pk if isinstance(calendar, Calendar) else calendar
    text = "&".join(f"{name}={value}" for name, value in query.items())
    return f"/api/v1/calendars/{pk}/holidays" + (f"?{text}" if text else "")


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    return body


@pytest.fixture
def bavaria() -> Calendar:
    """Bavaria with a named and an unnamed custom holiday and a working Christmas Saturday."""
    calendar = CalendarFactory(name="Bavaria", country="DE", subdivision="BY")
    CalendarDateFactory(calendar=calendar, date=date(2027, 12, 24), name="Christmas Eve")
    CalendarDateFactory(calendar=calendar, date=date(2027, 12, 31), name="")
    CalendarDateFactory(calendar=calendar, date=date(2027, 12, 25), kind=CalendarDateKind.WORKING_DAY, name="Stock")
    return calendar


def test_lists_every_non_working_day_with_reason_and_kind(api: APIClient, bavaria: Calendar) -> None:
    response = api.get(url(bavaria, **{"from": "2027-12-20", "to": "2028-01-09"}))

    assert response.status_code == 200, response.content
    assert response.json() == {
        "calendar": str(bavaria.pk),
        "from": "2027-12-20",
        "to": "2028-01-09",
        "days": [
            {"date": "2027-12-24", "reason": "Christmas Eve", "kind": "CUSTOM_HOLIDAY"},
            # 2027-12-25, Christmas Day on a Saturday, is a custom working day: not listed.
            {"date": "2027-12-26", "reason": "Second Day of Christmas", "kind": "HOLIDAY"},
            {"date": "2027-12-31", "reason": "Company holiday", "kind": "CUSTOM_HOLIDAY"},
            {"date": "2028-01-01", "reason": "New Year's Day", "kind": "HOLIDAY"},
            {"date": "2028-01-02", "reason": "Weekend (Sunday)", "kind": "WEEKEND"},
            {"date": "2028-01-06", "reason": "Epiphany", "kind": "HOLIDAY"},
            {"date": "2028-01-08", "reason": "Weekend (Saturday)", "kind": "WEEKEND"},
            {"date": "2028-01-09", "reason": "Weekend (Sunday)", "kind": "WEEKEND"},
        ],
    }


@pytest.mark.parametrize(
    ("fields", "day", "reason"),
    [
        ({"country": "", "market": "NYSE"}, "2027-03-26", "Good Friday"),
        ({"country": "US", "subdivision": "CA"}, "2027-03-31", "Cesar Chavez Day"),
        ({"country": "DE", "subdivision": "BE"}, "2027-03-08", "Women's Day"),
    ],
    ids=["nyse_good_friday", "california_cesar_chavez_day", "berlin_womens_day"],
)
def test_holidays_of_markets_and_subdivisions(api: APIClient, fields: dict[str, str], day: str, reason: str) -> None:
    calendar = CalendarFactory(**fields)
    response = api.get(url(calendar, **{"from": day, "to": day}))
    assert response.status_code == 200, response.content
    assert response.json()["days"] == [{"date": day, "reason": reason, "kind": "HOLIDAY"}]


def test_a_friday_saturday_weekend(api: APIClient) -> None:
    calendar = CalendarFactory(country="", weekend=[4, 5])
    response = api.get(url(calendar, **{"from": "2027-05-06", "to": "2027-05-09"}))
    assert [(d["date"], d["reason"]) for d in response.json()["days"]] == [
        ("2027-05-07", "Weekend (Friday)"),
        ("2027-05-08", "Weekend (Saturday)"),
    ]


def test_a_range_without_non_working_days_is_empty(api: APIClient, bavaria: Calendar) -> None:
    response = api.get(url(bavaria, **{"from": "2027-05-03", "to": "2027-05-05"}))
    assert response.status_code == 200
    assert response.json()["days"] == []


def test_to_defaults_to_a_year_after_from(api: APIClient, bavaria: Calendar) -> None:
    body = api.get(url(bavaria, **{"from": "2027-06-01"})).json()
    assert (body["from"], body["to"]) == ("2027-06-01", "2028-05-31")
    assert {"date": "2027-12-24", "reason": "Christmas Eve", "kind": "CUSTOM_HOLIDAY"} in body["days"]


def test_from_defaults_to_today_in_the_service_time_zone(api: APIClient, bavaria: Calendar) -> None:
    zone = ZoneInfo(settings.DEFAULT_TZ)
    before = timezone.localdate(timezone=zone)
    body = api.get(url(bavaria)).json()
    after = timezone.localdate(timezone=zone)  # the request may straddle midnight
    start = date.fromisoformat(body["from"])
    assert start in {before, after}
    assert body["to"] == str(start + timedelta(days=365))


def test_the_last_representable_day(api: APIClient, bavaria: Calendar) -> None:
    """The default `to` would overflow the date range; it stops at 9999-12-31 (a Friday)."""
    body = api.get(url(bavaria, **{"from": "9999-12-25"})).json()
    assert (body["from"], body["to"]) == ("9999-12-25", "9999-12-31")
    assert [d["date"] for d in body["days"]] == ["9999-12-25", "9999-12-26"]


def test_the_longest_range_is_accepted(api: APIClient, bavaria: Calendar) -> None:
    end = date(2027, 1, 1) + timedelta(days=MAX_RANGE_DAYS - 1)
    response = api.get(url(bavaria, **{"from": "2027-01-01", "to": str(end)}))
    assert response.status_code == 200, response.content
    assert len(response.json()["days"]) > 300


def test_reads_the_calendar_and_its_dates_in_two_queries(
    api: APIClient, bavaria: Calendar, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(2):  # the calendar, its prefetched dates
        response = api.get(url(bavaria, **{"from": "2027-12-01", "to": "2027-12-31"}))
    assert response.status_code == 200


def test_the_answer_follows_a_change_of_the_calendar(api: APIClient, bavaria: Calendar) -> None:
    query = {"from": "2027-12-24", "to": "2027-12-24"}
    assert api.get(url(bavaria, **query)).json()["days"][0]["reason"] == "Christmas Eve"
    response = api.patch(f"/api/v1/calendars/{bavaria.pk}", {"holidays": []}, format="json")
    assert response.status_code == 200, response.content
    assert api.get(url(bavaria, **query)).json()["days"] == []


# --- tenants ---------------------------------------------------------------------------------


def test_each_tenant_sees_only_its_own_calendar(api: APIClient, other_api: APIClient, bavaria: Calendar) -> None:
    theirs = CalendarFactory(tenant_id=OTHER_TENANT, name="Bavaria", country="DE", subdivision="BY")
    CalendarDateFactory(calendar=theirs, date=date(2027, 12, 24), name="Globex closing day")
    query = {"from": "2027-12-24", "to": "2027-12-24"}

    assert api.get(url(bavaria, **query)).json()["days"][0]["reason"] == "Christmas Eve"
    assert other_api.get(url(theirs, **query)).json()["days"][0]["reason"] == "Globex closing day"
    for client, foreign in ((api, theirs), (other_api, bavaria)):
        body = problem(client.get(url(foreign, **query)), 404)
        assert str(foreign.pk) not in str(body)
        assert "closing day" not in str(body)
        assert "Christmas Eve" not in str(body)


def test_read_scope_is_enough(client_for: Callable[..., APIClient], bavaria: Calendar) -> None:
    assert client_for(scope=scopes.READ).get(url(bavaria)).status_code == 200
    assert client_for(scope=scopes.WORKER).get(url(bavaria)).status_code == 403


# --- bad input -------------------------------------------------------------------------------

BAD_QUERIES: dict[str, tuple[str, str, str]] = {
    "from_garbage": ("from=soon", "from", "YYYY-MM-DD"),
    "from_month_13": ("from=2027-13-01", "from", "YYYY-MM-DD"),
    "from_february_30": ("from=2027-02-30", "from", "YYYY-MM-DD"),
    "from_basic_format": ("from=20271224", "from", "YYYY-MM-DD"),
    "from_with_time": ("from=2027-12-24T00:00:00", "from", "YYYY-MM-DD"),
    "from_empty": ("from=", "from", "YYYY-MM-DD"),
    "from_year_0": ("from=0000-01-01", "from", "YYYY-MM-DD"),
    "to_garbage": ("from=2027-01-01&to=later", "to", "YYYY-MM-DD"),
    "to_before_from": ("from=2027-05-06&to=2027-05-05", "to", "before from"),
    "range_over_the_cap": (f"from=2027-01-01&to={date(2027, 1, 1) + timedelta(days=MAX_RANGE_DAYS)}", "to", "capped"),
    "to_before_today_without_from": ("to=2000-01-01", "to", "before from"),
    "unknown_parameter": ("from=2027-01-01&until=2027-02-01", "until", "unknown"),
    "page_is_unknown": ("page=2", "page", "unknown"),
    "format_is_unknown": ("format=json", "format", "unknown"),
    "from_twice": ("from=2027-01-01&from=2027-02-01", "from", "once"),
}


@pytest.mark.parametrize(("query", "field", "reason"), list(BAD_QUERIES.values()), ids=list(BAD_QUERIES))
def test_bad_query_is_400_naming_the_parameter(
    api: APIClient, bavaria: Calendar, query: str, field: str, reason: str
) -> None:
    body = problem(api.get(f"{url(bavaria)}?{query}"), 400)
    assert field in body["errors"], body
    assert reason.lower() in " ".join(body["errors"][field]).lower(), body


def test_a_bad_query_is_400_before_the_calendar_is_looked_up(api: APIClient) -> None:
    foreign = CalendarFactory(tenant_id=OTHER_TENANT)
    body = problem(api.get(f"{url(foreign)}?from=soon"), 400)
    assert list(body["errors"]) == ["from"]


def test_a_path_id_that_is_not_a_uuid_is_400(api: APIClient) -> None:
    body = problem(api.get(url("bavaria")), 400)
    assert "id" in body["errors"]


def test_a_missing_calendar_is_404(api: APIClient) -> None:
    problem(api.get(url("00000000-0000-0000-0000-000000000000")), 404)


def test_a_stored_source_the_library_no_longer_knows_is_409(api: APIClient) -> None:
    # Valid when saved; a `holidays` upgrade can drop a subdivision code. The row is written
    # past the service, as only such an upgrade would leave it.
    calendar = CalendarFactory(country="DE", subdivision="XX")
    body = problem(api.get(url(calendar)), 409)
    assert "subdivision" in body["errors"]
