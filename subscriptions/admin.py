from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from scheduler_project.admin_mixins import ReadOnlyThroughServicesAdmin
from subscriptions import services
from subscriptions.models import EventSubscription


@admin.register(EventSubscription)
class EventSubscriptionAdmin(ReadOnlyThroughServicesAdmin, admin.ModelAdmin):
    """Which events trigger which schedule, and what became of them: matched (with the last run)
    and rejected (with the last reason). Tenants change them through the API; operators stop and
    restart them here."""

    list_display = [
        "subject",
        "tenant_id",
        "schedule",
        "enabled",
        "matched_count",
        "last_matched_at",
        "rejected_count",
        "last_rejected_at",
    ]
    list_filter = ["enabled"]
    search_fields = ["subject", "tenant_id", "id", "schedule__name"]
    list_select_related = ["schedule"]
    readonly_fields = [
        "id",
        "tenant_id",
        "matched_count",
        "last_matched_at",
        "last_run",
        "rejected_count",
        "last_rejected_at",
        "last_rejection",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["schedule"]
    actions = ["enable", "disable"]

    @admin.action(description="Enable selected subscriptions")
    def enable(self, request: HttpRequest, queryset: QuerySet[EventSubscription]) -> None:
        for subscription in queryset:
            services.subscription_set_enabled(subscription=subscription, enabled=True)
        self.message_user(request, f"Enabled {queryset.count()} subscription(s).", messages.SUCCESS)

    @admin.action(description="Disable selected subscriptions")
    def disable(self, request: HttpRequest, queryset: QuerySet[EventSubscription]) -> None:
        for subscription in queryset:
            services.subscription_set_enabled(subscription=subscription, enabled=False)
        self.message_user(request, f"Disabled {queryset.count()} subscription(s).", messages.SUCCESS)
