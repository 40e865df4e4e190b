"""Inbound events, pure: NATS subject patterns, payload filters, decoding and identity.

No Django, Celery or NATS client here (a unit test proves it), so matching can be tested and
benchmarked alone.

**Subjects** follow NATS: tokens separated by ``.``; ``*`` stands for exactly one token, ``>``
(last token only) for one or more. A subscription's subject is refused when its first token is a
wildcard (no subscription listens to the whole bus), when it reaches into NATS's own namespaces
(``$JS``, ``$SYS``, ... and ``_INBOX`` replies), or when a token holds anything but letters,
digits, ``_``, ``-`` and ``:``.

**Filters** are a JSON object of exact-match conditions on the decoded event, keyed by a dotted
path: ``{"type": "erp.invoice.created", "data.kind": "invoice", "data.lines.0.sku": "A-1"}``.
All conditions must hold. A path walks object keys, and list indices written as digits; a key
holding a dot cannot be addressed. A value is a string, a number, a boolean or null, compared
with its type (``1`` matches ``1`` and ``1.0``, never ``"1"`` or ``true``); null matches a field
that is present and null. A missing field never matches. An empty filter matches every event.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SUBJECT_MAX_LENGTH = 255
SUBJECT_MAX_TOKENS = 16
_LITERAL_TOKEN = re.compile(r"[A-Za-z0-9_:\-]+")
# Request/reply inboxes: replies to someone else's request, never events.
RESERVED_FIRST_TOKENS = frozenset({"_INBOX"})

FILTER_MAX_CONDITIONS = 16
FILTER_PATH_MAX_LENGTH = 200
FILTER_PATH_MAX_SEGMENTS = 16
FILTER_STRING_MAX_LENGTH = 1024

#: The largest event body accepted (bytes on the wire): the cap of a run payload in the API.
EVENT_MAX_BYTES = 64 * 1024
#: Nesting of objects and lists in an event, as in the API's JSON fields.
EVENT_MAX_DEPTH = 32
#: ``Run.idempotency_key``'s length.
IDEMPOTENCY_KEY_MAX_LENGTH = 200

#: Why an event was refused, as counted in the metrics.
MALFORMED_REASONS = ("too_large", "not_utf8", "not_json", "not_object", "too_deep", "unstorable")


# --- Subjects -----------------------------------------------------------------------------------


def subject_errors(subject: str) -> list[str]:
    """What is wrong with ``subject`` as a subscription's subject pattern; empty when valid."""
    if not subject:
        return ["Must not be empty."]
    if len(subject) > SUBJECT_MAX_LENGTH:
        return [f"Must be at most {SUBJECT_MAX_LENGTH} characters."]
    tokens = subject.split(".")
    if len(tokens) > SUBJECT_MAX_TOKENS:
        return [f"Must have at most {SUBJECT_MAX_TOKENS} tokens."]
    if any(not token for token in tokens):
        return ["Tokens are separated by single dots: no empty token, no leading or trailing dot."]
    first = tokens[0]
    if first in ("*", ">"):
        return ["The first token must be literal: a subscription cannot listen to the whole bus."]
    if first in RESERVED_FIRST_TOKENS or first.startswith("$"):
        return [f"{first!r} subjects belong to NATS itself."]
    errors = []
    for position, token in enumerate(tokens):
        if token == ">":
            if position != len(tokens) - 1:
                errors.append("'>' may only be the last token.")
        elif token != "*" and not _LITERAL_TOKEN.fullmatch(token):
            errors.append(
                f"Token {token!r}: letters, digits, '_', '-' and ':' only; '*' and '>' stand alone as a token."
            )
    return errors


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether the concrete ``subject`` a message arrived on matches ``pattern``."""
    wanted, got = pattern.split("."), subject.split(".")
    for position, token in enumerate(wanted):
        if token == ">":
            return len(got) > position
        if position >= len(got) or (token != "*" and token != got[position]):
            return False
    return len(wanted) == len(got)


def subject_covers(pattern: str, other: str) -> bool:
    """Whether every subject ``other`` matches is also matched by ``pattern``."""
    wanted, given = pattern.split("."), other.split(".")
    for position, token in enumerate(wanted):
        if token == ">":
            return len(given) > position
        if position >= len(given) or given[position] == ">":
            return False
        if token != "*" and token != given[position]:
            return False
    return len(wanted) == len(given)


def subjects_cover(patterns: Iterable[str]) -> list[str]:
    """The fewest patterns that receive what ``patterns`` do, sorted: a pattern another one
    covers is left out, so that no message arrives twice on overlapping subscriptions."""
    unique = sorted(set(patterns))
    return [p for p in unique if not any(q != p and subject_covers(q, p) for q in unique)]


def first_token(subject: str) -> str:
    return subject.split(".", 1)[0]


# --- Filters ------------------------------------------------------------------------------------


def filter_errors(conditions: Any) -> dict[str, list[str]]:
    """What is wrong with a filter, keyed ``""`` for the filter as a whole and by the condition's
    path otherwise; empty when valid."""
    if not isinstance(conditions, dict):
        return {"": ["Must be a JSON object of dotted paths to values."]}
    if len(conditions) > FILTER_MAX_CONDITIONS:
        return {"": [f"Must have at most {FILTER_MAX_CONDITIONS} conditions."]}
    errors: dict[str, list[str]] = {}
    for path, value in conditions.items():
        messages = _path_errors(path) + _value_errors(value)
        if messages:
            errors[path] = messages
    return errors


def _path_errors(path: str) -> list[str]:
    if len(path) > FILTER_PATH_MAX_LENGTH:
        return [f"The path must be at most {FILTER_PATH_MAX_LENGTH} characters."]
    segments = path.split(".")
    if any(not segment for segment in segments):
        return ["The path must be keys separated by single dots (e.g. data.kind)."]
    if len(segments) > FILTER_PATH_MAX_SEGMENTS:
        return [f"The path must have at most {FILTER_PATH_MAX_SEGMENTS} segments."]
    return []


def _value_errors(value: Any) -> list[str]:
    if isinstance(value, dict | list):
        return ["Must be a string, number, boolean or null: a condition compares one value exactly."]
    if isinstance(value, float) and not math.isfinite(value):
        return ["Numbers must be finite."]
    if isinstance(value, str) and len(value) > FILTER_STRING_MAX_LENGTH:
        return [f"A string must be at most {FILTER_STRING_MAX_LENGTH} characters."]
    return []


_MISSING = object()


def _lookup(document: Any, path: str) -> Any:
    value = document
    for segment in path.split("."):
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isdigit() and segment.isascii() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _same(expected: Any, actual: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), everything else by type and value."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return bool(expected == actual)
    return type(expected) is type(actual) and expected == actual


def filter_matches(conditions: Mapping[str, Any], event: Any) -> bool:
    """Whether ``event`` (a decoded JSON document) meets every condition."""
    for path, expected in conditions.items():
        actual = _lookup(event, path)
        if actual is _MISSING or not _same(expected, actual):
            return False
    return True


# --- Decoding -----------------------------------------------------------------------------------


class MalformedEvent(ValueError):
    """An event that cannot become a run's payload. ``reason`` is one of MALFORMED_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_event(data: bytes, *, max_bytes: int = EVENT_MAX_BYTES) -> dict[str, Any]:
    """The JSON object in ``data``, or :class:`MalformedEvent` saying why not: larger than
    ``max_bytes``, not UTF-8, not JSON (NaN and Infinity included), not an object, nested deeper
    than EVENT_MAX_DEPTH, or holding what PostgreSQL's jsonb cannot store (a NUL character, an
    unpaired surrogate, a number out of the float range)."""
    if len(data) > max_bytes:
        raise MalformedEvent("too_large", f"{len(data)} bytes, more than {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEvent("not_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise MalformedEvent("too_deep", f"nested more than {EVENT_MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise MalformedEvent("not_json", str(exc)[:200]) from None
    if not isinstance(value, dict):
        raise MalformedEvent("not_object", f"a JSON {type(value).__name__}, not an object")
    problem = _unstorable(value)
    if problem is not None:
        raise MalformedEvent(*problem)
    return value


def _unstorable(value: Any) -> tuple[str, str] | None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > EVENT_MAX_DEPTH:
                return "too_deep", f"nested more than {EVENT_MAX_DEPTH} levels"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "unstorable", "a string holds the NUL character"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "unstorable", "a string holds an unpaired UTF-16 surrogate"
        elif isinstance(item, float) and not math.isfinite(item):
            return "unstorable", "a number is out of range"
    return None


# --- Identity -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundEvent:
    """A message as it arrived: its subject, raw body and headers, and for a JetStream message
    the stream and stream sequence it is stored under."""

    subject: str
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    stream: str | None = None
    sequence: int | None = None


def event_identity(message: InboundEvent, event: Mapping[str, Any] | None) -> str:
    """What makes two deliveries the same event, best first: the ``Nats-Msg-Id`` header (what
    JetStream de-duplicates by), the CloudEvents ``source`` and ``id``, the JetStream stream and
    sequence (the same on every redelivery), else a hash of subject and body (so two identical
    messages on one subject count as one event)."""
    msg_id = message.headers.get("Nats-Msg-Id", "")
    if msg_id:
        return f"msg:{msg_id}"
    if event is not None and "specversion" in event and isinstance(event.get("id"), str) and event["id"]:
        source = event.get("source")
        return f"ce:{source if isinstance(source, str) else ''}#{event['id']}"
    if message.stream and message.sequence:
        return f"js:{message.stream}:{message.sequence}"
    digest = hashlib.sha256(message.subject.encode() + b"\n" + message.data).hexdigest()
    return f"sha256:{digest}"


def idempotency_key(subscription_id: str, identity: str) -> str:
    """``event:<subscription>:<identity>``: the key of the MANUAL run an event triggers, so a
    redelivered event finds its run instead of starting another. An identity that would make the
    key too long, or that is not printable ASCII, is replaced by its SHA-256."""
    key = f"event:{subscription_id}:{identity}"
    if len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH and key.isascii() and key.isprintable():
        return key
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()
    return f"event:{subscription_id}:sha256:{digest}"
