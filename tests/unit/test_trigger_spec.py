"""The trigger JSON contract: shape checks with field paths, and a lossless round trip."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedules.engine.errors import InvalidTrigger
from schedules.engine.spec import (
    SPEC_VERSION,
    CronSpec,
    FixedDelaySpec,
    OneShotSpec,
    RRuleSpec,
    dump_trigger,
    parse_trigger,
)

VALID = [
    ({"type": "CRON", "expression": "0 2 * * *"}, CronSpec("0 2 * * *")),
    ({"type": "CRON", "expression": "  */30   * * * * * "}, CronSpec("*/30 * * * * *")),
    (
        {
            "type": "RRULE",
            "rrule": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            "dtstart": "2027-01-01T18:00:00",
            "exdate": ["2027-06-30T18:00:00"],
            "rdate": [],
        },
        RRuleSpec("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "2027-01-01T18:00:00", (), ("2027-06-30T18:00:00",)),
    ),
    (
        {"type": "RRULE", "rrule": "DTSTART;TZID=Europe/Berlin:20270101T090000\nRRULE:FREQ=DAILY"},
        RRuleSpec("DTSTART;TZID=Europe/Berlin:20270101T090000\nRRULE:FREQ=DAILY"),
    ),
    ({"type": "FIXED_DELAY", "delay_seconds": 21600}, FixedDelaySpec(21600)),
    ({"type": "ONE_SHOT", "run_at": "2027-03-01T09:00:00+01:00"}, OneShotSpec("2027-03-01T09:00:00+01:00")),
    ({"type": "ONE_SHOT", "run_at": "2027-03-01T09:00:00"}, OneShotSpec("2027-03-01T09:00:00")),
    ({"version": 1, "type": "CRON", "expression": "0 2 * * *"}, CronSpec("0 2 * * *")),
]


@pytest.mark.parametrize(
    ("document", "expected"), VALID, ids=[d["type"].lower() + str(i) for i, (d, _) in enumerate(VALID)]
)
def test_valid_documents_parse(document: dict[str, Any], expected: Any) -> None:
    trigger = parse_trigger(document)
    assert trigger == expected
    assert parse_trigger(dump_trigger(trigger)) == trigger
    assert dump_trigger(trigger)["version"] == SPEC_VERSION


INVALID = [
    ("not_an_object", ["CRON"], ""),
    ("missing_type", {"expression": "0 2 * * *"}, "type"),
    ("unknown_type", {"type": "SOLAR"}, "type"),
    ("future_version", {"version": 2, "type": "CRON", "expression": "0 2 * * *"}, "version"),
    ("cron_missing_expression", {"type": "CRON"}, "expression"),
    ("cron_expression_not_text", {"type": "CRON", "expression": 5}, "expression"),
    ("cron_blank", {"type": "CRON", "expression": "   "}, "expression"),
    ("cron_four_fields", {"type": "CRON", "expression": "0 2 * *"}, "expression"),
    ("cron_seven_fields", {"type": "CRON", "expression": "0 0 2 * * * 2027"}, "expression"),
    ("cron_unknown_field", {"type": "CRON", "expression": "0 2 * * *", "timezone": "UTC"}, "timezone"),
    ("rrule_missing_rule", {"type": "RRULE", "dtstart": "2027-01-01T09:00:00"}, "rrule"),
    ("rrule_missing_dtstart", {"type": "RRULE", "rrule": "FREQ=DAILY"}, "dtstart"),
    (
        "rrule_dtstart_with_offset",
        {"type": "RRULE", "rrule": "FREQ=DAILY", "dtstart": "2027-01-01T09:00:00Z"},
        "dtstart",
    ),
    ("rrule_dtstart_garbage", {"type": "RRULE", "rrule": "FREQ=DAILY", "dtstart": "soon"}, "dtstart"),
    (
        "rrule_exdate_not_list",
        {"type": "RRULE", "rrule": "FREQ=DAILY", "dtstart": "2027-01-01T09:00:00", "exdate": "2027-01-02"},
        "exdate",
    ),
    (
        "rrule_exdate_item_bad",
        {"type": "RRULE", "rrule": "FREQ=DAILY", "dtstart": "2027-01-01T09:00:00", "exdate": ["x"]},
        "exdate.0",
    ),
    ("delay_missing", {"type": "FIXED_DELAY"}, "delay_seconds"),
    ("delay_text", {"type": "FIXED_DELAY", "delay_seconds": "60"}, "delay_seconds"),
    ("delay_bool", {"type": "FIXED_DELAY", "delay_seconds": True}, "delay_seconds"),
    ("delay_zero", {"type": "FIXED_DELAY", "delay_seconds": 0}, "delay_seconds"),
    ("delay_float", {"type": "FIXED_DELAY", "delay_seconds": 1.5}, "delay_seconds"),
    ("one_shot_missing", {"type": "ONE_SHOT"}, "run_at"),
    ("one_shot_garbage", {"type": "ONE_SHOT", "run_at": "tomorrow"}, "run_at"),
]


@pytest.mark.parametrize(("document", "path"), [(d, p) for _, d, p in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_documents_name_the_field(document: Any, path: str) -> None:
    with pytest.raises(InvalidTrigger) as error:
        parse_trigger(document)
    assert path in error.value.errors
    assert all(error.value.errors[path])


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidTrigger) as error:
        parse_trigger({"type": "RRULE", "rrule": 7, "dtstart": "x", "color": "red"})
    assert set(error.value.errors) == {"rrule", "dtstart", "color"}


local_datetimes = st.datetimes().map(lambda d: d.replace(microsecond=0).isoformat())
triggers = st.one_of(
    st.builds(CronSpec, st.sampled_from(["0 2 * * *", "*/5 * * * *", "0 0 9 * * MON-FRI"])),
    st.builds(
        RRuleSpec,
        st.sampled_from(["FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO", "FREQ=MONTHLY;BYMONTHDAY=-1"]),
        local_datetimes,
        st.lists(local_datetimes, max_size=3).map(tuple),
        st.lists(local_datetimes, max_size=3).map(tuple),
    ),
    st.builds(FixedDelaySpec, st.integers(min_value=1, max_value=366 * 86400)),
    st.builds(OneShotSpec, local_datetimes),
)


@given(triggers)
def test_round_trip_is_lossless(trigger: Any) -> None:
    assert parse_trigger(dump_trigger(trigger)) == trigger
