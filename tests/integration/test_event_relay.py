"""The outbox relay on real PostgreSQL and real NATS: every event type reaches a subscriber
exactly as docs/events.md documents it, in order per aggregate; JetStream stores each event
once; with NATS stopped changes still commit and their events arrive, in order, after it
restarts. Tests that stop NATS use a nats-server of their own, never the machine's shared one."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from runs import services as run_services
from runs.models import Run, RunKind, RunStatus
from scheduler_project.config import BASE_DIR
from scheduler_project.models import OutboxEvent
from scheduler_project.relay import (
    MESSAGE_CONTENT_TYPE,
    RELAY_LOCK_KEY,
    RelayLoop,
    event_envelope,
    event_message,
    event_subject,
    outbox_purge,
    outbox_relay,
    outbox_relay_all,
    relay_disconnect,
)
from scheduler_project.selectors import outbox_backlog
from schedules import services as schedule_services
from tests.e2e.harness import Nats, Receiver, wait_for
from tests.e2e.nats_server import NatsServer
from tests.factories import JobFactory, RunFactory, ScheduleFactory

DOCS = BASE_DIR / "docs" / "events.md"
MINUTELY = {"version": 1, "type": "CRON", "expression": "* * * * *"}


# --- What docs/events.md promises --------------------------------------------------------------


def _sections() -> dict[str, str]:
    parts = re.split(r"^## ", DOCS.read_text(), flags=re.MULTILINE)
    return {part.splitlines()[0].strip(): part for part in parts[1:]}


def _rows(section: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]


def documented_envelope() -> set[str]:
    return {re.sub(r"`", "", row[0]) for row in _rows(_sections()["The envelope"])}


# Present only when the change was made in a traced operation (tests/integration/test_tracing.py).
TRACE_CONTEXT = {"traceparent", "tracestate"}


def documented_types() -> dict[str, tuple[set[str], str | None]]:
    """``type -> (data fields, status)`` from the schedule and run sections."""
    types: dict[str, tuple[set[str], str | None]] = {}
    for title in ("Schedule events", "Run events"):
        rows = _rows(_sections()[title])
        kinds = [row for row in rows if row[0].startswith("`scheduler.")]
        extras = {row[0].strip("`"): set(re.findall(r"`(\w+)`", row[-1])) for row in kinds}
        fields = {row[0].strip("`") for row in rows if not row[0].startswith("`scheduler.")}
        common = fields - set().union(*extras.values())
        for row in kinds:
            name = row[0].strip("`")
            status = re.findall(r"`([A-Z]+)`", row[2]) if len(row) == 4 else []
            types[name] = (common | extras[name], status[0] if status else None)
    return types


def test_the_docs_cover_every_event_type_of_the_design() -> None:
    types = documented_types()
    assert set(types) == {
        *(f"scheduler.schedule.{e}" for e in ("created", "updated", "enabled", "disabled", "deleted")),
        *(f"scheduler.run.{e}" for e in ("started", "succeeded", "failed", "missed", "dead")),
    }
    assert all(fields for fields, _ in types.values())
    text = DOCS.read_text()
    for worker_event in ("registered", "heartbeat", "offline"):
        assert f"scheduler.worker.{worker_event}" in text
    assert documented_envelope() == {
        "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "tenantid", "data",
        "traceparent", "tracestate",
    }  # fmt: skip


@pytest.mark.django_db
def test_worker_events_carry_exactly_the_documented_fields() -> None:
    from workers.services import worker_mark_offline, worker_register

    rows = _rows(_sections()["Worker events"])
    documented = {
        field.strip().strip("`") for row in rows if not row[0].startswith("`scheduler.") for field in row[0].split(",")
    }
    worker, _ = worker_register(tenant_id="", name="docs@host", hostname="host", queues=["default"])
    worker_mark_offline(worker_id=worker.pk, reason="a clean shutdown")

    events = OutboxEvent.objects.filter(aggregate_type="worker", aggregate_id=str(worker.pk)).order_by("id")
    assert [e.type for e in events] == ["scheduler.worker.registered", "scheduler.worker.offline"]
    for event in events:
        assert set(event.data) <= documented, set(event.data) - documented
    assert documented <= set().union(*(e.data for e in events)) | {"drained_at"}


def test_an_event_of_no_tenant_has_no_tenantid_attribute() -> None:
    event = OutboxEvent(type="scheduler.worker.offline", aggregate_type="worker", aggregate_id="w1", data={"id": "w1"})

    envelope = event_envelope(event)

    assert "tenantid" not in envelope
    assert set(envelope) == documented_envelope() - {"tenantid"} - TRACE_CONTEXT
    assert json.loads(event_message(event)) == envelope
    assert event_subject(event) == "scheduler.worker.offline"


# --- Fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    relay_disconnect(server.url)  # or the relay's client goes on trying to reconnect
    server.stop()


@pytest.fixture
def subscriber(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Nats]]:
    clients: list[Nats] = []

    def connect(url: str) -> Nats:
        client = Nats(url)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Answers a delivery by what its payload asks for: ``{"answer": 400}`` fails it for good,
    ``503`` fails it retryably, anything else succeeds."""
    server = Receiver(answer=lambda request, n: (int(request.json["payload"].get("answer", 200)), {}, 0.0))
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _relay_settings(settings: Any) -> None:
    settings.OUTBOX_RELAY_TIMEOUT_SECONDS = 2.0
    settings.NATS_EVENTS_STREAM = None
    settings.WEBHOOK_HMAC_SECRET = ""
    settings.READY_REQUIRE = ["database", "broker"]  # no beat runs here


