"""Writes to event subscriptions, and what an inbound event does: it triggers the schedule of
every enabled subscription whose subject and filter it matches, once per event."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from runs.models import Run
from scheduler_project import metrics
from scheduler_project.errors import Conflict, ValidationFailed
from scheduler_project.relay import EVENT_SUBJECTS
from schedules.models import Schedule
from schedules.services import schedule_trigger_now
from subscriptions import selectors
from subscriptions.engine import (
    InboundEvent,
    MalformedEvent,
    decode_event,
    event_identity,
    filter_errors,
    filter_matches,
    idempotency_key,
    subject_errors,
    subject_matches,
)
from subscriptions.models import EventSubscription

logger = logging.getLogger(__name__)

# What happened to an event, per subscription on its subject.
TRIGGERED = "triggered"  # a MANUAL run of the schedule was created
DUPLICATE = "duplicate"  # a redelivery: the event's run already exists
FILTERED = "filtered"  # the filter (or the tenant of a scheduler event) did not match
PAUSED = "paused"  # the schedule is paused: nothing runs
REJECTED = "rejected"  # the event is malformed
FAILED = "failed"  # the trigger failed; ``retry`` says whether a redelivery may succeed
OUTCOMES = (TRIGGERED, DUPLICATE, FILTERED, PAUSED, REJECTED, FAILED)

_FIELDS = ("schedule", "subject", "filter", "description", "enabled")


# --- Writes -------------------------------------------------------------------------------------


def _apply(subscription: EventSubscription, data: Mapping[str, Any]) -> None:
    """Apply validated API input, checking the subject and filter (subscriptions.engine) and that
    the schedule belongs to the subscription's tenant."""
    errors: dict[str, list[str]] = {}
    for name, value in data.items():
        if name == "schedule":
            schedule = Schedule.objects.filter(tenant_id=subscription.tenant_id, pk=value).first()
            if schedule is None:
                errors["schedule"] = [f"No schedule {value} in this tenant."]
            else:
                subscription.schedule = schedule
        elif name == "subject":
            if messages := subject_errors(value):
                errors["subject"] = messages
            subscription.subject = value
        elif name == "filter":
            for path, messages in filter_errors(value).items():
                errors[f"filter.{path}" if path else "filter"] = messages
            subscription.filter = value
        elif name in _FIELDS:
            setattr(subscription, name, value)
        else:
            raise TypeError(f"unknown subscription field {name!r}")
    if errors:
        raise ValidationFailed(errors)


@transaction.atomic
def subscription_create(
    *,
    tenant_id: str,
    schedule: UUID,
    subject: str,
    filter: dict[str, Any] | None = None,
    description: str = "",
    enabled: bool = True,
) -> EventSubscription:
    subscription = EventSubscription(tenant_id=tenant_id)
    data = {"schedule": schedule, "subject": subject, "filter": filter or {}, "description": description}
    _apply(subscription, {**data, "enabled": enabled})
    subscription.save()
    return subscription


@transaction.atomic
def subscription_update(*, subscription: EventSubscription, data: Mapping[str, Any]) -> EventSubscription:
    subscription = EventSubscription.objects.select_for_update().get(pk=subscription.pk)
    _apply(subscription, data)
    # Only what changed: the consumer's counters on the same row stay as it wrote them.
    subscription.save(update_fields=[*data, "updated_at"])
    return subscription


def subscription_set_enabled(*, subscription: EventSubscription, enabled: bool) -> EventSubscription:
    """Start or stop triggering (the admin's actions; the API's ``PATCH {"enabled": ...}``)."""
    return subscription_update(subscription=subscription, data={"enabled": enabled})


def subscription_delete(*, subscription: EventSubscription) -> None:
    EventSubscription.objects.filter(pk=subscription.pk).delete()


# --- Inbound events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    subscription_id: UUID
    outcome: str
    run_id: UUID | None = None
    reason: str = ""
    #: failed for a reason that may pass (the database was unreachable): deliver it again
    retry: bool = False


@dataclass(frozen=True)
class HandleResult:
    outcomes: list[Outcome] = field(default_factory=list)
    #: why the event was refused before any filter was read (``MalformedEvent.reason``)
    malformed: str = ""

    @property
    def retry(self) -> bool:
        """Whether a redelivery could do more: idempotency makes it safe for the rest."""
        return any(outcome.retry for outcome in self.outcomes)

    def runs(self) -> list[UUID]:
        return [o.run_id for o in self.outcomes if o.outcome == TRIGGERED and o.run_id is not None]


