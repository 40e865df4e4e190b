from __future__ import annotations

from django.contrib import admin

from scheduler_project.models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "tenant_id", "aggregate_type", "aggregate_id", "occurred_at", "published_at"]
    list_filter = ["type", "aggregate_type"]
    search_fields = ["event_id", "tenant_id", "aggregate_id"]
    date_hierarchy = "occurred_at"
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
