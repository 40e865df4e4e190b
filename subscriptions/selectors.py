"""Reads of event subscriptions: a tenant's (API), and what the consumer listens to."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from subscriptions.engine import first_token, subject_matches
from subscriptions.models import EventSubscription


def subscription_list(*, tenant_id: str) -> QuerySet[EventSubscription]:
    return EventSubscription.objects.filter(tenant_id=tenant_id).select_related("schedule")


def subscription_subjects() -> list[str]:
    """The distinct subject patterns of every enabled subscription (paused schedules included:
    their events are counted as rejected, so a tenant can see them arrive)."""
    return list(
        EventSubscription.objects.filter(enabled=True).order_by("subject").values_list("subject", flat=True).distinct()
    )


def subscription_candidates(*, subject: str) -> list[EventSubscription]:
    """The enabled subscriptions whose pattern matches ``subject``, oldest first.

    A pattern's first token is literal (``subscriptions.engine``), so the index narrows the rows
    to those starting with the subject's first token; the pattern itself is matched here.
    """
    head = first_token(subject)
    rows = (
        EventSubscription.objects.filter(enabled=True)
        .filter(Q(subject=head) | Q(subject__startswith=f"{head}."))
        .order_by("created_at", "id")
    )
    return [row for row in rows if subject_matches(row.subject, subject)]
