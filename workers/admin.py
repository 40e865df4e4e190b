from __future__ import annotations

from django.contrib import admin

from workers.models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "hostname",
        "status",
        "active_runs",
        "concurrency",
        "queues",
        "last_heartbeat_at",
        "version",
    ]
    list_filter = ["status"]
    search_fields = ["name", "hostname", "tenant_id", "id"]
    readonly_fields = ["id", "started_at", "last_heartbeat_at", "active_runs", "created_at", "updated_at"]
