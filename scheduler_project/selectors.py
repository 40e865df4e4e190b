"""Reads of the project's own tables: the outbox backlog (for /readyz, the admin and metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from scheduler_project.models import OutboxEvent


@dataclass(frozen=True)
class OutboxBacklog:
    """The events waiting for the relay. ``publish_attempts`` and ``last_error`` are the oldest
    waiting event's: the relay publishes in order, so that event is the one holding up the rest."""

    relay: str  # "nats", or "off" without NATS_URL (events then stay in the outbox)
    pending: int
    oldest_occurred_at: datetime | None
    oldest_age_seconds: float | None
    publish_attempts: int
    last_error: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "relay": self.relay,
            "pending": self.pending,
            "oldest_occurred_at": self.oldest_occurred_at.isoformat() if self.oldest_occurred_at else None,
            "oldest_age_seconds": self.oldest_age_seconds,
            "publish_attempts": self.publish_attempts,
            "last_error": self.last_error,
        }

    def describe(self) -> str:
        if not self.pending:
            return "no events waiting"
        text = f"{self.pending} events waiting, the oldest for {self.oldest_age_seconds:.0f} s"
        if self.last_error:
            text += f" ({self.publish_attempts} attempts; last error: {self.last_error})"
        return text


def outbox_backlog(*, now: datetime | None = None) -> OutboxBacklog:
    """How many events wait to be published and how long the oldest has waited. Both queries
    read the partial index of unpublished events: their cost follows the backlog, not the
    published history."""
    unpublished = OutboxEvent.objects.filter(published_at__isnull=True)
    oldest = unpublished.order_by("id").values("occurred_at", "publish_attempts", "last_error").first()
    relay = "nats" if settings.NATS_URL else "off"
    if oldest is None:
        return OutboxBacklog(relay, 0, None, None, 0, "")
    age = ((now or timezone.now()) - oldest["occurred_at"]).total_seconds()
    return OutboxBacklog(
        relay=relay,
        pending=unpublished.count(),
        oldest_occurred_at=oldest["occurred_at"],
        oldest_age_seconds=round(max(age, 0.0), 3),
        publish_attempts=oldest["publish_attempts"],
        last_error=oldest["last_error"],
    )
