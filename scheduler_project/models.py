"""Shared model bases and the domain-event outbox."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True, editable=False)

    class Meta:
        abstract = True


class TenantModel(TimeStampedModel):
    """A resource owned by one tenant. Reads go through tenant-scoped selectors only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: it leads the composite indexes of every concrete model.
    tenant_id = models.CharField(max_length=64, editable=False)

    class Meta:
        abstract = True


class OutboxEvent(models.Model):
    """A domain event, written in the same transaction as the change it reports.

    A relay publishes unpublished rows to the bus in ``id`` order and stamps ``published_at``;
    without a bus the rows stay here, queryable. ``event_id`` lets consumers de-duplicate.
    """

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant_id = models.CharField(max_length=64, blank=True, editable=False)
    type = models.CharField(max_length=100)
    aggregate_type = models.CharField(max_length=50)
    aggregate_id = models.CharField(max_length=64)
    data = models.JSONField(default=dict)
    occurred_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # The W3C trace context of the operation that recorded the event, when it was traced
    # (scheduler_project/tracing.py): the envelope's traceparent/tracestate (docs/events.md).
    traceparent = models.CharField(max_length=128, blank=True, default="", editable=False)
    tracestate = models.CharField(max_length=512, blank=True, default="", editable=False)

    class Meta:
        db_table = "outbox_event"
        ordering = ["id"]
        indexes = [
            # The relay's query: the oldest unpublished events.
            models.Index(
                fields=["id"],
                name="outbox_unpublished_idx",
                condition=models.Q(published_at__isnull=True),
            ),
            models.Index(fields=["tenant_id", "aggregate_type", "aggregate_id", "id"], name="outbox_aggregate_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.aggregate_type}:{self.aggregate_id}"
