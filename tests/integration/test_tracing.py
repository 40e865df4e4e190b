"""Tracing in-process, with the SDK's in-memory exporter: the API's request spans, the beat's
span per fired run around its message, the execution's delivery span whose HTTP request carries
``traceparent``, the EVENT target's NATS headers and the trace context of domain events.
(tests/e2e/test_tracing.py follows one trace across real processes; tests/unit/test_tracing.py
shows that nothing is traced, wrapped or even imported when the OTEL variables are unset.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rest_framework.test import APIClient

from runs import services
from runs.models import Run, RunStatus
from scheduler_project import relay, tracing
from scheduler_project.events import event_build, events_record
from scheduler_project.models import OutboxEvent
from schedules.services import schedule_dispatch_due
from tests.e2e.harness import Nats, Receiver
from tests.factories import TENANT, EventSubscriptionFactory, JobFactory, RunFactory, ScheduleFactory

pytestmark = pytest.mark.django_db

EXECUTE = "runs.execute_run"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process for this module's tests, and instrumentation undone after."""
    memory = InMemorySpanExporter()
    assert tracing.tracing_configure("scheduler-test", exporter=memory)
    yield memory
    tracing.tracing_shutdown()
    assert not tracing.tracing_enabled()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Callable[[], list[ReadableSpan]]:
    exporter.clear()
    return lambda: list(exporter.get_finished_spans())