def _tenant() -> str:
    return f"relay-{uuid.uuid4().hex[:10]}"


def _events(tenant: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(tenant_id=tenant).order_by("id"))


def _envelopes(client: Nats, tenant: str) -> list[tuple[Any, dict[str, Any]]]:
    """The messages of ``tenant`` the subscriber received, with their decoded bodies, in order
    (the shared server also carries other test databases' events)."""
    received = [(message, json.loads(message.data)) for message in list(client.messages)]
    return [(message, body) for message, body in received if body.get("tenantid") == tenant]


def _rfc3339(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.removesuffix("Z")).replace(tzinfo=UTC)


def _make_every_event(tenant: str, receiver: Receiver, client_for: Callable[..., APIClient]) -> None:
    """Real changes through the API and the services, one of each event type at least."""
    api = client_for(tenant)
    job = JobFactory(tenant_id=tenant, target={"type": "HTTP", "method": "POST", "url": receiver.url}, max_attempts=1)
    created = api.post(
        "/api/v1/schedules",
        {"name": "Nightly", "job": str(job.pk), "trigger": {"type": "CRON", "expression": "0 2 * * *"}},
        format="json",
    )
    assert created.status_code == 201, created.content
    schedule_id = created.json()["id"]
    assert api.patch(f"/api/v1/schedules/{schedule_id}", {"name": "Nightly (eu)"}, format="json").status_code == 200
    assert api.post(f"/api/v1/schedules/{schedule_id}/disable").status_code == 200
    assert api.post(f"/api/v1/schedules/{schedule_id}/enable").status_code == 200
    assert api.delete(f"/api/v1/schedules/{schedule_id}").status_code == 204

    for answer, status in ((200, RunStatus.SUCCEEDED), (400, RunStatus.FAILED), (503, RunStatus.DEAD)):
        run = RunFactory(
            tenant_id=tenant, job=job, schedule=None, kind=RunKind.MANUAL, status=RunStatus.QUEUED,
            payload={"answer": answer},
        )  # fmt: skip
        assert run_services.run_execute(run_id=run.pk, worker_name="w1@relay") == status

    now = timezone.now()
    ScheduleFactory(
        tenant_id=tenant, job=job, trigger=MINUTELY, timezone="UTC", misfire_policy="SKIP",
        misfire_grace_seconds=60, next_fire_at=now.replace(second=0, microsecond=0) - timedelta(minutes=5),
    )  # fmt: skip
    schedule_services.schedule_dispatch_due(now=now)
    assert Run.objects.filter(tenant_id=tenant, status=RunStatus.MISSED).exists()


