from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from scheduler_project.admin_mixins import ReadOnlyThroughServicesAdmin
from workers import services
from workers.models import Worker


@admin.register(Worker)
class WorkerAdmin(ReadOnlyThroughServicesAdmin, admin.ModelAdmin):
    """The fleet as its heartbeats report it: workers describe themselves, so the rows are
    read-only here; operators drain and undrain through the same services as the API — here
    also the shared workers, which no tenant may touch."""

    list_display = [
        "name",
        "hostname",
        "tenant_id",
        "status",
        "active_runs",
        "concurrency",
        "utilisation_percent",
        "queues",
        "capabilities",
        "last_heartbeat_at",
        "drained_at",
        "version",
    ]
    list_filter = ["status"]
    search_fields = ["name", "hostname", "tenant_id", "id"]
    readonly_fields = [f.name for f in Worker._meta.fields]
    actions = ["drain", "undrain"]

    @admin.display(description="utilisation")
    def utilisation_percent(self, worker: Worker) -> str:
        return f"{worker.utilisation:.0%}"

    @admin.action(description="Drain selected workers (they take no new runs; running ones finish)")
    def drain(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        changed = sum(worker.drained_at is None for worker in queryset)
        for worker in queryset:
            services.worker_drain(worker=worker)
        self.message_user(request, f"Drained {changed} worker(s).", messages.SUCCESS)

    @admin.action(description="Undrain selected workers (they take runs again)")
    def undrain(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        changed = sum(worker.drained_at is not None for worker in queryset)
        for worker in queryset:
            services.worker_undrain(worker=worker)
        self.message_user(request, f"Undrained {changed} worker(s).", messages.SUCCESS)
