"""``GET /metrics``: the processes' metrics plus what the database and the broker know now.

The events the processes recorded (:mod:`scheduler_project.metrics`) come from the multiprocess
files, or from this process's registry without ``PROMETHEUS_MULTIPROC_DIR``. To them the scrape
adds gauges read at that moment, each with a few bounded queries:

- running runs and runs waiting for a concurrency slot, per job, with the job's limit: the
  ``METRICS_TOP_JOBS`` jobs with the most (one grouped query over the partial indexes of running
  and waiting runs), and fleet-wide totals so the cut hides nothing from a sum;
- broker queue depths: Redis ``LLEN`` of every queue a job routes to (capability queues
  included, at most ``METRICS_MAX_QUEUES``), in one pipelined round trip;
- the outbox backlog: events waiting for the relay and the age of the oldest;
- the beat leader: whether a valid lease is held, its age and fencing token;
- the worker fleet: workers per status, and the slots and busy slots of the live ones.

A part that fails (the broker is down) is left out and ``scheduler_scrape_collector_up`` says
which; the rest is still served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from uuid import UUID

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from runs.models import Run, RunStatus
from runs.routing import run_queue
from scheduler_project import prometheus
from scheduler_project.broker import queue_depths
from scheduler_project.selectors import outbox_backlog
from schedules.models import Job
from schedules.selectors import beat_lease_state
from workers.models import LIVE_STATUSES, Worker, WorkerStatus

logger = logging.getLogger(__name__)

DEFAULT_TOP_JOBS = 20
DEFAULT_MAX_QUEUES = 100


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def _jobs() -> Iterator[Metric]:
    top = getattr(settings, "METRICS_TOP_JOBS", DEFAULT_TOP_JOBS)
    running_by_job: dict[UUID, int] = dict(
        Run.objects.filter(status=RunStatus.RUNNING).values_list("job_id").annotate(n=Count("id")).order_by()
    )
    waiting_by_job: dict[UUID, int] = dict(
        Run.objects.filter(status=RunStatus.QUEUED, blocked_at__isnull=False)
        .values_list("job_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    totals = _gauge("scheduler_runs_in_state", "Runs running now, and runs waiting for a concurrency slot.", ["state"])
    totals.add_metric(["running"], sum(running_by_job.values()))
    totals.add_metric(["waiting_for_slot"], sum(waiting_by_job.values()))
    yield totals

    def busiest(counts: dict[UUID, int]) -> list[UUID]:
        return sorted(counts, key=lambda job_id: -counts[job_id])[:top]

    chosen = set(busiest(running_by_job)) | set(busiest(waiting_by_job))
    running = _gauge("scheduler_job_running_runs", f"Running runs of the {top} busiest jobs.", ["tenant", "job"])
    waiting = _gauge(
        "scheduler_job_waiting_runs", f"Runs waiting for a slot, of the {top} most waited-on jobs.", ["tenant", "job"]
    )
    limit = _gauge(
        "scheduler_job_concurrency_limit", "The concurrency limit of those jobs that have one.", ["tenant", "job"]
    )
    for job_id, tenant, key, job_limit in Job.objects.filter(pk__in=chosen).values_list(
        "pk", "tenant_id", "key", "concurrency_limit"
    ):
        running.add_metric([tenant, key], running_by_job.get(job_id, 0))
        waiting.add_metric([tenant, key], waiting_by_job.get(job_id, 0))
        if job_limit is not None:
            limit.add_metric([tenant, key], job_limit)
    yield from (running, waiting, limit)


def _queues() -> list[str]:
    cap = getattr(settings, "METRICS_MAX_QUEUES", DEFAULT_MAX_QUEUES)
    routes = Job.objects.values_list("queue", "required_capabilities").distinct().order_by("queue")[: cap * 4]
    names = {settings.CELERY_TASK_DEFAULT_QUEUE} | {run_queue(queue, caps or []) for queue, caps in routes}
    return sorted(names)[:cap]


def _broker() -> Iterator[Metric]:
    depths = queue_depths(_queues())
    if depths is None:
        return  # the embedded filesystem broker: no queue lengths to read
    depth = _gauge("scheduler_broker_queue_depth", "Messages waiting in a broker queue (Redis LLEN).", ["queue"])
    for queue, messages in depths.items():
        depth.add_metric([queue], messages)
    yield depth


def _outbox() -> Iterator[Metric]:
    backlog = outbox_backlog()
    yield GaugeMetricFamily(
        "scheduler_outbox_pending_events", "Domain events waiting for the relay.", value=backlog.pending
    )
    yield GaugeMetricFamily(
        "scheduler_outbox_oldest_pending_age_seconds",
        "How long the oldest waiting event has waited (0: none waits).",
        value=backlog.oldest_age_seconds or 0.0,
    )


def _beat() -> Iterator[Metric]:
    lease = beat_lease_state()
    yield GaugeMetricFamily(
        "scheduler_beat_leader", "1 while a beat holds a valid leader lease.", value=int(bool(lease and lease.valid))
    )
    if lease is not None:
        yield GaugeMetricFamily(
            "scheduler_beat_leader_lease_age_seconds",
            "Since the leader last renewed its lease.",
            value=lease.age_seconds,
        )
        yield GaugeMetricFamily(
            "scheduler_beat_leader_token",
            "The lease's fencing token: it grows when the lease changes hands.",
            value=lease.token,
        )


def _workers() -> Iterator[Metric]:
    rows = Worker.objects.values("status").annotate(
        n=Count("id"),
        slots=Sum("concurrency", filter=Q(status__in=LIVE_STATUSES)),
        busy=Sum("active_runs", filter=Q(status__in=LIVE_STATUSES)),
    )
    count = _gauge("scheduler_workers", "Registered workers per status.", ["status"])
    seen = {row["status"]: row for row in rows.order_by()}
    for status in WorkerStatus.values:
        count.add_metric([status], seen[status]["n"] if status in seen else 0)
    slots = sum(row["slots"] or 0 for row in seen.values())
    busy = sum(row["busy"] or 0 for row in seen.values())
    yield count
    yield GaugeMetricFamily(
        "scheduler_worker_slots", "Concurrency of the live (ONLINE, DRAINING) workers.", value=slots
    )
    yield GaugeMetricFamily(
        "scheduler_worker_busy_slots", "Runs the live workers reported running at their last heartbeat.", value=busy
    )
    yield GaugeMetricFamily(
        "scheduler_worker_utilisation",
        "Busy slots over slots of the live workers (0 without any).",
        value=busy / slots if slots else 0.0,
    )


PARTS: dict[str, Callable[[], Iterator[Metric]]] = {
    "jobs": _jobs,
    "broker": _broker,
    "outbox": _outbox,
    "beat": _beat,
    "workers": _workers,
}


class StateCollector(Collector):
    """The gauges read from the database and the broker at scrape time."""

    def collect(self) -> Iterator[Metric]:
        up = _gauge("scheduler_scrape_collector_up", "1 when a part of the scrape-time gauges could be read.", ["part"])
        for name, part in PARTS.items():
            try:
                families = list(part())
            except Exception:  # a scrape reports what it can read; the log says what failed
                logger.warning("metrics: reading %s failed", name, exc_info=True)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


class _Union(Collector):
    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


STATE = StateCollector()


def registry() -> Collector:
    """What a scrape exposes: every process's events, and the state read now."""
    return _Union(prometheus.events_registry(), STATE)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format 0.0.4. No authentication: serve it on an internal port or network."""
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_PLAIN_0_0_4)