# --- Every event type, as documented ---------------------------------------------------------


@pytest.mark.django_db
def test_a_subscriber_receives_every_event_type_exactly_as_documented(
    receiver: Receiver, client_for: Callable[..., APIClient], subscriber: Callable[[str], Nats]
) -> None:
    assert settings.NATS_URL, "these tests need NATS_URL (nats://127.0.0.1:4222, JetStream on)"
    client = subscriber(settings.NATS_URL)
    client.subscribe("scheduler.>")
    tenant = _tenant()
    _make_every_event(tenant, receiver, client_for)
    events = _events(tenant)

    result = outbox_relay_all()

    assert result.error == ""
    assert outbox_backlog().pending == 0
    received = wait_for(lambda: (r := _envelopes(client, tenant)) and len(r) >= len(events) and r, timeout=10)
    assert len(received) == len(events)
    # One relay, one connection, one subscriber: even across subjects the order is the outbox's.
    assert [body["id"] for _, body in received] == [str(event.event_id) for event in events]

    documented = documented_types()
    assert {body["type"] for _, body in received} == set(documented)
    for (message, body), event in zip(received, events, strict=True):
        fields, status = documented[body["type"]]
        assert message.subject == body["type"] == event.type
        assert message.headers["Nats-Msg-Id"] == body["id"]
        assert message.headers["Content-Type"] == MESSAGE_CONTENT_TYPE
        assert set(body) == documented_envelope() - TRACE_CONTEXT
        assert body["specversion"] == "1.0"
        assert body["source"] == settings.EVENTS_SOURCE == "/scheduler"
        assert body["datacontenttype"] == "application/json"
        assert body["tenantid"] == tenant
        assert body["subject"] == event.aggregate_id == body["data"]["id"]
        assert _rfc3339(body["time"]) == event.occurred_at
        assert body["data"] == event.data
        assert set(body["data"]) == fields, body["type"]
        if status is not None:
            assert body["data"]["status"] == status
    # The outbox records what it published.
    assert all(e.published_at is not None and e.publish_attempts == 1 for e in _events(tenant))


@pytest.mark.django_db
def test_events_of_one_aggregate_arrive_in_the_order_they_happened(
    receiver: Receiver, client_for: Callable[..., APIClient], subscriber: Callable[[str], Nats]
) -> None:
    client = subscriber(settings.NATS_URL)
    client.subscribe("scheduler.>")
    tenant = _tenant()
    _make_every_event(tenant, receiver, client_for)

    outbox_relay_all()

    received = wait_for(lambda: (r := _envelopes(client, tenant)) and len(r) == len(_events(tenant)) and r)
    by_aggregate: dict[str, list[str]] = {}
    for _, body in received:
        by_aggregate.setdefault(body["subject"], []).append(body["type"].rsplit(".", 1)[1])
    lifecycles = sorted(by_aggregate.values(), key=len)
    assert ["created", "updated", "disabled", "enabled", "deleted"] in lifecycles
    assert ["started", "succeeded"] in lifecycles
    assert ["started", "failed"] in lifecycles
    assert ["started", "dead"] in lifecycles
    assert ["missed"] in lifecycles