def _hex(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _traceparent(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _parent(span: ReadableSpan) -> str:
    return format(span.parent.span_id, "016x") if span.parent else ""


def _named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [span for span in spans if span.name == name]
    return span


def test_an_api_request_is_a_server_span_that_continues_the_callers_trace(
    spans: Callable[[], list[ReadableSpan]], api: APIClient
) -> None:
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    ScheduleFactory.create()

    response = api.get("/api/v1/schedules", HTTP_TRACEPARENT=f"00-{caller_trace}-{caller_span}-01")

    assert response.status_code == 200
    [server] = [span for span in spans() if span.kind == trace.SpanKind.SERVER]
    assert server.name.startswith("GET api/v1/schedules")  # the route: ids never make a span name
    assert server.attributes is not None
    assert server.attributes["http.status_code"] == 200
    assert (_hex(server)[0], _parent(server)) == (caller_trace, caller_span)


def test_probes_and_scrapes_are_not_traced(spans: Callable[[], list[ReadableSpan]], client: Any) -> None:
    client.get("/healthz")
    client.get("/metrics")

    assert not [span for span in spans() if span.kind == trace.SpanKind.SERVER]


def test_the_beat_sends_each_run_inside_a_span_of_its_own_slot(
    spans: Callable[[], list[ReadableSpan]], queue: str, django_capture_on_commit_callbacks: Any
) -> None:
    job = JobFactory.create(queue=queue)
    due = timezone.now().replace(microsecond=0) - timedelta(seconds=1)
    every_second = {"version": 1, "type": "CRON", "expression": "* * * * * *"}
    for _ in range(2):
        ScheduleFactory.create(job=job, trigger=every_second, timezone="UTC", next_fire_at=due)

    with django_capture_on_commit_callbacks(execute=True):
        run_ids = schedule_dispatch_due(now=due + timedelta(milliseconds=500))

    assert len(run_ids) == 2
    finished = spans()
    fires = [span for span in finished if span.name == "schedule.fire"]
    publishes = [span for span in finished if span.name == f"apply_async/{EXECUTE}"]
    assert len(fires) == len(publishes) == 2
    by_run = {fire.attributes["scheduler.run.id"]: fire for fire in fires if fire.attributes}
    assert set(by_run) == {str(pk) for pk in run_ids}
    assert len({_hex(fire)[0] for fire in fires}) == 2, "one trace per run, not per batch"
    for pk in run_ids:
        run = Run.objects.get(pk=pk)
        fire = by_run[str(pk)]
        assert fire.parent is None, "the slot is the root of its run's trace"
        attributes = dict(fire.attributes or {})
        assert attributes.pop("scheduler.schedule.lag_seconds") >= 0.5
        assert attributes == {
            "scheduler.run.id": str(pk),
            "scheduler.run.kind": "SCHEDULED",
            "scheduler.run.scheduled_for": due.isoformat(),
            "scheduler.run.series": 1,
            "scheduler.schedule.id": str(run.schedule_id),
            "scheduler.job": job.key,
            "scheduler.tenant.id": TENANT,
            "messaging.destination.name": queue,
        }
    # Each message is published inside its own run's span and carries that context, which the
    # worker continues (Celery's instrumentation).
    messages = [json.loads(raw) for raw in redis.Redis.from_url(settings.REDIS_URL).lrange(queue, 0, -1)]
    sent = {message["headers"]["argsrepr"]: message["headers"]["traceparent"] for message in messages}
    assert len(sent) == 2
    for fire in fires:
        [publish] = [span for span in publishes if _parent(span) == _hex(fire)[1]]
        assert sent[repr([_run_id(fire)])] == _traceparent(publish)


def _run_id(span: ReadableSpan) -> str:
    return str((span.attributes or {})["scheduler.run.id"])


def test_other_sends_are_run_enqueue_spans_inside_the_operation_that_sends(
    spans: Callable[[], list[ReadableSpan]], queue: str
) -> None:
    run = RunFactory.create(
        job=JobFactory.create(queue=queue), schedule=None, kind="MANUAL", status=RunStatus.SCHEDULED
    )

    with tracing.span("operator.action"):
        assert services.run_enqueue(run_ids=[run.pk]) == 1

    finished = spans()
    action, enqueue = _named(finished, "operator.action"), _named(finished, "run.enqueue")
    assert _parent(enqueue) == _hex(action)[1]
    assert enqueue.attributes is not None
    assert (enqueue.attributes["scheduler.run.kind"], enqueue.attributes["scheduler.run.id"]) == ("MANUAL", str(run.pk))
    assert "scheduler.schedule.id" not in enqueue.attributes  # None is left out, not sent as ""


def test_the_delivery_is_a_span_whose_http_request_carries_traceparent(
    spans: Callable[[], list[ReadableSpan]], receiver: Receiver
) -> None:
    target = {"type": "HTTP", "method": "POST", "url": receiver.url, "headers": {}}
    run = RunFactory.create(job=JobFactory.create(target=target), schedule=None, kind="MANUAL", status=RunStatus.QUEUED)

    # Celery's task span, in a worker (tests/e2e/test_tracing.py).
    with tracing.span("run/runs.execute_run"):
        assert services.run_execute(run_id=run.pk, worker_name="w1@host") == RunStatus.SUCCEEDED

    finished = spans()
    task, deliver, post = (_named(finished, name) for name in ("run/runs.execute_run", "run.deliver", "POST"))
    assert _parent(deliver) == _hex(task)[1]
    assert (_parent(post), post.kind) == (_hex(deliver)[1], trace.SpanKind.CLIENT)
    assert deliver.attributes == {
        "scheduler.run.id": str(run.pk),
        "scheduler.run.attempt": 1,
        "scheduler.run.series": 1,
        "scheduler.job": run.job.key,
        "scheduler.target.type": "HTTP",
    }
    [request] = receiver.requests
    assert request.headers["traceparent"] == _traceparent(post)
    # The run's events were recorded inside the task's span: they carry its context to the bus.
    events = OutboxEvent.objects.filter(aggregate_id=str(run.pk)).order_by("id")
    assert [event.type for event in events] == ["scheduler.run.started", "scheduler.run.succeeded"]
    assert {event.traceparent for event in events} == {_traceparent(task)}


def test_a_failed_delivery_is_recorded_on_its_span(spans: Callable[[], list[ReadableSpan]], receiver: Receiver) -> None:
    receiver.answer = lambda request, n: (503, {}, 0.0)
    target = {"type": "HTTP", "method": "POST", "url": receiver.url, "headers": {}}
    run = RunFactory.create(job=JobFactory.create(target=target), schedule=None, kind="MANUAL", status=RunStatus.QUEUED)

    assert services.run_execute(run_id=run.pk, worker_name="w1@host") == RunStatus.RETRYING

    deliver = _named(spans(), "run.deliver")
    assert deliver.status.status_code == trace.StatusCode.ERROR
    assert [event.name for event in deliver.events] == ["exception"]


def test_an_event_targets_message_carries_the_trace_context(spans: Callable[[], list[ReadableSpan]]) -> None:
    assert settings.NATS_URL, "this test needs NATS_URL (nats://127.0.0.1:4222)"
    subject = f"test.tracing.{uuid.uuid4().hex[:8]}"
    run = RunFactory.create(
        job=JobFactory.create(target={"type": "EVENT", "subject": subject}),
        schedule=None,
        kind="MANUAL",
        status=RunStatus.QUEUED,
    )
    nats = Nats(settings.NATS_URL)
    try:
        nats.subscribe(subject)
        assert services.run_execute(run_id=run.pk, worker_name="w1@host") == RunStatus.SUCCEEDED
        [message] = nats.messages
    finally:
        nats.close()

    assert message.headers["traceparent"] == _traceparent(_named(spans(), "run.deliver"))
    assert message.headers["Nats-Msg-Id"] == str(run.pk)


def test_events_recorded_in_a_traced_operation_carry_its_context_in_the_envelope(
    spans: Callable[[], list[ReadableSpan]],
) -> None:
    def record() -> OutboxEvent:
        event = event_build(
            tenant_id=TENANT, type="scheduler.test.done", aggregate_type="test", aggregate_id=1, data={}
        )
        with transaction.atomic():
            events_record([event])
        return OutboxEvent.objects.get(pk=event.pk)

    untraced = record()
    with tracing.span("operation"):
        traced = record()

    traceparent = _traceparent(_named(spans(), "operation"))
    assert traced.traceparent == traceparent
    assert relay.event_envelope(traced)["traceparent"] == traceparent
    assert "tracestate" not in relay.event_envelope(traced)  # empty: left out
    assert relay.event_headers(traced)["traceparent"] == traceparent
    assert (untraced.traceparent, untraced.tracestate) == ("", "")
    assert "traceparent" not in relay.event_envelope(untraced)
    assert relay.event_headers(untraced) == {"Content-Type": relay.MESSAGE_CONTENT_TYPE}


def test_a_client_call_outside_any_traced_operation_starts_no_trace(
    spans: Callable[[], list[ReadableSpan]], receiver: Receiver
) -> None:
    requests.get(receiver.url, timeout=5)  # a heartbeat, a relay's poll, an idle tick's query
    with tracing.span("operation"):
        requests.get(receiver.url, timeout=5)

    assert sorted(span.name for span in spans()) == ["GET", "operation"]
    first, second = receiver.requests
    # Sent, if at all, with the sampled flag off: the receiver records nothing either.
    assert not int(first.headers.get("traceparent", "00-0-0-00").split("-")[3], 16) & 0x01
    assert second.headers["traceparent"].split("-")[1] == _hex(_named(spans(), "operation"))[0]


@pytest.mark.django_db(transaction=True)  # the consumer recycles its connection as between requests
def test_an_inbound_event_is_a_consumer_span_in_its_publishers_trace_around_the_runs_it_starts(
    spans: Callable[[], list[ReadableSpan]], queue: str
) -> None:
    from subscriptions.consumer import _handle_sync
    from subscriptions.engine import InboundEvent

    schedule = ScheduleFactory.create(job=JobFactory.create(queue=queue))
    EventSubscriptionFactory.create(schedule=schedule, subject="erp.invoice.*")
    publisher = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    message = InboundEvent(
        subject="erp.invoice.paid", data=json.dumps({"id": "inv-1"}).encode(), headers={"traceparent": publisher}
    )

    result = _handle_sync(message)

    [run_id] = result.runs()
    finished = spans()
    consume, enqueue = _named(finished, "event.consume"), _named(finished, "run.enqueue")
    assert consume.kind == trace.SpanKind.CONSUMER
    assert _hex(consume)[0] == "0af7651916cd43dd8448eb211c80319c"
    assert _parent(consume) == "b7ad6b7169203331"
    assert (consume.attributes or {})["messaging.destination.name"] == "erp.invoice.paid"
    assert _parent(enqueue) == _hex(consume)[1]
    assert _run_id(enqueue) == str(run_id)
