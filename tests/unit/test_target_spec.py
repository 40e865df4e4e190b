"""A job's target document: normalised when valid, every problem named when not."""

from __future__ import annotations

from typing import Any

import pytest

from runs.targets.spec import InvalidTarget, parse_target


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"type": "HTTP", "url": "https://analytics.internal/kpi"},
            {"type": "HTTP", "url": "https://analytics.internal/kpi", "method": "POST", "headers": {}},
        ),
        (
            {"type": "HTTP", "url": "http://h/x", "method": "put", "headers": {"X-Team": "bi"}},
            {"type": "HTTP", "url": "http://h/x", "method": "PUT", "headers": {"X-Team": "bi"}},
        ),
        ({"type": "EVENT", "subject": "analytics.kpi.rebuild"}, {"type": "EVENT", "subject": "analytics.kpi.rebuild"}),
        ({"type": "QUEUE", "queue": "reports"}, {"type": "QUEUE", "queue": "reports"}),
        ({"type": "QUEUE", "task": "reports.build"}, {"type": "QUEUE", "task": "reports.build"}),
        (
            {"type": "QUEUE", "task": "reports.build", "queue": "reports"},
            {"type": "QUEUE", "task": "reports.build", "queue": "reports"},
        ),
    ],
    ids=["http_defaults", "http_full", "event", "queue_message", "queue_task", "queue_task_on_queue"],
)
def test_valid_targets_are_normalised(document: dict[str, Any], expected: dict[str, Any]) -> None:
    assert parse_target(document) == expected


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ("https://x", "type"),
        ({"url": "https://x"}, "type"),
        ({"type": "FTP"}, "type"),
        ({"type": "HTTP"}, "url"),
        ({"type": "HTTP", "url": "ftp://x/y"}, "url"),
        ({"type": "HTTP", "url": "/relative"}, "url"),
        ({"type": "HTTP", "url": "https://x", "method": "TRACE"}, "method"),
        ({"type": "HTTP", "url": "https://x", "headers": ["a"]}, "headers"),
        ({"type": "HTTP", "url": "https://x", "headers": {"Bad Name": "v"}}, "headers.Bad Name"),
        ({"type": "HTTP", "url": "https://x", "headers": {"Idempotency-Key": "v"}}, "headers.Idempotency-Key"),
        ({"type": "HTTP", "url": "https://x", "headers": {"X-A": "a\r\nInjected: 1"}}, "headers.X-A"),
        ({"type": "HTTP", "url": "https://x", "subject": "a"}, "subject"),
        ({"type": "EVENT"}, "subject"),
        ({"type": "EVENT", "subject": "a.*"}, "subject"),
        ({"type": "EVENT", "subject": "has space"}, "subject"),
        ({"type": "QUEUE"}, "queue"),
        ({"type": "QUEUE", "queue": "bad queue"}, "queue"),
        ({"type": "QUEUE", "task": "not a task"}, "task"),
    ],
    ids=[
        "not_object",
        "missing_type",
        "unknown_type",
        "http_no_url",
        "http_ftp",
        "http_relative",
        "http_method",
        "http_headers_list",
        "http_header_name",
        "http_reserved_header",
        "http_header_injection",
        "http_unknown_field",
        "event_no_subject",
        "event_wildcard",
        "event_space",
        "queue_nothing",
        "queue_bad_name",
        "queue_bad_task",
    ],
)
def test_invalid_targets_name_the_field(document: Any, path: str) -> None:
    with pytest.raises(InvalidTarget) as error:
        parse_target(document)
    assert path in error.value.errors
