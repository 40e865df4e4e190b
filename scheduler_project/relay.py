"""The outbox relay: domain events from the outbox table to NATS, as CloudEvents 1.0.

Each event goes to the subject named by its type (``scheduler.run.dead``) as a structured-mode
CloudEvents JSON document, with ``Nats-Msg-Id`` set to the event id: a JetStream stream that
captures the subject drops a second copy within its de-duplication window, and any consumer can
de-duplicate by ``id``. Delivery is at least once.

**One relay at a time.** A batch is one transaction that first takes a PostgreSQL advisory lock
(``RELAY_LOCK_KEY``); a relay that does not get it leaves the batch to the one that did. So the
beat leader's relay thread, a ``manage.py relay_events`` process and the admin's "publish now"
may all run at once without two of them interleaving. ``SKIP LOCKED`` would not do: two relays
taking alternate rows would publish an aggregate's events out of order.

**Order per aggregate.** A batch publishes the unpublished events in ``id`` order and stops at
the first failure, which it records on the event (``publish_attempts``, ``last_error``); the
rest wait behind it. Every writer holds its aggregate's row lock when it records the aggregate's
event and until it commits, so a later event of one aggregate always has a larger id and becomes
visible after the earlier one: ``id`` order of what is visible is each aggregate's own order.
(Events of *different* aggregates may commit out of id order; a batch simply publishes what has
committed, and a late commit is picked up by the next batch.)

**NATS down.** Nothing is marked published that NATS has not taken: a JetStream publish waits
for the stream's acknowledgement, a core publish for the server's answer to a flush, and a
connection that is reconnecting fails at once. The events wait in the outbox, and
:func:`scheduler_project.selectors.outbox_backlog` reports how many and since when.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from runs.targets.event import NatsBus
from scheduler_project.models import OutboxEvent

logger = logging.getLogger(__name__)

SPEC_VERSION = "1.0"
#: CloudEvents' structured content mode over NATS: the message body is the whole event.
MESSAGE_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
DATA_CONTENT_TYPE = "application/json"
#: What a stream the relay creates (``NATS_EVENTS_STREAM``) captures: every event type.
EVENT_SUBJECTS = ["scheduler.>"]
#: The advisory lock one relay holds for the length of a batch (an arbitrary 64-bit key).
RELAY_LOCK_KEY = 7_216_548_011_402_117_377
#: How often the relay checks that the configured stream still exists.
STREAM_CHECK_SECONDS = 60.0
#: How often the relay loop purges events older than ``OUTBOX_RETENTION_DAYS``.
PURGE_EVERY_SECONDS = 3600.0
PURGE_BATCH = 5000


# --- The envelope -------------------------------------------------------------------------------


def event_subject(event: OutboxEvent) -> str:
    """The NATS subject: the event type itself, ``scheduler.<entity>.<event>``."""
    return event.type


def event_envelope(event: OutboxEvent) -> dict[str, Any]:
    """The event as a CloudEvents 1.0 document (docs/events.md). ``tenantid`` is an extension
    attribute, absent for events of no tenant (the shared worker fleet)."""
    envelope: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": str(event.event_id),
        "source": settings.EVENTS_SOURCE,
        "type": event.type,
        "subject": event.aggregate_id,
        "time": _rfc3339(event.occurred_at),
        "datacontenttype": DATA_CONTENT_TYPE,
    }
    if event.tenant_id:
        envelope["tenantid"] = event.tenant_id
    envelope.update(_trace_context(event))  # the CloudEvents distributed-tracing extension
    envelope["data"] = event.data
    return envelope


def event_headers(event: OutboxEvent) -> dict[str, str]:
    """The message's NATS headers: its content type, and the trace context once more for
    consumers that read it from headers (W3C trace context, as OpenTelemetry propagates it)."""
    return {"Content-Type": MESSAGE_CONTENT_TYPE, **_trace_context(event)}


def _trace_context(event: OutboxEvent) -> dict[str, str]:
    """``traceparent`` and ``tracestate`` of the operation that recorded the event, when traced."""
    if not event.traceparent:
        return {}
    context = {"traceparent": event.traceparent}
    if event.tracestate:
        context["tracestate"] = event.tracestate
    return context


def event_message(event: OutboxEvent) -> bytes:
    return json.dumps(event_envelope(event), separators=(",", ":"), ensure_ascii=False).encode()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- One batch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayResult:
    published: int = 0
    #: why the batch stopped early ("" when it did not)
    error: str = ""
    #: the batch was full: more events may be waiting right now
    more: bool = False
    #: another relay held the lock, so this one did nothing
    busy: bool = False


_buses: dict[str, NatsBus] = {}
_streams_checked: dict[tuple[str, str], float] = {}


def _bus(url: str) -> NatsBus:
    if url not in _buses:
        _buses[url] = NatsBus(url)
    return _buses[url]


def relay_disconnect(url: str | None = None) -> None:
    """Close this process's connection to ``url`` (default ``NATS_URL``), e.g. at shutdown."""
    bus = _buses.pop(url or settings.NATS_URL or "", None)
    if bus is not None:
        try:
            bus.close()
        except Exception:  # closing a connection that is already broken: nothing left to do
            logger.debug("closing the relay's NATS connection failed", exc_info=True)


