"""Domain events: written to the outbox inside the transaction of the change they report."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from scheduler_project.models import OutboxEvent


def event_record(
    *, tenant_id: str, type: str, aggregate_type: str, aggregate_id: Any, data: dict[str, Any]
) -> OutboxEvent:
    """Append an event to the outbox. Must run inside the transaction that made the change."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("event_record() must be called inside transaction.atomic()")
    return OutboxEvent.objects.create(
        tenant_id=tenant_id,
        type=type,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        data=data,
    )
