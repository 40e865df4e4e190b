from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from scheduler_project.admin_mixins import ReadOnlyAdmin, ReadOnlyThroughServicesAdmin
from schedules import services
from schedules.models import BeatLease, Job, Schedule


@admin.register(Job)
class JobAdmin(ReadOnlyThroughServicesAdmin, admin.ModelAdmin):
    list_display = [
        "key",
        "name",
        "tenant_id",
        "target_type",
        "queue",
        "max_attempts",
        "concurrency_limit",
        "updated_at",
    ]
    list_filter = ["backoff_strategy", "queue"]
    search_fields = ["key", "name", "tenant_id", "id"]
    readonly_fields = ["id", "tenant_id", "created_at", "updated_at"]
    ordering = ["tenant_id", "key"]

    @admin.display(description="target")
    def target_type(self, job: Job) -> str:
        return job.target_type


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyThroughServicesAdmin, admin.ModelAdmin):
    list_display = ["name", "tenant_id", "job", "trigger_text", "timezone", "enabled", "next_fire_at", "last_fired_at"]
    list_filter = ["enabled", "misfire_policy", "overlap_policy", "calendar_policy", "timezone"]
    search_fields = ["name", "tenant_id", "id", "job__key"]
    list_select_related = ["job"]
    readonly_fields = ["id", "tenant_id", "next_fire_at", "last_fired_at", "created_at", "updated_at"]
    raw_id_fields = ["job", "calendar"]
    actions = ["enable", "disable"]

    @admin.display(description="trigger")
    def trigger_text(self, schedule: Schedule) -> str:
        trigger: dict[str, Any] = schedule.trigger or {}
        detail = (
            trigger.get("expression") or trigger.get("rrule") or trigger.get("run_at") or trigger.get("delay_seconds")
        )
        return f"{trigger.get('type', '?')} {detail}"

    @admin.action(description="Enable (resume) selected schedules")
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            services.schedule_set_enabled(schedule=schedule, enabled=True)
        self.message_user(request, f"Enabled {queryset.count()} schedule(s).", messages.SUCCESS)

    @admin.action(description="Disable (pause) selected schedules")
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            services.schedule_set_enabled(schedule=schedule, enabled=False)
        self.message_user(request, f"Disabled {queryset.count()} schedule(s).", messages.SUCCESS)


@admin.register(BeatLease)
class BeatLeaseAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Which beat leads, since when, and how fresh its lease is."""

    list_display = ["name", "holder", "token", "acquired_at", "renewed_at", "expires_at", "lease_age"]
    readonly_fields = ["name", "holder", "token", "acquired_at", "renewed_at", "expires_at"]

    @admin.display(description="lease age")
    def lease_age(self, lease: BeatLease) -> str:
        if lease.renewed_at is None:
            return "-"
        return f"{(timezone.now() - lease.renewed_at).total_seconds():.1f} s"
