from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from scheduler_project.admin_mixins import ReadOnlyAdmin
from scheduler_project.models import OutboxEvent
from scheduler_project.relay import outbox_relay_all
from scheduler_project.selectors import outbox_backlog


class PublishedFilter(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Waiting for the relay"), ("yes", "Published")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> QuerySet[OutboxEvent]:
        if self.value() == "no":
            return queryset.filter(published_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(published_at__isnull=False)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """The outbox is an append-only log the relay reads: deleting or editing a row here would
    lose or alter an event consumers have not seen yet. The list's title shows the backlog."""

    list_display = [
        "id",
        "type",
        "tenant_id",
        "aggregate_type",
        "aggregate_id",
        "occurred_at",
        "published_at",
        "publish_attempts",
    ]
    list_filter = [PublishedFilter, "type", "aggregate_type"]
    search_fields = ["event_id", "tenant_id", "aggregate_id"]
    date_hierarchy = "occurred_at"
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    actions = ["publish_now"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        backlog = outbox_backlog()
        relay = "no NATS_URL: events stay here" if backlog.relay == "off" else backlog.describe()
        title = f"Outbox events — {relay}"
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @admin.action(description="Publish every waiting event now, oldest first (whatever is selected: order matters)")
    def publish_now(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        if not settings.NATS_URL:
            self.message_user(request, "NATS_URL is not set: there is no bus to publish to.", messages.WARNING)
            return
        result = outbox_relay_all(max_batches=50)
        if result.error:
            self.message_user(request, f"Published {result.published} events, then: {result.error}", messages.ERROR)
        elif result.busy:
            self.message_user(request, "Another relay is publishing right now; it will get to them.", messages.INFO)
        else:
            self.message_user(
                request, f"Published {result.published} events; {outbox_backlog().describe()}.", messages.SUCCESS
            )
