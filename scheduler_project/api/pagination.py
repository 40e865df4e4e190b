"""Pagination: page numbers for most lists, a cursor for the (large) runs list.

A malformed ``page``, ``page_size`` or ``cursor`` is a 400 naming the parameter, never a
silent fall-back to the default.
"""

from __future__ import annotations

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request

MAX_PAGE_SIZE = 500


def _page_size(request: Request, default: int) -> int:
    raw = request.query_params.get("page_size")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise ValidationError({"page_size": [f"Must be an integer between 1 and {MAX_PAGE_SIZE}."]})
    return int(raw)


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        return _page_size(request, self.page_size)

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param, "1")
        if raw != "last" and not (raw.isdigit() and int(raw) >= 1):
            raise ValidationError({self.page_query_param: ["Must be a positive integer or 'last'."]})
        return raw


class RunCursorPagination(pagination.CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    # Newest slot first; the id breaks ties between runs of the same instant.
    ordering = ("-scheduled_for", "-id")

    def get_page_size(self, request: Request) -> int:
        return _page_size(request, self.page_size)

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound as exc:  # DRF's answer to a cursor it cannot read
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from exc
