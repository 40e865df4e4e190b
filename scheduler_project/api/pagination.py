"""Pagination: page numbers for most lists, a cursor for the (large) runs list.

A malformed ``page``, ``page_size`` or ``cursor`` is a 400 naming the parameter, never a
silent fall-back to the default.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Q
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.utils.urls import remove_query_param

MAX_PAGE_SIZE = 500


def _is_number(raw: str) -> bool:
    # str.isdigit() alone is true for "²", which int() refuses.
    return raw.isascii() and raw.isdigit()


def _page_size(request: Request, default: int) -> int:
    raw = request.query_params.get("page_size")
    if raw is None:
        return default
    if not _is_number(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
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
        if raw not in self.last_page_strings and not (_is_number(raw) and int(raw) >= 1):
            raise ValidationError({self.page_query_param: ["Must be a positive integer or 'last'."]})
        return super().get_page_number(request, paginator)  # turns "last" into the number


class RunCursorPagination(pagination.CursorPagination):
    """Keyset pagination on ``(scheduled_for, id)``, newest slot first.

    DRF's cursor keeps only the first ordering field as its position and steps through equal
    values with an offset. Runs share instants by the thousand (every schedule at 02:00), so
    that offset breaks: rows added at the same instant repeat or vanish between pages, the
    ``previous`` link lands elsewhere, and past DRF's offset cap (1000) a walk never ends.
    Here the position is the whole sort key, so every cursor names one row and the next page
    is simply the rows beyond it (``WHERE (scheduled_for, id) < (...)``, served by
    ``run_tenant_slot_idx``).
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    ordering = ("-scheduled_for", "-id")
    _SEPARATOR = "|"

    def get_page_size(self, request: Request) -> int:
        return _page_size(request, self.page_size)

    def get_ordering(self, request: Request, queryset: Any, view: Any) -> tuple[str, ...]:
        return self.ordering

    def decode_cursor(self, request: Request) -> Any:
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                self._parse_position(str(cursor.position))
        except (NotFound, ValueError) as exc:  # DRF's answer to a cursor it cannot read, or a bad key
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from exc
        return cursor

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.cursor = self.decode_cursor(request)
        reverse = bool(self.cursor and self.cursor.reverse)
        self._current = None if self.cursor is None or self.cursor.position is None else str(self.cursor.position)

        if reverse:  # both fields descend, so the reverse order ascends on both
            queryset = queryset.order_by(*(field.removeprefix("-") for field in self.ordering))
        else:
            queryset = queryset.order_by(*self.ordering)
        if self._current is not None:
            queryset = queryset.filter(self._beyond(self._current, reverse))
        results = list(queryset[: self.page_size + 1])
        self.page = results[: self.page_size]
        more = len(results) > self.page_size
        if reverse:
            self.page.reverse()
            self.has_next, self.has_previous = self._current is not None, more
        else:
            self.has_next, self.has_previous = more, self._current is not None
        self.display_page_controls = self.has_next or self.has_previous
        return self.page

    def get_next_link(self) -> str | None:
        if not self.has_next:
            return None
        if not self.page:  # nothing before a reverse cursor: start again from the top
            return remove_query_param(str(self.base_url), self.cursor_query_param)
        return self._link(self._position(self.page[-1]), reverse=False)

    def get_previous_link(self) -> str | None:
        if not self.has_previous:
            return None
        # With an empty page (nothing after a forward cursor) come back from the cursor itself.
        return self._link(self._position(self.page[0]) if self.page else self._current, reverse=True)

    def _link(self, position: str | None, *, reverse: bool) -> str:
        # The stubs type a position as int; DRF itself (and this class) stores strings.
        return self.encode_cursor(pagination.Cursor(offset=0, reverse=reverse, position=position))  # type: ignore[arg-type]

    def _position(self, run: Any) -> str:
        return f"{run.scheduled_for.isoformat()}{self._SEPARATOR}{run.pk}"

    def _parse_position(self, position: str) -> tuple[datetime, uuid.UUID]:
        when, _, pk = position.partition(self._SEPARATOR)
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None:
            raise ValueError("naive cursor position")
        return moment, uuid.UUID(pk)

    def _beyond(self, position: str, reverse: bool) -> Q:
        """Rows after ``position`` in the list's order (before it, for a reverse cursor)."""
        moment, pk = self._parse_position(position)
        if reverse:  # towards newer slots
            return Q(scheduled_for__gte=moment) & (Q(scheduled_for__gt=moment) | Q(id__gt=pk))
        # The redundant bound gives the planner an index condition on the slot column.
        return Q(scheduled_for__lte=moment) & (Q(scheduled_for__lt=moment) | Q(id__lt=pk))
