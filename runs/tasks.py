"""Celery tasks of the runs app: thin, the work is in runs.services."""

from __future__ import annotations

import logging
from uuid import UUID

import structlog
from celery import shared_task
from celery.app.task import Task

from runs import services
from runs.models import Run
from scheduler_project import tracing

logger = logging.getLogger(__name__)


# acks_late: the message is acknowledged after the task returns, so a worker that dies mid-run
# leaves it to be delivered again; reject_on_worker_lost: a pool child killed mid-task puts its
# message back rather than acknowledging it. Either redelivery is harmless: the run is claimed by
# a conditional update, and a run whose worker vanished is taken back by its lease anyway.
@shared_task(name=services.EXECUTE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_run(self: Task, run_id: str) -> str:
    try:
        pk = UUID(run_id)
    except (TypeError, ValueError):
        logger.error("execute_run got %r, not a run id: message dropped", run_id)
        return "invalid"
    # Every line logged while the run executes names it, its tenant, job and schedule; so does
    # the task's span, when traced (Celery's instrumentation opened it: scheduler_project/tracing.py).
    context = _log_context(pk, self.request.id)
    with structlog.contextvars.bound_contextvars(**context):
        result = services.run_execute(run_id=pk, worker_name=self.request.hostname or "")
        logger.info("run %s: %s", run_id, result)
    tracing.span_annotate(
        {
            "scheduler.run.id": run_id,
            "scheduler.tenant.id": context.get("tenant_id"),
            "scheduler.job": context.get("job"),
            "scheduler.schedule.id": context.get("schedule_id"),
            "scheduler.run.result": result,
        }
    )
    return result


def _log_context(pk: UUID, task_id: str | None) -> dict[str, str]:
    context = {"run_id": str(pk), "task_id": task_id or ""}
    row = Run.objects.filter(pk=pk).values("tenant_id", "job__key", "schedule_id").first()
    if row is not None:
        context.update(tenant_id=row["tenant_id"], job=row["job__key"])
        if row["schedule_id"] is not None:
            context["schedule_id"] = str(row["schedule_id"])
    return context
