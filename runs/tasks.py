"""Celery tasks of the runs app: thin, the work is in runs.services."""

from __future__ import annotations

import logging
from uuid import UUID

import structlog
from celery import shared_task
from celery.app.task import Task
from django.db import InterfaceError, OperationalError

from runs import services
from scheduler_project import tracing

logger = logging.getLogger(__name__)


# acks_late: the message is acknowledged after the task returns, so a worker that dies mid-run
# leaves it to be delivered again; reject_on_worker_lost: a pool child killed mid-task puts its
# message back rather than acknowledging it. Either redelivery is harmless: the run is claimed by
# a conditional update, and a run whose worker vanished is taken back by its lease anyway.
#
# A lost database connection (PostgreSQL restarted, the backend terminated) fails the task that
# finds it, since a connection that answered the previous task a moment ago is not health-checked
# again (scheduler_project/celery.py): the task is sent again once, at once, and runs on a new
# connection. Had the claim gone through before the loss, the second delivery finds the run
# claimed and its lease brings it back, as for a worker that died.
@shared_task(
    name=services.EXECUTE_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(InterfaceError, OperationalError),
    retry_kwargs={"max_retries": 1, "countdown": 0},
)
def execute_run(self: Task, run_id: str) -> str:
    try:
        pk = UUID(run_id)
    except (TypeError, ValueError):
        logger.error("execute_run got %r, not a run id: message dropped", run_id)
        return "invalid"
    # Every line logged while the run executes names it (run_execute adds its tenant, job and
    # schedule once claimed); so does the task's span, when traced (Celery's instrumentation
    # opened it: scheduler_project/tracing.py).
    with structlog.contextvars.bound_contextvars(run_id=run_id, task_id=self.request.id or ""):
        result = services.run_execute(run_id=pk, worker_name=self.request.hostname or "")
    tracing.span_annotate({"scheduler.run.id": run_id, "scheduler.run.result": result})
    return result