# --- JetStream -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_jetstream_stores_each_event_once_even_when_published_twice(
    nats_server: NatsServer, subscriber: Callable[[str], Nats], settings: Any
) -> None:
    settings.NATS_EVENTS_STREAM = "SCHEDULER_EVENTS"
    schedule = ScheduleFactory(tenant_id=_tenant())
    schedule_services.schedule_set_enabled(schedule=schedule, enabled=False)
    schedule_services.schedule_set_enabled(schedule=schedule, enabled=True)
    events = list(OutboxEvent.objects.order_by("id"))

    assert outbox_relay(url=nats_server.url).published == len(events) == 2

    client = subscriber(nats_server.url)
    info = client.call(client.nc.jetstream().stream_info("SCHEDULER_EVENTS"))
    assert info.config.subjects == ["scheduler.>"]
    assert info.state.messages == 2
    stored = [client.stream_message("SCHEDULER_EVENTS", seq) for seq in (1, 2)]
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [str(e.event_id) for e in events]
    assert [json.loads(m.data)["type"] for m in stored] == ["scheduler.schedule.disabled", "scheduler.schedule.enabled"]

    # A relay that died before recording the publish sends the event again: the stream drops it.
    OutboxEvent.objects.filter(pk=events[0].pk).update(published_at=None)
    assert outbox_relay(url=nats_server.url).published == 1

    assert client.call(client.nc.jetstream().stream_info("SCHEDULER_EVENTS")).state.messages == 2
    assert OutboxEvent.objects.get(pk=events[0].pk).publish_attempts == 2


# --- NATS stopped ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_with_nats_stopped_changes_commit_and_the_events_arrive_in_order_after_it_restarts(
    nats_server: NatsServer,
    receiver: Receiver,
    client_for: Callable[..., APIClient],
    subscriber: Callable[[str], Nats],
    settings: Any,
) -> None:
    settings.NATS_URL = nats_server.url  # /readyz reports the relay as on
    settings.NATS_EVENTS_STREAM = "SCHEDULER_EVENTS"
    settings.OUTBOX_RELAY_TIMEOUT_SECONDS = 1.0
    tenant = _tenant()
    api = client_for(tenant)
    job = JobFactory(tenant_id=tenant, target={"type": "HTTP", "method": "POST", "url": receiver.url})
    created = api.post(
        "/api/v1/schedules",
        {"name": "Hourly", "job": str(job.pk), "trigger": {"type": "CRON", "expression": "0 * * * *"}},
        format="json",
    )
    schedule_id = created.json()["id"]
    assert outbox_relay().published == 1

    nats_server.stop()
    # Changes commit while the bus is down.
    assert api.patch(f"/api/v1/schedules/{schedule_id}", {"name": "Hourly (eu)"}, format="json").status_code == 200
    assert api.post(f"/api/v1/schedules/{schedule_id}/disable").status_code == 200
    run = RunFactory(tenant_id=tenant, job=job, schedule=None, kind=RunKind.MANUAL, status=RunStatus.QUEUED)
    assert run_services.run_execute(run_id=run.pk, worker_name="w1@relay") == RunStatus.SUCCEEDED
    assert api.post(f"/api/v1/schedules/{schedule_id}/enable").status_code == 200
    events = _events(tenant)
    assert [e.type.rsplit(".", 1)[1] for e in events] == [
        "created", "updated", "disabled", "started", "succeeded", "enabled",
    ]  # fmt: skip

    # The relay records the failure on the oldest waiting event and publishes nothing after it.
    for attempt in (1, 2):
        result = outbox_relay()
        assert (result.published, result.error != "") == (0, True)
        head, *rest = _events(tenant)[1:]
        assert (head.published_at, head.publish_attempts) == (None, attempt)
        assert head.last_error
        assert all((e.published_at, e.publish_attempts) == (None, 0) for e in rest)
    backlog = outbox_backlog()
    assert (backlog.pending, backlog.publish_attempts, backlog.last_error) == (5, 2, head.last_error)
    assert backlog.oldest_occurred_at == events[1].occurred_at
    assert backlog.oldest_age_seconds is not None
    # /readyz reports the backlog, never as a check of its own: whether NATS being down makes the
    # answer 503 is up to READY_REQUIRE.
    for required, status in ((["database", "broker", "nats"], 503), (["database", "broker"], 200)):
        settings.READY_REQUIRE = required
        ready = APIClient().get("/readyz")
        assert ready.status_code == status
        assert ready.json()["checks"]["nats"].startswith("down: ")
        reported = ready.json()["events"]
        assert reported["oldest_age_seconds"] >= backlog.oldest_age_seconds >= 0
        assert reported == {**backlog.as_dict(), "oldest_age_seconds": reported["oldest_age_seconds"]}
        assert reported["relay"] == "nats"

    nats_server.start()

    def drained() -> bool:
        outbox_relay_all()
        return outbox_backlog().pending == 0

    wait_for(drained, timeout=30, interval=0.5)
    client = subscriber(nats_server.url)
    info = client.call(client.nc.jetstream().stream_info("SCHEDULER_EVENTS"))
    assert info.state.messages == len(events)  # nothing lost, nothing twice
    stored = [client.stream_message("SCHEDULER_EVENTS", seq) for seq in range(1, len(events) + 1)]
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [str(e.event_id) for e in events]
    assert all(e.published_at is not None for e in _events(tenant))


