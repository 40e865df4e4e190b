"""Serializer bases shared by every app's API: strict input, bounded JSON, aware date-times."""

from __future__ import annotations

import json
import math
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32


class InputSerializer(serializers.Serializer):
    """Input that names a field this endpoint does not take is refused, not silently dropped."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = {name for name, f in self.fields.items() if not f.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown or read-only field."] for name in unknown}, code="unknown_field"
                )
        return super().to_internal_value(data)


def _unstorable(value: Any, max_depth: int) -> str | None:
    """Why PostgreSQL's jsonb would refuse ``value`` (or choke on it), as an error code; else None.

    jsonb takes no NUL character and no unpaired surrogate (both valid in JSON text), JSON has
    no NaN or infinity (``1e400`` reads as one), and a deep nesting overflows the recursion of
    every encoder on the way. Walked without recursion, for the last reason.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return "too_deep"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "nul"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "surrogate"
        elif isinstance(item, float) and not math.isfinite(item):
            return "not_finite"
    return None


class JSONObjectField(serializers.JSONField):
    """A JSON object (not a list or scalar) of bounded size and depth that PostgreSQL can store."""

    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "too_large": "Must serialise to at most {max_bytes} bytes of JSON.",
        "too_deep": "Must not nest objects and lists more than {max_depth} levels deep.",
        "nul": "Must not contain the NUL character (\\u0000).",
        "surrogate": "Must not contain unpaired UTF-16 surrogates.",
        "not_finite": "Numbers must be finite.",
    }

    def __init__(self, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        problem = _unstorable(data, self.max_depth)
        if problem:
            self.fail(problem, max_depth=self.max_depth)
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        if len(json.dumps(value, separators=(",", ":")).encode()) > self.max_bytes:
            self.fail("too_large", max_bytes=self.max_bytes)
        return value


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 instant that must carry its UTC offset: a naive time is ambiguous here."""

    default_error_messages = {"naive": "Must include a UTC offset (for example 2027-01-01T09:00:00+01:00)."}

    def to_internal_value(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                self.fail("naive")
        return super().to_internal_value(value)


class TimeZoneField(serializers.CharField):
    default_error_messages = {"unknown": "Unknown IANA time zone {value!r}."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a directory
            self.fail("unknown", value=value)
        return value


class StringListField(serializers.ListField):
    def __init__(self, *, max_items: int = 50, max_length: int = 100, **kwargs: Any) -> None:
        kwargs.setdefault("child", serializers.CharField(max_length=max_length))
        kwargs.setdefault("max_length", max_items)
        super().__init__(**kwargs)


class QuerySerializer(InputSerializer):
    """Validates a query string: unknown parameters are refused, and so is one given twice
    (a second ``count=`` would otherwise win quietly). Build it with :meth:`from_query`."""

    @classmethod
    def from_query(cls, query: Any) -> Any:
        repeated = {name: ["Give this parameter once."] for name, values in query.lists() if len(values) > 1}
        if repeated:
            raise serializers.ValidationError(repeated)
        serializer = cls(data={name: query[name] for name in query})
        serializer.is_valid(raise_exception=True)
        return serializer
