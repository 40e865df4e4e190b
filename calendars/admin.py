from __future__ import annotations

from typing import ClassVar

from django.contrib import admin

from calendars.models import Calendar, CalendarDate
from scheduler_project.admin_mixins import ReadOnlyThroughServicesAdmin


class CalendarDateInline(admin.TabularInline):
    model = CalendarDate
    extra = 0
    fields: ClassVar[tuple[str, ...]] = ("date", "kind", "name")
    readonly_fields = fields


@admin.register(Calendar)
class CalendarAdmin(ReadOnlyThroughServicesAdmin, admin.ModelAdmin):
    list_display = ["name", "tenant_id", "country", "subdivision", "market", "weekend", "updated_at"]
    list_filter = ["country", "market"]
    search_fields = ["name", "tenant_id", "id"]
    readonly_fields = ["id", "tenant_id", "created_at", "updated_at"]
    inlines = [CalendarDateInline]


@admin.register(CalendarDate)
class CalendarDateAdmin(ReadOnlyThroughServicesAdmin, admin.ModelAdmin):
    """Custom holidays and working days across calendars."""

    list_display = ["date", "kind", "name", "calendar"]
    list_filter = ["kind"]
    search_fields = ["name", "calendar__name", "calendar__tenant_id"]
    list_select_related = ["calendar"]
    date_hierarchy = "date"