def subscription_handle(*, message: InboundEvent, now: datetime | None = None) -> HandleResult:
    """Trigger the schedule of every enabled subscription whose subject pattern matches the
    message's subject and whose filter matches its decoded JSON body.

    Each trigger is a MANUAL run (``schedule_trigger_now``) with the payload ``{"event": <the
    decoded body>, "subject": <the subject>}`` over the job's and schedule's payloads, keyed by
    ``event:<subscription id>:<event identity>`` so that a redelivered event finds its run instead
    of starting another. A paused schedule is not triggered. A malformed event (not UTF-8 JSON, not
    an object, above 64 KiB, unstorable) triggers nothing: it is logged with the reason and counted
    on each subscription of its subject. Never raises for a bad event; a database that cannot be
    reached raises (from the first query) or comes back as outcomes with ``retry``.
    """
    now = now or timezone.now()
    candidates = selectors.subscription_candidates(subject=message.subject)
    if not candidates:
        return HandleResult()
    try:
        event = decode_event(message.data)
    except MalformedEvent as exc:
        logger.warning(
            "inbound event on %s refused: %s",
            message.subject,
            exc,
            extra={"subject": message.subject, "reason": exc.reason, "bytes": len(message.data)},
        )
        metrics.inbound_event_malformed(reason=exc.reason)
        reason = f"malformed event: {exc}"
        _record_rejection([c.pk for c in candidates], reason, now)
        outcomes = [Outcome(c.pk, REJECTED, reason=reason) for c in candidates]
        for outcome in outcomes:
            metrics.event_subscription_outcome(outcome=outcome.outcome)
        return HandleResult(outcomes=outcomes, malformed=exc.reason)
    identity = event_identity(message, event)
    outcomes = []
    for subscription in candidates:
        if _visible(subscription, message.subject, event) and filter_matches(subscription.filter, event):
            outcome = _trigger(subscription.pk, message.subject, event, identity, now)
        else:
            outcome = Outcome(subscription.pk, FILTERED)
        metrics.event_subscription_outcome(outcome=outcome.outcome)
        outcomes.append(outcome)
    return HandleResult(outcomes=outcomes)


def _visible(subscription: EventSubscription, subject: str, event: Mapping[str, Any]) -> bool:
    """The scheduler's own domain events (``scheduler.>``) carry their tenant: a subscription sees
    those of its tenant and of the shared fleet (no tenant) only, and never those about its own
    schedule, which would trigger itself without end."""
    if not any(subject_matches(pattern, subject) for pattern in EVENT_SUBJECTS):
        return True
    if event.get("tenantid") not in (None, "", subscription.tenant_id):
        return False
    data = event.get("data")
    own = str(subscription.schedule_id)
    return not (isinstance(data, dict) and own in (data.get("schedule"), data.get("id")))


def _trigger(subscription_id: UUID, subject: str, event: dict[str, Any], identity: str, now: datetime) -> Outcome:
    created_run: Run | None = None
    try:
        with transaction.atomic():
            # The row lock orders deliveries of one event to one subscription (two consumers, a
            # redelivery): the second finds the first one's run by its key.
            subscription = (
                EventSubscription.objects.select_for_update(of=("self",))
                .select_related("schedule__job")
                .filter(pk=subscription_id, enabled=True)
                .first()
            )
            if subscription is None:  # disabled or deleted since it was matched
                return Outcome(subscription_id, FILTERED)
            schedule = subscription.schedule
            if not schedule.enabled:
                reason = "the schedule is paused: event ignored"
                logger.info("event on %s not run: schedule %s is paused", subject, schedule.pk)
                _record_rejection([subscription.pk], reason, now)
                return Outcome(subscription.pk, PAUSED, reason=reason)
            key = idempotency_key(str(subscription.pk), identity)
            try:
                run, created = schedule_trigger_now(
                    schedule=schedule, payload={"event": event, "subject": subject}, idempotency_key=key
                )
            except Conflict:  # the subscription moved to another schedule after this event ran
                return Outcome(subscription.pk, DUPLICATE)
            if not created:
                return Outcome(subscription.pk, DUPLICATE, run_id=run.pk)
            EventSubscription.objects.filter(pk=subscription.pk).update(
                matched_count=F("matched_count") + 1, last_matched_at=now, last_run=run
            )
            created_run = run
        return Outcome(subscription_id, TRIGGERED, run_id=created_run.pk)
    except Exception as exc:
        return _trigger_failed(subscription_id, subject, created_run, exc, now)


def _trigger_failed(
    subscription_id: UUID, subject: str, created_run: Run | None, exc: Exception, now: datetime
) -> Outcome:
    if created_run is not None and _committed(created_run):
        # Committed, and only sending it to the broker failed (an on-commit hook): the beat's
        # sweeper sends runs that were never sent.
        logger.warning("run %s (event on %s) not enqueued: %s; the sweeper sends it", created_run.pk, subject, exc)
        return Outcome(subscription_id, TRIGGERED, run_id=created_run.pk)
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("event on %s: database unavailable: %s", subject, exc)
        return Outcome(subscription_id, FAILED, reason=f"database unavailable: {exc}", retry=True)
    logger.exception("event on %s: triggering subscription %s failed", subject, subscription_id)
    reason = f"trigger failed: {type(exc).__name__}"
    try:
        _record_rejection([subscription_id], reason, now)
    except DatabaseError:
        logger.warning("subscription %s: the failure could not be recorded", subscription_id, exc_info=True)
    return Outcome(subscription_id, FAILED, reason=reason)


def _committed(run: Run) -> bool:
    try:
        return Run.objects.filter(pk=run.pk).exists()
    except DatabaseError:
        return False


def _record_rejection(subscription_ids: list[UUID], reason: str, now: datetime) -> None:
    EventSubscription.objects.filter(pk__in=subscription_ids).update(
        rejected_count=F("rejected_count") + 1, last_rejected_at=now, last_rejection=reason[:500]
    )
