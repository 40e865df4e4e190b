from __future__ import annotations

from typing import ClassVar

from django.contrib import admin

from runs.models import Run, RunAttempt
from scheduler_project.admin_mixins import ReadOnlyAdmin


class RunAttemptInline(admin.TabularInline):
    model = RunAttempt
    extra = 0
    can_delete = False
    fields: ClassVar[tuple[str, ...]] = (
        "series",
        "number",
        "worker_name",
        "started_at",
        "finished_at",
        "outcome",
        "response_status",
        "error_type",
        "error_message",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = [
        "id",
        "tenant_id",
        "job",
        "schedule",
        "kind",
        "scheduled_for",
        "status",
        "attempt",
        "worker",
        "finished_at",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["id", "tenant_id", "job__key", "schedule__name", "idempotency_key"]
    date_hierarchy = "scheduled_for"
    list_select_related = ["job", "schedule", "worker"]
    raw_id_fields = ["job", "schedule", "worker"]
    inlines = [RunAttemptInline]
    # The ledger is history: operators read it; changes go through run services (retry, cancel).
    readonly_fields = [f.name for f in Run._meta.fields]


@admin.register(RunAttempt)
class RunAttemptAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Every attempt across runs: find failures by error, response status or worker."""

    list_display = ["run", "series", "number", "worker_name", "started_at", "outcome", "response_status", "error_type"]
    list_filter = ["outcome", "response_status"]
    search_fields = ["run__id", "worker_name", "error_type", "error_message"]
    list_select_related = ["run"]
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in RunAttempt._meta.fields]
