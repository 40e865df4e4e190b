"""The registry's side of a Celery worker process: register, beat, follow drains, say goodbye.

:mod:`workers.signals` drives one :class:`CeleryWorkerHeartbeat` per worker process:

- before the worker consumes anything (``celeryd_after_setup``) it registers the worker under its
  Celery hostname, with the queues it consumes, ``WORKER_CAPABILITIES``, its concurrency and
  version;
- once it consumes (``worker_ready``) a thread of the main process beats every
  ``WORKER_HEARTBEAT_SECONDS``: ``last_heartbeat_at`` and ``active_runs`` (the worker's RUNNING
  runs in the ledger). When the row says DRAINING it cancels its queues, so it takes no new runs
  while the ones it runs finish; undrained, it consumes them again;
- at a clean shutdown (``worker_shutdown``, after a warm shutdown let the running tasks finish) it
  stops beating and marks the worker OFFLINE.

Why a thread, not a timer on the worker's event loop: a warm shutdown stops the loop first and
then waits for the running tasks, for as long as they take; beats must go on meanwhile, or the
beat leader would declare the worker offline and retry runs that are still running. Consumer
changes are handed to the loop with ``consumer.call_soon`` (thread-safe), never made here.

The prefork pool forks children from the main process while the thread may hold a database
connection; a child must never use, close or finalise that connection (closing it would end
the parent's session). :func:`_detach_inherited_connection` runs in every forked child and drops
the child's copy of the socket without a word to the server, as Celery's own Django fix-up does
for the main thread's connections.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

from workers import services
from workers.models import Worker, WorkerStatus

logger = logging.getLogger(__name__)


@dataclass
class CeleryWorkerHeartbeat:
    name: str
    hostname: str
    queues: list[str]  # as started (-Q): what the registry shows
    consumes: list[str]  # every queue consumed, capability queues included: what a drain cancels
    capabilities: list[str]
    concurrency: int
    version: str
    interval: float = field(default_factory=lambda: float(settings.WORKER_HEARTBEAT_SECONDS))
    worker_id: UUID | None = None
    consumer: Any = None
    consuming: bool = True
    registered_status: str = WorkerStatus.ONLINE
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _db: Any = None  # the beating thread's connection wrapper (see _detach_inherited_connection)

    # --- in the main thread -----------------------------------------------------------------

    def register(self, *, starting: bool = True) -> None:
        """Register the worker; failures are logged, the next beat retries. Only while
        ``starting`` (nothing consumed yet) may registering take back runs left under its name
        by a previous process: later, this process may be running some of them itself."""
        try:
            worker, _ = services.worker_register(
                tenant_id="",
                name=self.name,
                hostname=self.hostname,
                queues=self.queues,
                capabilities=self.capabilities,
                concurrency=self.concurrency,
                version=self.version,
                take_back_runs=starting,
            )
        except Exception:  # the worker runs without the registry rather than not at all
            logger.exception("registering worker %s failed; the next heartbeat retries", self.name)
            return
        self.worker_id = worker.pk
        self.registered_status = worker.status
        logger.info("registered worker %s (%s)", self.name, worker.status)

    def start(self, consumer: Any) -> None:
        """Begin beating (once per process; a consumer restarted after a broker outage keeps it)."""
        self.consumer = consumer
        if self._thread is not None:
            return
        # A worker restarted while drained stops consuming now, not at its first heartbeat.
        self.follow(self.registered_status)
        _install_fork_guard()
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating, then mark the worker OFFLINE (a clean shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        if self.worker_id is None:
            return
        try:
            close_old_connections()
            services.worker_mark_offline(worker_id=self.worker_id, reason="shut down")
            logger.info("worker %s is offline (shut down)", self.name)
        except Exception:  # shutting down regardless: offline detection will notice
            logger.exception("marking worker %s offline failed", self.name)

    # --- in the heartbeat thread ------------------------------------------------------------

    def _run(self) -> None:
        self._db = connections[DEFAULT_DB_ALIAS]
        try:
            while not self._stop.wait(self.interval):
                self.beat()
        finally:
            with contextlib.suppress(Exception):
                connections.close_all()

    def beat(self) -> None:
        close_old_connections()  # a connection broken by a database restart is replaced
        try:
            if self.worker_id is None:  # registering at start-up failed
                self.register(starting=False)
                return
            try:
                worker = services.worker_heartbeat(worker_id=self.worker_id)
            except Worker.DoesNotExist:  # the row was deleted: this process is still a worker
                self.register(starting=False)
                return
            self.follow(worker.status)
        except Exception:
            logger.exception("heartbeat of worker %s failed; retrying in %s s", self.name, self.interval)

    def follow(self, status: str) -> None:
        """Stop or resume consuming to match the registry. The loop thread does the work."""
        consumer = self.consumer
        if consumer is None:
            return
        if status == WorkerStatus.DRAINING and self.consuming:
            logger.warning("worker %s is drained: it stops consuming %s", self.name, ", ".join(self.consumes))
            for queue in self.consumes:
                consumer.call_soon(consumer.cancel_task_queue, queue)
            self.consuming = False
        elif status == WorkerStatus.ONLINE and not self.consuming:
            logger.warning("worker %s is undrained: it consumes %s again", self.name, ", ".join(self.consumes))
            for queue in self.consumes:
                consumer.call_soon(consumer.add_task_queue, queue)
            self.consuming = True


# The heartbeat of this process (None until a worker starts in it).
current: CeleryWorkerHeartbeat | None = None
# Connections inherited by forked children: kept referenced, so they are never finalised there.
_inherited: list[Any] = []
_fork_guard_installed = False


def _install_fork_guard() -> None:
    global _fork_guard_installed
    if not _fork_guard_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_detach_inherited_connection)
        _fork_guard_installed = True


def _detach_inherited_connection() -> None:
    """In a forked child: close the child's copy of the heartbeat thread's database socket and
    keep the connection object alive forever. Finalising it would send the server a Terminate
    on the parent's session, and its driver lock may have been held at the fork."""
    wrapper = current._db if current is not None else None
    raw = getattr(wrapper, "connection", None)
    if wrapper is None or raw is None:
        return
    fileno = getattr(raw, "fileno", None)
    if fileno is not None:
        with contextlib.suppress(Exception):
            os.close(fileno())
    _inherited.append(raw)
    wrapper.connection = None
