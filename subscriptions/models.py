"""Event subscriptions: a NATS subject (and a filter on the event) that triggers a schedule."""

from __future__ import annotations

from django.db import models

from scheduler_project.models import TenantModel


class EventSubscription(TenantModel):
    """Each event on ``subject`` that meets ``filter`` runs ``schedule`` now (a MANUAL run whose
    payload carries the event). Subject and filter are checked by ``subscriptions.engine``.

    The counters are kept by the consumer (``subscriptions.services.subscription_handle``) and
    only ever written with ``update_fields``, so an API change never overwrites them.
    """

    schedule = models.ForeignKey("schedules.Schedule", on_delete=models.CASCADE, related_name="event_subscriptions")
    subject = models.CharField(max_length=255)
    filter = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    # Events that matched subject and filter and started a run (a redelivery is not counted twice).
    matched_count = models.PositiveBigIntegerField(default=0, editable=False)
    last_matched_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run = models.ForeignKey(
        "runs.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    # Events on its subject it could not act on (malformed, schedule paused, trigger failed).
    rejected_count = models.PositiveBigIntegerField(default=0, editable=False)
    last_rejected_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_rejection = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant_id", "created_at"], name="subscription_tenant_idx"),
            # The consumer's queries: the subjects to listen to, and the candidates for a message
            # (enabled rows whose subject starts with the message's first token).
            models.Index(
                fields=["subject"],
                name="subscription_enabled_idx",
                condition=models.Q(enabled=True),
                opclasses=["varchar_pattern_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} -> schedule {self.schedule_id}"
