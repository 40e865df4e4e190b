"""The beat: a Celery beat scheduler driven by the database, safe to run many times over.

``celery -A scheduler_project beat`` runs it (``CELERY_BEAT_SCHEDULER``). Each tick:

1. renews or takes the leader lease (one conditional UPDATE); the leader also runs
   django-celery-beat's periodic tasks (housekeeping, editable in the admin) and the sweeper;
2. reads, in one statement (:func:`schedules.selectors.beat_probe`), when the earliest schedule,
   retry and — on the leader — running run's lease are due: an idle tick learns from it that
   nothing is to be done and how long to sleep, and makes no other query;
3. dispatches due schedules through :func:`schedules.services.schedule_dispatch_due` in
   batches — every beat does this, ``SKIP LOCKED`` shares the work and the run ledger's unique
   slot makes a double run impossible — and enqueues the retries that are due;
4. the leader takes back runs whose worker died (an expired lease, or a worker that stopped
   sending heartbeats: :func:`workers.services.workers_detect_offline`), and keeps the outbox relay
   running on a thread of its own (:class:`scheduler_project.relay.RelayLoop`: domain events to
   NATS, so a slow or absent NATS never holds up a tick);
5. sleeps until the next due schedule, retry or lapsing lease, or ``beat_max_loop_interval``,
   whichever is sooner, and wakes early when a schedule changes or a retry is set (PostgreSQL
   ``LISTEN``; the services ``NOTIFY``).

No scheduling maths here and no schedule held in memory: the database is the source of truth.
"""

from __future__ import annotations

import logging
import math
import os
import select
import socket
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from runs.services import run_dispatch_retries, run_recover_lost, run_sweep, runs_wake_waiting
from scheduler_project import metrics
from scheduler_project.relay import RelayLoop
from schedules import services
from schedules.selectors import BeatProbe, beat_probe
from schedules.wakeup import NOTIFY_CHANNEL
from workers.services import workers_detect_offline, workers_purge_offline

logger = logging.getLogger(__name__)


