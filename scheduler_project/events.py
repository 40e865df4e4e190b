"""Domain events: written to the outbox inside the transaction of the change they report.

The relay (:mod:`scheduler_project.relay`) publishes them in ``id`` order, which is each
aggregate's own order provided that whoever records an aggregate's event holds the aggregate's
row lock (``select_for_update`` or the UPDATE that made the change) until it commits. The types
and their data are documented in docs/events.md; a new event type needs its section there.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from scheduler_project import tracing
from scheduler_project.models import OutboxEvent


def event_build(
    *, tenant_id: str, type: str, aggregate_type: str, aggregate_id: Any, data: dict[str, Any]
) -> OutboxEvent:
    """An event, not yet written: give it to :func:`events_record`."""
    return OutboxEvent(
        tenant_id=tenant_id, type=type, aggregate_type=aggregate_type, aggregate_id=str(aggregate_id), data=data
    )


def events_record(events: list[OutboxEvent]) -> None:
    """Append events to the outbox in one statement, inside the transaction that made the change.
    Inside a traced operation each event keeps its trace context, for the relay's envelope."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("events must be recorded inside transaction.atomic()")
    OutboxEvent.objects.bulk_create(events_traced(events))


def events_traced(events: list[OutboxEvent]) -> list[OutboxEvent]:
    """The events, each given the current trace context (when traced) unless it has one: what
    :func:`events_record` writes, for a statement that writes events itself (runs.services)."""
    if context := tracing.trace_context():
        for event in events:
            event.traceparent = event.traceparent or context.get("traceparent", "")
            event.tracestate = event.tracestate or context.get("tracestate", "")
    return events


def event_record(
    *, tenant_id: str, type: str, aggregate_type: str, aggregate_id: Any, data: dict[str, Any]
) -> OutboxEvent:
    """Append an event to the outbox. Must run inside the transaction that made the change."""
    event = event_build(
        tenant_id=tenant_id, type=type, aggregate_type=aggregate_type, aggregate_id=aggregate_id, data=data
    )
    events_record([event])
    return event
