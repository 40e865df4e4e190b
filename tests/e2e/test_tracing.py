"""One trace per run across real processes: a beat (or the API under gunicorn), a prefork Celery
worker and the webhook receiver. The processes export their spans with the real OTLP/HTTP
exporter to a collector in the test (tests/e2e/otlp.py), which is all the configuration they get:
``OTEL_EXPORTER_OTLP_ENDPOINT``."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from runs.models import Run, RunStatus
from scheduler_project.models import OutboxEvent
from schedules.models import Job
from tests.conftest import make_token
from tests.e2e.harness import Processes, Receiver, wait_for
from tests.e2e.otlp import OtlpCollector, Span
from tests.factories import TENANT, JobFactory, ScheduleFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXECUTE = "runs.execute_run"


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    server = OtlpCollector()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def processes(tmp_path: Path, queue: str, collector: OtlpCollector) -> Iterator[Processes]:
    running = Processes(tmp_path)
    # Only the endpoint, as a deployment would set it; a short batch delay so spans arrive fast.
    running.env = {key: value for key, value in running.env.items() if not key.startswith("OTEL_")}
    running.env.update(OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
    yield running
    running.stop()


def _job(receiver: Receiver, queue: str) -> Job:
    target = {"type": "HTTP", "method": "POST", "url": receiver.url, "headers": {}}
    return JobFactory.create(key="trace.webhook", queue=queue, target=target)


def _traceparent(receiver: Receiver, processes: Processes) -> tuple[str, str]:
    """The (trace id, parent span id) of the webhook's one request."""
    [request] = wait_for(lambda: receiver.requests, timeout=30, message=processes.logs)
    headers = {name.lower(): value for name, value in request.headers.items()}
    version, trace_id, parent_id, _flags = headers["traceparent"].split("-")
    assert version == "00"
    return trace_id, parent_id


def _spans(collector: OtlpCollector, trace_id: str, processes: Processes, *names: str) -> list[Span]:
    """The trace's spans, once every one of ``names`` has arrived."""

    def complete() -> list[Span] | None:
        spans = collector.trace(trace_id)
        return spans if set(names) <= {span.name for span in spans} else None

    def explain() -> str:
        return f"spans of {trace_id}: {[s.name for s in collector.trace(trace_id)]}\n{processes.logs()}"

    result: list[Span] = wait_for(complete, timeout=30, message=explain)
    return result


def _one(spans: list[Span], name: str) -> Span:
    [span] = [span for span in spans if span.name == name]
    return span


def _assert_worker_part(spans: list[Span], publish: Span, parent_id: str, run: Run) -> None:
    """The worker's side of the trace: the task continues the publish, delivers, and its request
    is the webhook's parent; the run's claim queries are in it too."""
    task = _one(spans, f"run/{EXECUTE}")
    assert (task.service, task.kind, task.parent_id) == ("scheduler-worker", "CONSUMER", publish.span_id)
    assert task.attributes["scheduler.run.id"] == str(run.pk)
    assert task.attributes["scheduler.run.result"] == RunStatus.SUCCEEDED
    deliver = _one(spans, "run.deliver")
    assert (deliver.parent_id, deliver.attributes["scheduler.target.type"]) == (task.span_id, "HTTP")
    post = _one(spans, "POST")
    assert (post.kind, post.parent_id, post.span_id) == ("CLIENT", deliver.span_id, parent_id)
    queries = [s for s in spans if s.service == "scheduler-worker" and s.kind == "CLIENT" and s.name != "POST"]
    assert queries, "the claim's queries are spans of the task"
    assert all(s.attributes.get("db.system") == "postgresql" for s in queries)
    # Domain events recorded while the worker ran the trace carry its context to the bus.
    events = OutboxEvent.objects.filter(
        aggregate_id=str(run.pk), type__in=["scheduler.run.started", "scheduler.run.succeeded"]
    )
    assert events.count() == 2
    assert all(event.traceparent.split("-")[1] == task.trace_id for event in events)


def test_one_trace_runs_from_the_beats_slot_through_the_worker_to_the_webhook(
    processes: Processes, receiver: Receiver, collector: OtlpCollector, queue: str
) -> None:
    job = _job(receiver, queue)
    at = timezone.now().replace(microsecond=0) + timedelta(seconds=2)
    trigger = {"version": 1, "type": "ONE_SHOT", "run_at": at.isoformat()}
    schedule = ScheduleFactory.create(job=job, trigger=trigger, timezone="UTC", next_fire_at=at)
    processes.wait_all_ready(processes.worker(queue), processes.beat())

    trace_id, parent_id = _traceparent(receiver, processes)
    run = wait_for(lambda: Run.objects.filter(schedule=schedule, status=RunStatus.SUCCEEDED).first())
    spans = _spans(collector, trace_id, processes, "schedule.fire", f"apply_async/{EXECUTE}", f"run/{EXECUTE}", "POST")

    fire = _one(spans, "schedule.fire")
    assert (fire.service, fire.parent_id) == ("scheduler-beat", ""), "the slot is the root of the run's trace"
    assert fire.attributes["scheduler.run.id"] == str(run.pk)
    assert fire.attributes["scheduler.schedule.id"] == str(schedule.pk)
    assert fire.attributes["scheduler.run.scheduled_for"] == at.isoformat()
    assert fire.attributes["messaging.destination.name"] == queue
    publish = _one(spans, f"apply_async/{EXECUTE}")
    assert (publish.service, publish.kind, publish.parent_id) == ("scheduler-beat", "PRODUCER", fire.span_id)
    _assert_worker_part(spans, publish, parent_id, run)


@pytest.fixture
def api_url(processes: Processes) -> str:
    return processes.api()


def test_a_manual_trigger_is_one_trace_from_the_api_request_to_the_webhook(
    processes: Processes, receiver: Receiver, collector: OtlpCollector, queue: str, api_url: str
) -> None:
    job = _job(receiver, queue)
    schedule = ScheduleFactory.create(job=job)
    worker = processes.worker(queue)
    processes.wait_ready(worker)

    request = urllib.request.Request(
        f"{api_url}/api/v1/schedules/{schedule.pk}/trigger",
        data=b"{}",
        method="POST",
        headers={
            "Authorization": f"Bearer {make_token(TENANT, 'scheduler:operate')}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202

    trace_id, parent_id = _traceparent(receiver, processes)
    run = wait_for(lambda: Run.objects.filter(schedule=schedule, status=RunStatus.SUCCEEDED).first())
    spans = _spans(collector, trace_id, processes, "run.enqueue", f"apply_async/{EXECUTE}", f"run/{EXECUTE}", "POST")

    [server] = [s for s in spans if s.kind == "SERVER"]
    assert (server.service, server.parent_id) == ("scheduler-api", "")
    assert str(schedule.pk) not in server.name  # named by its route, never by ids
    enqueue = _one(spans, "run.enqueue")
    assert enqueue.attributes["scheduler.run.kind"] == "MANUAL"
    publish = _one(spans, f"apply_async/{EXECUTE}")
    # The API never imports the task module, so Celery's instrumentation ends the publish span
    # early (scheduler_project/tracing.py); the context it sends is still the run's.
    assert (publish.service, publish.parent_id) == ("scheduler-api", enqueue.span_id)
    assert enqueue.parent_id == server.span_id
    _assert_worker_part(spans, publish, parent_id, run)
    # The probe gunicorn answered before the test began is not traced (DEFAULT_EXCLUDED_URLS).
    assert not [s for s in collector.spans if s.kind == "SERVER" and "healthz" in str(s.attributes)]