class Scheduler(DatabaseScheduler):
    #: seconds a lease lives without renewal: a standby takes over this long after a crash
    lease_ttl = timedelta(seconds=getattr(settings, "BEAT_LEASE_SECONDS", 10))
    #: due schedules claimed per transaction
    batch_size = 500
    #: how often the leader sweeps for runs the broker lost, and how old such a run must be
    sweep_every = timedelta(seconds=30)
    sweep_stale_after = timedelta(seconds=getattr(settings, "RUN_REQUEUE_AFTER_SECONDS", 600))
    #: django-celery-beat's last seen change of the periodic tasks (its attribute, typed here)
    _last_timestamp: datetime | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.token: int | None = None
        self._listener: Any = None
        self._last_sweep = timezone.now() - self.sweep_every
        # Since when this beat has reached the database without a failed tick (None: not yet).
        self._database_up_since: datetime | None = None
        self._relay = RelayLoop(active=lambda: self.token is not None)  # works while this beat leads
        # This tick's probe, and whether the tick has acted since (then it is read again).
        self._probe = BeatProbe(schedule=None, retry=None)
        self._acted = False
        # The probe whose periodic-task change django-celery-beat's tick has not yet asked about.
        self._periodic_probe: BeatProbe | None = None
        self._offline_checked_at = -math.inf  # time.monotonic() of the last offline-worker check
        super().__init__(*args, **kwargs)

    # --- the loop ---------------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        close_old_connections()
        max_sleep = float(self.max_interval)
        started = time.monotonic()
        try:
            self._lead()
            if self._database_up_since is None:
                self._database_up_since = timezone.now()
            self._read_probe()
            periodic_sleep = super().tick(*args, **kwargs) if self.token is not None else max_sleep
            self._dispatch()
            if self.token is not None:
                self._sweep()
            sleep = min(max_sleep, periodic_sleep, self._until_next_due())
            metrics.beat_tick(seconds=time.monotonic() - started, leader=self.token is not None)
            return self._wait(sleep)
        except Exception:  # the beat must outlive a database restart; the next tick retries
            self._database_up_since = None
            metrics.beat_tick_failed()
            logger.exception("beat tick failed; retrying")
            close_old_connections()
            self._drop_listener()
            return min(max_sleep, 1.0)

    def _lead(self) -> None:
        token = services.beat_lease_acquire(holder=self.identity, ttl=self.lease_ttl)
        if token != self.token:
            logger.info("beat %s %s", self.identity, f"leads with token {token}" if token else "is a standby")
        self.token = token

    def _read_probe(self) -> None:
        """Read what is due (:func:`schedules.selectors.beat_probe`): the tick decides from it."""
        self._probe = self._periodic_probe = beat_probe(leader=self.token is not None)
        self._acted = False

    def _dispatch(self) -> None:
        """Dispatch due schedules, then due retries, in batches, when the probe saw any due."""
        now = timezone.now()
        if _due(self._probe.schedule, now):
            self._acted = True
            while len(services.schedule_dispatch_due(now=timezone.now(), limit=self.batch_size)) >= self.batch_size:
                pass  # a full batch: more may be due right now
        if _due(self._probe.retry, now):
            self._acted = True
            while run_dispatch_retries(now=timezone.now(), limit=self.batch_size) >= self.batch_size:
                pass

    def _sweep(self) -> None:
        if settings.OUTBOX_RELAY_IN_BEAT:
            self._relay.start()  # once; a no-op without NATS_URL
        now = timezone.now()
        recovered = self._recover_lost(now)
        if recovered:
            logger.warning("took back %d runs whose worker stopped (lease expired)", recovered)
        # Workers silent for WORKER_OFFLINE_AFTER_SECONDS: OFFLINE, their runs retried at once. Not
        # until this beat has reached the database for that long itself: after an outage, silence
        # says nothing about a worker whose heartbeats could not land either.
        up_since = self._database_up_since
        if up_since is not None and now - up_since >= timedelta(seconds=settings.WORKER_OFFLINE_AFTER_SECONDS):
            self._detect_offline()
        if now - self._last_sweep >= self.sweep_every:
            self._last_sweep = now
            resent = run_sweep(now=now, stale_after=self.sweep_stale_after)
            if resent:
                logger.warning("sweeper re-enqueued %d runs", resent)
            woken = runs_wake_waiting(now=now)
            if woken:
                logger.warning("sweeper woke %d runs waiting for a slot that is free", woken)
            if settings.WORKER_RETENTION_DAYS:
                workers_purge_offline(older_than=timedelta(days=settings.WORKER_RETENTION_DAYS))

    def _recover_lost(self, now: datetime) -> int:
        """Take back the runs whose lease lapsed (:func:`runs.services.run_recover_lost`) when the
        probe saw one: it read the earliest lease of a running run, so when that lies ahead there
        is nothing to take back and the query is saved."""
        if not _due(self._probe.lease_expiry, now, strictly=True):
            return 0
        self._acted = True
        return run_recover_lost(now=now)

    def _detect_offline(self) -> None:
        """Mark silent workers offline (:func:`workers.services.workers_detect_offline`), at most
        every ``WORKER_HEARTBEAT_SECONDS / 2``.

        Enough, because a worker is offline only after ``WORKER_OFFLINE_AFTER_SECONDS`` of silence,
        at least two heartbeats (the configuration refuses less): checking every half heartbeat
        finds it at most half a heartbeat later than checking on every tick would — a quarter
        of the offline period at worst — while an idle tick (every ``lease_ttl / 3`` at most)
        skips the query about every other time. Each worker is judged under its row's lock
        against its last heartbeat anyway (:func:`workers.services.worker_mark_offline`).
        """
        checked = time.monotonic()
        if checked - self._offline_checked_at < settings.WORKER_HEARTBEAT_SECONDS / 2:
            return
        self._offline_checked_at = checked
        if workers_detect_offline():
            self._acted = True  # their runs now wait as retries: the probe is stale

    def _until_next_due(self) -> float:
        """Seconds until the earliest schedule, retry or (leading) lapsing lease: from the tick's
        probe, read again only when the tick acted since (dispatched, took runs back)."""
        probe = beat_probe(leader=self.token is not None) if self._acted else self._probe
        earliest = probe.earliest
        if earliest is None:
            return float(self.max_interval)
        return max(0.0, (earliest - timezone.now()).total_seconds())

    def schedule_changed(self) -> bool:
        """Whether an operator changed a periodic task since the last look: django-celery-beat's
        tick asks on every call, and its own answer is a query of its own (plus a reset of the
        connections). The leader's probe read the same row (``PeriodicTasks.last_update``) at the
        start of this tick, so the tick's first question is answered from it, by
        django-celery-beat's own rule; any other (asked again while it rebuilds its heap, or
        outside a tick) goes to django-celery-beat."""
        probe, self._periodic_probe = self._periodic_probe, None
        if probe is None or self.token is None:  # a standby's probe does not read the row
            return bool(super().schedule_changed())
        last, changed = self._last_timestamp, probe.periodic_change
        self._last_timestamp = changed
        return bool(changed and changed > (last or changed))

    def _wait(self, seconds: float) -> float:
        """Sleep up to ``seconds``, returning early (and 0) when a schedule changes. Without
        PostgreSQL there is no LISTEN: hand the sleep back to Celery."""
        listener = self._listen()
        if listener is None or seconds <= 0:
            return seconds
        # Leave a margin below the lease time so the lease is renewed before it lapses.
        seconds = min(seconds, self.lease_ttl.total_seconds() / 3)
        ready, _, _ = select.select([listener], [], [], seconds)
        if ready:
            listener.poll()
            listener.notifies.clear()
        return 0.0

    def _listen(self) -> Any:
        if connection.vendor != "postgresql":
            return None
        if self._listener is None or self._listener.closed:
            import psycopg2

            params = connection.get_connection_params()
            self._listener = psycopg2.connect(**params)
            self._listener.set_isolation_level(0)  # autocommit: LISTEN takes effect at once
            with self._listener.cursor() as cursor:
                cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return self._listener

    def _drop_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except Exception:  # already broken: nothing left to close
                logger.debug("closing a broken LISTEN connection failed", exc_info=True)
            self._listener = None

    def close(self) -> None:
        self._relay.stop()
        if self.token is not None:
            services.beat_lease_release(holder=self.identity)
        self._drop_listener()
        super().close()


def _due(at: datetime | None, now: datetime, *, strictly: bool = False) -> bool:
    """Whether a probed moment has come (``strictly``: has passed, as a lease lapses after it)."""
    if at is None:
        return False
    return at < now if strictly else at <= now