def outbox_relay(*, url: str | None = None, limit: int | None = None, timeout: float | None = None) -> RelayResult:
    """Publish up to ``limit`` unpublished events, oldest first, to NATS at ``url`` (default
    ``NATS_URL``; without one, events stay in the outbox and this does nothing)."""
    url = url or settings.NATS_URL
    if not url or not OutboxEvent.objects.filter(published_at__isnull=True).exists():
        return RelayResult()
    limit = limit or settings.OUTBOX_RELAY_BATCH
    timeout = timeout or settings.OUTBOX_RELAY_TIMEOUT_SECONDS
    bus = _bus(url)
    with transaction.atomic():
        if not _relay_lock():
            return RelayResult(busy=True)
        events = list(OutboxEvent.objects.filter(published_at__isnull=True).order_by("id")[:limit])
        _ensure_stream(bus, url, timeout)
        sent: list[int] = []
        error = ""
        for event in events:
            try:
                bus.publish(
                    event_subject(event),
                    event_message(event),
                    headers=event_headers(event),
                    msg_id=str(event.event_id),
                    timeout=timeout,
                )
            except Exception as exc:  # whatever the client raises, the event was not taken: record it
                error = f"{type(exc).__name__}: {exc}"[:1000]
                OutboxEvent.objects.filter(pk=event.pk).update(
                    publish_attempts=F("publish_attempts") + 1, last_error=error
                )
                logger.warning("outbox relay: event %s (%s) not published: %s", event.pk, event.type, error)
                break
            sent.append(event.pk)
        if sent:
            OutboxEvent.objects.filter(pk__in=sent).update(
                published_at=timezone.now(), publish_attempts=F("publish_attempts") + 1
            )
    return RelayResult(published=len(sent), error=error, more=not error and len(events) == limit)


def outbox_relay_all(*, url: str | None = None, max_batches: int = 1000) -> RelayResult:
    """Relay batch after batch until the backlog is empty, a publish fails, or another relay
    holds the lock; the total published and the way it ended."""
    published = 0
    for _ in range(max_batches):
        result = outbox_relay(url=url)
        published += result.published
        if not result.more:
            return RelayResult(published=published, error=result.error, busy=result.busy)
    return RelayResult(published=published, more=True)


def _relay_lock() -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite (the embedded default) has one writer at a time and one beat
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [RELAY_LOCK_KEY])
        return bool(cursor.fetchone()[0])


def _ensure_stream(bus: NatsBus, url: str, timeout: float) -> None:
    """With ``NATS_EVENTS_STREAM`` set, make sure a JetStream stream captures the events (one is
    created when none does; an existing one is never changed). Checked once a minute."""
    name = settings.NATS_EVENTS_STREAM
    if not name or _streams_checked.get((url, name), 0.0) > time.monotonic():
        return
    try:
        stream = bus.ensure_stream(
            name, EVENT_SUBJECTS, max_age=settings.NATS_EVENTS_STREAM_MAX_AGE_DAYS * 86400.0, timeout=timeout
        )
    except Exception as exc:  # NATS down, or no JetStream: publishing says what matters
        logger.warning("outbox relay: cannot ensure stream %s: %s: %s", name, type(exc).__name__, exc)
        return
    if stream != name:
        logger.info("outbox relay: events go to the existing stream %s", stream)
    _streams_checked[(url, name)] = time.monotonic() + STREAM_CHECK_SECONDS


