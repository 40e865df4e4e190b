"""Admin behaviour shared by the tenant resources and the history tables (runs, outbox)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class ReadOnlyAdmin:
    """Rows an operator may look at but never add, edit or delete here (view permission only)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyThroughServicesAdmin(ReadOnlyAdmin):
    """Tenants own their jobs, schedules and calendars and change them through the API.

    Operators see every field here and steer through admin actions, which call the same
    services as the API, so no edit can skip validation or its domain event.
    """
