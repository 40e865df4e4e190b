"""The shape of a job's target: ``{"type": "HTTP" | "EVENT" | "QUEUE", ...}``.

Checked on every job write so that a worker never meets a target it cannot read. Pure
Python; the executing code for each target type lives beside this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
TARGET_TYPES = ("HTTP", "EVENT", "QUEUE")
MAX_HEADERS = 50
# NATS subject: dot-separated tokens of printable characters, no wildcards for publishing.
_SUBJECT = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
_TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers the service sets itself on every request; a job may not override them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "idempotency-key",
        "x-scheduler-run-id",
        "x-scheduler-timestamp",
        "x-scheduler-signature",
    }
)

_ALLOWED = {
    "HTTP": {"type", "url", "method", "headers"},
    "EVENT": {"type", "subject"},
    "QUEUE": {"type", "queue", "task"},
}


class InvalidTarget(ValueError):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


def parse_target(data: Any) -> dict[str, Any]:
    """Return the normalised target document or raise :class:`InvalidTarget`."""
    errors: dict[str, list[str]] = {}

    def add(path: str, message: str) -> None:
        errors.setdefault(path, []).append(message)

    if not isinstance(data, Mapping):
        raise InvalidTarget({"type": ["The target must be an object with a 'type'."]})
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _ALLOWED:  # a list or object is unhashable
        raise InvalidTarget({"type": [f"Must be one of {', '.join(TARGET_TYPES)}; got {kind!r}."]})
    for unknown in sorted(set(data) - _ALLOWED[kind]):
        add(str(unknown), f"Unknown field for a {kind} target.")
    target: dict[str, Any] = {"type": kind}

    if kind == "HTTP":
        url = data.get("url")
        if not isinstance(url, str) or not url:
            add("url", "This field is required and must be a string.")
        else:
            try:
                parts: SplitResult | None = urlsplit(url)
            except ValueError:  # "http://[::1" and the like
                parts = None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                add("url", "Must be an absolute http:// or https:// URL.")
            elif len(url) > 2000:
                add("url", "Must be at most 2000 characters.")
            target["url"] = url
        method = data.get("method", "POST")
        if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
            add("method", f"Must be one of {', '.join(HTTP_METHODS)}.")
        else:
            target["method"] = method.upper()
        headers = data.get("headers", {})
        if not isinstance(headers, Mapping):
            add("headers", "Must be an object of header names to string values.")
        elif len(headers) > MAX_HEADERS:
            add("headers", f"Must hold at most {MAX_HEADERS} headers.")
        else:
            for name, value in headers.items():
                if not _HEADER_NAME.match(str(name)):
                    add(f"headers.{name}", "Not a valid HTTP header name.")
                elif str(name).lower() in RESERVED_HEADERS:
                    add(f"headers.{name}", "Set by the scheduler itself; cannot be overridden.")
                elif not isinstance(value, str) or "\n" in value or "\r" in value or len(value) > 4096:
                    add(f"headers.{name}", "Must be a single-line string of at most 4096 characters.")
            target["headers"] = dict(headers)
    elif kind == "EVENT":
        subject = data.get("subject")
        if not isinstance(subject, str) or not _SUBJECT.match(subject) or len(subject) > 255:
            add("subject", "Must be a NATS subject such as 'analytics.kpi.rebuild' (no spaces or wildcards).")
        else:
            target["subject"] = subject
    else:
        # {"queue": q}: a plain message on broker queue q; {"task": t}: Celery task t by name,
        # on the default queue or on "queue" when both are given.
        queue, task = data.get("queue"), data.get("task")
        if queue is None and task is None:
            add("queue", "Give 'queue' (a broker queue), 'task' (a Celery task name), or both.")
        if queue is not None:
            if not isinstance(queue, str) or not _QUEUE_NAME.match(queue):
                add("queue", "Must be a queue name of letters, digits and . _ : - (at most 200).")
            else:
                target["queue"] = queue
        if task is not None:
            if not isinstance(task, str) or not _TASK_NAME.match(task) or len(task) > 200:
                add("task", "Must be a dotted Celery task name such as 'reports.build'.")
            else:
                target["task"] = task
    if errors:
        raise InvalidTarget(errors)
    return target