# --- Retention ----------------------------------------------------------------------------------


def outbox_purge(*, older_than: timedelta, include_unpublished: bool = False, now: datetime | None = None) -> int:
    """Delete published events that occurred more than ``older_than`` ago (also unpublished ones
    with ``include_unpublished``, for an installation without a bus). Schedule events are kept:
    a schedule's explain reads its pause history from them, and they are few. Deletes in
    batches of ``PURGE_BATCH``; returns how many."""
    cutoff = (now or timezone.now()) - older_than
    # Ids grow with time: everything old lies below the first young event, so no batch query
    # walks past it (occurred_at has no index of its own).
    young = OutboxEvent.objects.filter(occurred_at__gte=cutoff).order_by("id").values_list("pk", flat=True).first()
    old = OutboxEvent.objects.filter(occurred_at__lt=cutoff).exclude(aggregate_type="schedule")
    if young is not None:
        old = old.filter(pk__lt=young)
    if not include_unpublished:
        old = old.filter(published_at__isnull=False)
    deleted = 0
    while ids := list(old.order_by("id").values_list("pk", flat=True)[:PURGE_BATCH]):
        deleted += OutboxEvent.objects.filter(pk__in=ids).delete()[0]
    return deleted


# --- The loop -----------------------------------------------------------------------------------


class RelayLoop:
    """Relays until stopped: every ``OUTBOX_RELAY_INTERVAL_SECONDS``, at once again while a
    backlog remains, backing off (doubling, up to ``OUTBOX_RELAY_MAX_BACKOFF_SECONDS``) while
    publishing fails; purges old events once an hour. The body of ``manage.py relay_events`` and,
    on a thread of its own (:meth:`start`), of the beat leader's relay, so that a slow or absent
    NATS never holds up a beat tick. ``active`` says whether to work this round (the beat: while
    it leads)."""

    def __init__(self, *, active: Callable[[], bool] = lambda: True, url: str | None = None) -> None:
        self.active = active
        self.url = url
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._next_purge = time.monotonic() + 60.0  # not while a process is starting

    def run(self) -> None:
        """Loop in this thread until :meth:`stop` (or SIGTERM, for ``relay_events``)."""
        try:
            while not self.stopping.is_set():
                self.stopping.wait(self.step())
        finally:
            connection.close()  # this thread's own database connection

    def step(self) -> float:
        """One round; returns the seconds to wait before the next."""
        interval = float(settings.OUTBOX_RELAY_INTERVAL_SECONDS)
        if not self.active():
            return interval
        close_old_connections()
        try:
            result = outbox_relay(url=self.url)
            self._purge_when_due()
        except Exception as exc:  # the database is down, say: the next round tries again
            logger.exception("outbox relay failed")
            result = RelayResult(error=f"{type(exc).__name__}: {exc}")
            close_old_connections()
        if result.error:
            self._failures += 1
            return min(interval * 2**self._failures, float(settings.OUTBOX_RELAY_MAX_BACKOFF_SECONDS))
        if self._failures:
            logger.info("outbox relay: publishing again after %d failed rounds", self._failures)
            self._failures = 0
        return 0.0 if result.more else interval

    def _purge_when_due(self) -> None:
        days = settings.OUTBOX_RETENTION_DAYS
        if not days or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
        purged = outbox_purge(older_than=timedelta(days=days))
        if purged:
            logger.info("outbox: purged %d published events older than %d days", purged, days)

    def start(self) -> None:
        """Run on a daemon thread (once; a no-op without a bus or while running)."""
        if not (self.url or settings.NATS_URL) or (self._thread is not None and self._thread.is_alive()):
            return
        self.stopping.clear()
        self._thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            relay_disconnect(self.url)
