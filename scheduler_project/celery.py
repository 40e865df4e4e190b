"""The Celery application. `celery -A scheduler_project worker|beat` finds it here."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_project.settings")

logger = logging.getLogger(__name__)

app = Celery("scheduler_project")
# All Celery settings live in Django settings under the CELERY_ prefix. Celery reads them from a
# plain dict taken when it first needs them (scheduler_project.celery_settings), not through
# django.conf.settings: Celery looks settings up several times per message sent, and each look
# through Django's settings object cost a sixth of send_task (bench/beat.py).
app.config_from_object("scheduler_project.celery_settings:CELERY_SETTINGS", namespace="CELERY")
app.autodiscover_tasks()


# A connection that answered a task less than this long ago is not health-checked again before the
# next task (HikariCP's aliveBypassWindowMs, 500 ms by default, is the same rule): the check is a
# round trip per run, 8% of a run's time under load (bench/execution.py). A connection that broke
# within the window fails one task, which execute_run retries once on a fresh connection.
HEALTH_CHECK_BYPASS_SECONDS = 0.5

_answered_at: dict[str, float] = {}  # by database alias: when a task last ended on a working connection


@task_prerun.connect
def _recycle_database_connections(sender: Any = None, **kwargs: Any) -> None:
    """Between two tasks, treat the database connection as Django does between two requests:
    closed only when unusable or older than CONN_MAX_AGE, health-checked before reuse unless it
    answered the previous task a moment ago. Celery's Django fixup would otherwise close it around
    every task (CELERY_DB_REUSE_MAX in settings turns that off), and a new PostgreSQL backend per
    run cost more than the run (bench/execution.py)."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # run in the caller's process (Task.apply): its connection is the caller's
    from django.db import close_old_connections, connections

    close_old_connections()
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        fresh = now - _answered_at.get(connection.alias, -HEALTH_CHECK_BYPASS_SECONDS) < HEALTH_CHECK_BYPASS_SECONDS
        if connection.connection is not None and fresh:
            connection.health_check_done = True  # type: ignore[attr-defined]  # Django has it, its stubs do not


@task_postrun.connect
def _note_working_connections(sender: Any = None, **kwargs: Any) -> None:
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import connections

    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.errors_occurred:
            _answered_at[connection.alias] = now
        else:
            _answered_at.pop(connection.alias, None)


@setup_logging.connect
def _configure_logging(loglevel: int | str | None = None, **kwargs: Any) -> None:
    """Workers and beats log as the API does (scheduler_project.logs), at their --loglevel.
    Connecting here also stops Celery from installing handlers of its own."""
    from django.conf import settings

    from scheduler_project import logs

    logs.configure(settings.LOGGING, level=loglevel or None)


# Tracing (scheduler_project/tracing.py) is set up in the process that does the work, after any
# fork: a prefork pool's processes each set it up, the worker's main process does not.
@worker_process_init.connect
def _trace_pool_process(**kwargs: Any) -> None:
    from scheduler_project import tracing

    tracing.tracing_configure("scheduler-worker")


@worker_init.connect
def _trace_worker(sender: Any = None, **kwargs: Any) -> None:
    """Pools that do not fork (solo, threads) run tasks in the worker's main process."""
    from celery.concurrency import ALIASES

    pool = getattr(sender, "pool_cls", None) or "prefork"
    path = ALIASES.get(pool, pool) if isinstance(pool, str) else f"{pool.__module__}:{pool.__qualname__}"
    if path != ALIASES["prefork"]:
        from scheduler_project import tracing

        tracing.tracing_configure("scheduler-worker")


@beat_init.connect
def _start_beat(**kwargs: Any) -> None:
    from django.conf import settings

    from scheduler_project import prometheus, tracing

    tracing.tracing_configure("scheduler-beat")
    if settings.METRICS_PORT is not None:
        prometheus.serve(port=settings.METRICS_PORT, addr=settings.METRICS_ADDR, process="beat")


# METRICS_PORT: a worker or beat serves its own metrics (scheduler_project/prometheus.py). A worker
# starts the server once its pool is up, in its main process; the pool processes' metrics reach it
# through PROMETHEUS_MULTIPROC_DIR.
@worker_ready.connect
def _serve_worker_metrics(sender: Any = None, **kwargs: Any) -> None:
    from django.conf import settings

    from scheduler_project import prometheus

    if settings.METRICS_PORT is None:
        return
    from celery.concurrency.prefork import TaskPool as PreforkPool

    # The sender is the worker's consumer; its pool forks processes of their own under prefork.
    if prometheus.directory() is None and isinstance(getattr(sender, "pool", None), PreforkPool):
        logger.warning(
            "METRICS_PORT without PROMETHEUS_MULTIPROC_DIR: the pool processes' metrics are not served; "
            "set PROMETHEUS_MULTIPROC_DIR to a directory of this worker's own"
        )
    prometheus.serve(port=settings.METRICS_PORT, addr=settings.METRICS_ADDR, process="worker")