@pytest.mark.django_db
def test_a_publish_that_fails_stops_the_batch_and_keeps_the_order(settings: Any) -> None:
    schedule = ScheduleFactory(tenant_id=_tenant())
    for enabled in (False, True, False):
        schedule_services.schedule_set_enabled(schedule=schedule, enabled=enabled)

    result = outbox_relay(url="nats://127.0.0.1:9", timeout=1.0)  # nothing listens on the discard port

    assert (result.published, result.more) == (0, False)
    assert result.error
    assert [(e.publish_attempts, bool(e.last_error)) for e in OutboxEvent.objects.order_by("id")] == [
        (1, True), (0, False), (0, False),
    ]  # fmt: skip


# --- Without a bus, one relay at a time, the loop, retention --------------------------------


@pytest.mark.django_db
def test_without_nats_url_events_stay_in_the_outbox(settings: Any) -> None:
    settings.NATS_URL = None
    schedule_services.schedule_set_enabled(schedule=ScheduleFactory(enabled=True), enabled=False)

    assert outbox_relay() == outbox_relay().__class__()
    [event] = OutboxEvent.objects.all()
    assert (event.published_at, event.publish_attempts) == (None, 0)
    backlog = outbox_backlog()
    assert (backlog.relay, backlog.pending) == ("off", 1)
    assert APIClient().get("/readyz").json()["events"]["relay"] == "off"


@pytest.mark.django_db(transaction=True)
def test_only_one_relay_publishes_at_a_time(nats_server: NatsServer) -> None:
    schedule_services.schedule_set_enabled(schedule=ScheduleFactory(enabled=True), enabled=False)
    database = connection.settings_dict
    other = psycopg2.connect(
        dbname=database["NAME"], user=database["USER"], password=database["PASSWORD"],
        host=database["HOST"], port=database["PORT"],
    )  # fmt: skip
    try:
        with other.cursor() as cursor:  # another relay, mid-batch
            cursor.execute("SELECT pg_advisory_lock(%s)", [RELAY_LOCK_KEY])
        assert outbox_relay(url=nats_server.url).busy
        assert OutboxEvent.objects.get().published_at is None
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [RELAY_LOCK_KEY])
        assert outbox_relay(url=nats_server.url).published == 1
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_the_relay_loop_publishes_on_its_thread_while_active(
    nats_server: NatsServer, subscriber: Callable[[str], Nats], settings: Any
) -> None:
    settings.OUTBOX_RELAY_INTERVAL_SECONDS = 0.1
    client = subscriber(nats_server.url)
    client.subscribe("scheduler.>")
    leading = False
    loop = RelayLoop(url=nats_server.url, active=lambda: leading)
    loop.start()
    try:
        schedule = ScheduleFactory(enabled=True)
        schedule_services.schedule_set_enabled(schedule=schedule, enabled=False)
        wait_for(lambda: loop._thread is not None and loop._thread.is_alive(), timeout=2)
        assert OutboxEvent.objects.get().published_at is None  # a standby does not relay
        leading = True
        wait_for(lambda: OutboxEvent.objects.get().published_at is not None, timeout=5)
        [message] = wait_for(lambda: list(client.messages), timeout=5)
        assert message.subject == "scheduler.schedule.disabled"
    finally:
        loop.stop()
    assert loop._thread is None


