from __future__ import annotations

from django.contrib import admin

from scheduler_project.admin_mixins import ReadOnlyAdmin
from scheduler_project.models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """The outbox is an append-only log the relay reads: deleting or editing a row here would
    lose or alter an event consumers have not seen yet."""

    list_display = ["id", "type", "tenant_id", "aggregate_type", "aggregate_id", "occurred_at", "published_at"]
    list_filter = ["type", "aggregate_type"]
    search_fields = ["event_id", "tenant_id", "aggregate_id"]
    date_hierarchy = "occurred_at"
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
