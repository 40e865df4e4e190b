"""A JSON parser that refuses oversized bodies before reading them whole."""

from __future__ import annotations

from typing import IO, Any, cast

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


class _LimitedStream:
    def __init__(self, stream: Any, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.seen = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(self.limit + 1 - self.seen if size < 0 else min(size, self.limit + 1 - self.seen))
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise PayloadTooLarge(f"Request body exceeds {self.limit} bytes.")
        return chunk


class LimitedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        if length and str(length).isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        try:
            return super().parse(cast(IO[Any], _LimitedStream(stream, limit)), media_type, parser_context)
        except RecursionError:
            # json raises RecursionError, not ValueError, on very deep nesting: still bad input.
            raise ParseError("JSON parse error - nested too deeply.") from None
