from __future__ import annotations

from typing import ClassVar

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from runs import services
from runs.models import CANCELLABLE_STATUSES, DeadLetter, Run, RunAttempt
from scheduler_project.admin_mixins import ReadOnlyAdmin
from scheduler_project.errors import ApplicationError


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
        "latency_ms",
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
    actions = ["retry", "cancel"]

    @admin.action(description="Retry selected runs (FAILED, DEAD, CANCELLED) as a new attempt series")
    def retry(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        # The changelist's filters (status, kind, date, search) are the replay's filter.
        try:
            ids = services.runs_replay(runs=queryset)
        except ApplicationError as error:
            self.message_user(request, " ".join(m for ms in error.errors.values() for m in ms), messages.ERROR)
            return
        skipped = queryset.count() - len(ids)
        note = f"; {skipped} not FAILED, DEAD or CANCELLED left alone" if skipped else ""
        self.message_user(request, f"Retried {len(ids)} run(s){note}.", messages.SUCCESS)

    @admin.action(description="Cancel selected runs that have not started")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        cancelled = 0
        for run in queryset.filter(status__in=CANCELLABLE_STATUSES):
            try:
                services.run_cancel(run=run, reason="cancelled by an operator in the admin")
            except ApplicationError:  # started meanwhile
                continue
            cancelled += 1
        skipped = queryset.count() - cancelled
        note = f"; {skipped} already running or finished left alone" if skipped else ""
        self.message_user(request, f"Cancelled {cancelled} run(s){note}.", messages.SUCCESS)


@admin.register(RunAttempt)
class RunAttemptAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Every attempt across runs: find failures by error, response status or worker."""

    list_display = ["run", "series", "number", "worker_name", "started_at", "outcome", "response_status", "error_type"]
    list_filter = ["outcome", "response_status"]
    search_fields = ["run__id", "worker_name", "error_type", "error_message"]
    list_select_related = ["run"]
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in RunAttempt._meta.fields]


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Runs whose attempts ran out: their last error and payload. Replay from the run (retry)."""

    list_display = [
        "run",
        "tenant_id",
        "job",
        "series",
        "attempts",
        "error_type",
        "response_status",
        "created_at",
        "replayed_at",
    ]
    list_filter = ["error_type", "response_status", ("replayed_at", admin.EmptyFieldListFilter)]
    search_fields = ["run__id", "tenant_id", "job__key", "error_message"]
    list_select_related = ["run", "job"]
    raw_id_fields = ["run", "job"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
