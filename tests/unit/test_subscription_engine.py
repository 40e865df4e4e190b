"""The pure side of event subscriptions: NATS subject patterns, filters, decoding, identity."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler_project.config import BASE_DIR
from subscriptions.engine import (
    EVENT_MAX_BYTES,
    InboundEvent,
    MalformedEvent,
    decode_event,
    event_identity,
    filter_errors,
    filter_matches,
    idempotency_key,
    subject_covers,
    subject_errors,
    subject_matches,
    subjects_cover,
)


def test_engine_loads_without_django_or_nats() -> None:
    code = (
        "import sys, subscriptions.engine\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'nats', 'celery'})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


# --- subjects -----------------------------------------------------------------------------------

VALID_SUBJECTS = ["erp", "erp.invoice.created", "erp.*.created", "erp.>", "erp.*.*", "a-b.c_d.e:f.>", "scheduler.run.*"]
INVALID_SUBJECTS = {
    "empty": ("", "empty"),
    "full_wildcard": (">", "first token"),
    "leading_star": ("*.invoice", "first token"),
    "inbox": ("_INBOX.abc", "NATS itself"),
    "system": ("$JS.API.>", "NATS itself"),
    "gt_not_last": ("erp.>.created", "last token"),
    "partial_wildcard": ("erp.inv*", "stand alone"),
    "space": ("erp invoice", "letters"),
    "double_dot": ("erp..invoice", "single dots"),
    "leading_dot": (".erp", "single dots"),
    "trailing_dot": ("erp.", "single dots"),
    "too_long": ("e" * 256, "255"),
    "too_many_tokens": (".".join(["t"] * 17), "16 tokens"),
    "unicode": ("erp.rechnung.über", "letters"),
}


@pytest.mark.parametrize("subject", VALID_SUBJECTS)
def test_valid_subjects(subject: str) -> None:
    assert subject_errors(subject) == []


@pytest.mark.parametrize(("subject", "reason"), INVALID_SUBJECTS.values(), ids=list(INVALID_SUBJECTS))
def test_invalid_subjects(subject: str, reason: str) -> None:
    errors = subject_errors(subject)
    assert errors
    assert reason.lower() in " ".join(errors).lower()


MATCHES = {
    "literal": ("erp.invoice.created", "erp.invoice.created", True),
    "literal_other": ("erp.invoice.created", "erp.invoice.paid", False),
    "star_one_token": ("erp.*.created", "erp.invoice.created", True),
    "star_not_two_tokens": ("erp.*.created", "erp.invoice.x.created", False),
    "star_needs_a_token": ("erp.*", "erp", False),
    "gt_one_token": ("erp.>", "erp.invoice", True),
    "gt_many_tokens": ("erp.>", "erp.invoice.created.v2", True),
    "gt_needs_a_token": ("erp.>", "erp", False),
    "shorter_subject": ("erp.invoice.created", "erp.invoice", False),
    "longer_subject": ("erp.invoice", "erp.invoice.created", False),
    "prefix_is_no_token": ("erp.inv", "erp.invoice", False),
}


@pytest.mark.parametrize(("pattern", "subject", "expected"), MATCHES.values(), ids=list(MATCHES))
def test_subject_matches(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


COVERS = {
    "gt_covers_star": ("erp.>", "erp.*.created", True),
    "gt_covers_gt_deeper": ("erp.>", "erp.invoice.>", True),
    "gt_covers_itself": ("erp.>", "erp.>", True),
    "star_covers_literal": ("erp.*", "erp.invoice", True),
    "star_not_gt": ("erp.*", "erp.>", False),
    "literal_not_star": ("erp.invoice", "erp.*", False),
    "deeper_gt_not_shallower": ("erp.invoice.>", "erp.>", False),
    "gt_not_same_token_count": ("erp.invoice.>", "erp.invoice", False),
    "different_roots": ("crm.>", "erp.invoice", False),
}


@pytest.mark.parametrize(("pattern", "other", "expected"), COVERS.values(), ids=list(COVERS))
def test_subject_covers(pattern: str, other: str, expected: bool) -> None:
    assert subject_covers(pattern, other) is expected


def test_the_cover_keeps_only_the_broadest_patterns() -> None:
    assert subjects_cover(["erp.invoice.*", "erp.>", "crm.lead", "erp.>", "crm.*", "hr.a.b"]) == [
        "crm.*",
        "erp.>",
        "hr.a.b",
    ]


_token = st.sampled_from(["a", "b", "c"])
_pattern_token = st.sampled_from(["a", "b", "c", "*"])


@st.composite
def _patterns(draw: Any) -> str:
    tokens = [draw(_token), *draw(st.lists(_pattern_token, max_size=3))]
    if draw(st.booleans()):
        tokens.append(">")
    return ".".join(tokens)


@given(a=_patterns(), b=_patterns(), subject=st.lists(_token, min_size=1, max_size=6).map(".".join))
def test_covering_agrees_with_matching(a: str, b: str, subject: str) -> None:
    """If a covers b, every subject b matches, a matches too."""
    if subject_covers(a, b) and subject_matches(b, subject):
        assert subject_matches(a, subject)


@given(patterns=st.lists(_patterns(), max_size=6), subject=st.lists(_token, min_size=1, max_size=6).map(".".join))
def test_the_cover_receives_what_the_patterns_do(patterns: list[str], subject: str) -> None:
    cover = subjects_cover(patterns)
    assert any(subject_matches(p, subject) for p in patterns) == any(subject_matches(p, subject) for p in cover)
    # ... and no pattern of the cover is redundant
    assert not any(a != b and subject_covers(a, b) for a in cover for b in cover)


# --- filters ------------------------------------------------------------------------------------

EVENT = {
    "type": "erp.invoice.created",
    "data": {"kind": "invoice", "amount": 120, "ratio": 0.5, "paid": False, "note": None, "lines": [{"sku": "A-1"}]},
}

FILTERS = {
    "empty": ({}, True),
    "top_level": ({"type": "erp.invoice.created"}, True),
    "nested": ({"data.kind": "invoice"}, True),
    "all_must_hold": ({"type": "erp.invoice.created", "data.kind": "credit"}, False),
    "int_equals_float": ({"data.amount": 120.0}, True),
    "number_is_not_string": ({"data.amount": "120"}, False),
    "false_is_not_zero": ({"data.paid": 0}, False),
    "bool": ({"data.paid": False}, True),
    "null_present": ({"data.note": None}, True),
    "null_missing": ({"data.missing": None}, False),
    "missing": ({"data.kind.deeper": "x"}, False),
    "list_index": ({"data.lines.0.sku": "A-1"}, True),
    "list_index_out_of_range": ({"data.lines.1.sku": "A-1"}, False),
    "list_key": ({"data.lines.sku": "A-1"}, False),
    "case_sensitive": ({"data.kind": "Invoice"}, False),
}


@pytest.mark.parametrize(("conditions", "expected"), FILTERS.values(), ids=list(FILTERS))
def test_filter_matches(conditions: dict[str, Any], expected: bool) -> None:
    assert filter_errors(conditions) == {}
    assert filter_matches(conditions, EVENT) is expected


BAD_FILTERS = {
    "not_object": ([["type", "x"]], "", "object"),
    "object_value": ({"data": {"kind": "invoice"}}, "data", "exactly"),
    "list_value": ({"data.kind": ["invoice", "credit"]}, "data.kind", "exactly"),
    "empty_path": ({"": "x"}, "", "single dots"),
    "double_dot": ({"data..kind": "x"}, "data..kind", "single dots"),
    "long_string": ({"type": "x" * 1025}, "type", "1024"),
    "long_path": ({"p" * 201: 1}, "p" * 201, "200"),
    "deep_path": ({".".join(["p"] * 17): 1}, ".".join(["p"] * 17), "16 segments"),
    "infinite": ({"ratio": float("inf")}, "ratio", "finite"),
    "too_many": ({f"k{i}": i for i in range(17)}, "", "16 conditions"),
}


@pytest.mark.parametrize(("conditions", "path", "reason"), BAD_FILTERS.values(), ids=list(BAD_FILTERS))
def test_bad_filters(conditions: Any, path: str, reason: str) -> None:
    errors = filter_errors(conditions)
    assert path in errors, errors
    assert reason in " ".join(errors[path])


# --- decoding -----------------------------------------------------------------------------------

MALFORMED = {
    "too_large": (b'{"a": "' + b"x" * EVENT_MAX_BYTES + b'"}', "too_large"),
    "not_utf8": (b'{"a": "\xff"}', "not_utf8"),
    "not_json": (b"invoice created", "not_json"),
    "truncated": (b'{"a": ', "not_json"),
    "nan": (b'{"a": NaN}', "not_json"),
    "infinity": (b'{"a": -Infinity}', "not_json"),
    "list": (b"[1, 2]", "not_object"),
    "string": (b'"x"', "not_object"),
    "null": (b"null", "not_object"),
    "empty": (b"", "not_json"),
    "deep": (b'{"a": ' * 33 + b"1" + b"}" * 33, "too_deep"),
    "very_deep": (b"[" * 30_000 + b"]" * 30_000, "too_deep"),
    "nul": (b'{"a": "x\\u0000"}', "unstorable"),
    "nul_in_key": (b'{"a\\u0000": 1}', "unstorable"),
    "lone_surrogate": (b'{"a": "\\ud800"}', "unstorable"),
    "huge_number": (b'{"a": 1e400}', "unstorable"),
}


@pytest.mark.parametrize(("data", "reason"), MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_events(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        decode_event(data)
    assert caught.value.reason == reason


def test_an_event_at_the_limits_is_accepted() -> None:
    event = {"a": "x" * (EVENT_MAX_BYTES - 10)}
    data = json.dumps(event).encode()
    assert len(data) <= EVENT_MAX_BYTES
    assert decode_event(data) == event
    assert decode_event(b'{"a": ' * 31 + b"[1]" + b"}" * 31)  # 32 levels with the list


# --- identity -----------------------------------------------------------------------------------

SUB = "0f3a6c1e-1111-4222-8333-944445555666"


def test_identity_prefers_the_message_id() -> None:
    message = InboundEvent("erp.x", b"{}", {"Nats-Msg-Id": "m-1"}, stream="ERP", sequence=7)
    assert event_identity(message, {"specversion": "1.0", "id": "ce-1"}) == "msg:m-1"


def test_identity_of_a_cloudevent_is_its_source_and_id() -> None:
    message = InboundEvent("erp.x", b"{}", {}, stream="ERP", sequence=7)
    assert event_identity(message, {"specversion": "1.0", "source": "/erp", "id": "ce-1"}) == "ce:/erp#ce-1"
    # An "id" without "specversion" is just a field of the payload.
    assert event_identity(message, {"id": "ce-1"}) == "js:ERP:7"


def test_identity_without_ids_is_a_hash_of_subject_and_body() -> None:
    same = event_identity(InboundEvent("erp.x", b'{"a": 1}'), {"a": 1})
    assert same == event_identity(InboundEvent("erp.x", b'{"a": 1}'), {"a": 1})
    assert same != event_identity(InboundEvent("erp.y", b'{"a": 1}'), {"a": 1})
    assert same.startswith("sha256:")


@pytest.mark.parametrize(
    "identity",
    ["msg:" + "m" * 300, "msg:naïve", "msg:a\x00b", "msg:tab\there"],
    ids=["long", "non_ascii", "nul", "tab"],
)
def test_keys_that_would_not_fit_or_store_are_hashed(identity: str) -> None:
    key = idempotency_key(SUB, identity)
    assert len(key) <= 200
    assert key.startswith(f"event:{SUB}:sha256:")
    assert key == idempotency_key(SUB, identity)


def test_a_short_key_is_readable() -> None:
    assert idempotency_key(SUB, "msg:m-1") == f"event:{SUB}:msg:m-1"