@pytest.mark.django_db
def test_purge_deletes_old_published_events_but_keeps_schedule_events_and_the_backlog() -> None:
    now = timezone.now()
    old, young = now - timedelta(days=40), now - timedelta(days=1)
    schedule = ScheduleFactory()
    run = RunFactory(schedule=schedule)
    rows = {
        "old published run event": (old, now, "run", run.pk),
        "old unpublished run event": (old, None, "run", run.pk),
        "old published schedule event": (old, now, "schedule", schedule.pk),
        "young published run event": (young, now, "run", run.pk),
    }
    ids = {
        name: OutboxEvent.objects.create(
            tenant_id="acme", type=f"scheduler.{kind}.x", aggregate_type=kind, aggregate_id=str(pk),
            occurred_at=occurred_at, published_at=published_at,
        ).pk
        for name, (occurred_at, published_at, kind, pk) in rows.items()
    }  # fmt: skip

    assert outbox_purge(older_than=timedelta(days=30)) == 1
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == set(ids.values()) - {ids["old published run event"]}
    assert outbox_purge(older_than=timedelta(days=30), include_unpublished=True) == 1
    assert not OutboxEvent.objects.filter(pk=ids["old unpublished run event"]).exists()


# --- Commands and the admin --------------------------------------------------------------------


@pytest.mark.django_db
def test_relay_events_once_publishes_and_reports(nats_server: NatsServer, settings: Any) -> None:
    schedule_services.schedule_set_enabled(schedule=ScheduleFactory(enabled=True), enabled=False)

    with pytest.raises(CommandError, match="publishing stopped"):
        call_command("relay_events", "--once", "--url", "nats://127.0.0.1:9", stdout=StringIO())
    out = StringIO()
    call_command("relay_events", "--once", "--url", nats_server.url, stdout=out)

    assert out.getvalue().strip() == "published 1 events; no events waiting"
    settings.NATS_URL = None
    with pytest.raises(CommandError, match="NATS_URL is not set"):
        call_command("relay_events", "--once")


@pytest.mark.django_db
def test_purge_events_command(settings: Any) -> None:
    OutboxEvent.objects.create(
        type="scheduler.run.x", aggregate_type="run", aggregate_id="r",
        occurred_at=timezone.now() - timedelta(days=9), published_at=timezone.now(),
    )  # fmt: skip
    out = StringIO()
    call_command("purge_events", "--days", "8", stdout=out)
    assert out.getvalue().strip() == "deleted 1 events older than 8 days"
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_the_admin_shows_the_backlog_and_publishes_on_request(
    admin_client: Client, nats_server: NatsServer, settings: Any
) -> None:
    settings.NATS_URL = nats_server.url
    schedule = ScheduleFactory(enabled=True)
    schedule_services.schedule_set_enabled(schedule=schedule, enabled=False)
    schedule_services.schedule_set_enabled(schedule=schedule, enabled=True)
    first = OutboxEvent.objects.order_by("id").first()
    assert first is not None
    changelist = reverse("admin:core_outboxevent_changelist")

    response = admin_client.get(changelist, {"published": "no"})
    assert response.context["title"].startswith("Outbox events — 2 events waiting, the oldest for ")
    assert len(response.context["cl"].result_list) == 2

    # Whatever is selected, every waiting event goes, oldest first.
    admin_client.post(changelist, {"action": "publish_now", "_selected_action": [str(first.pk)]})

    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    response = admin_client.get(changelist)
    assert response.context["title"] == "Outbox events — no events waiting"
