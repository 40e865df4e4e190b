"""The beat leader relays the outbox: a real `celery beat` process publishes a committed change's
event to NATS (a server of this test's own), into the stream it creates, and keeps publishing
when NATS comes back after a stop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_project.models import OutboxEvent
from schedules import services
from tests.e2e.harness import Nats, Processes, wait_for
from tests.e2e.nats_server import NatsServer
from tests.factories import ScheduleFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
STREAM = "SCHEDULER_EVENTS"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def processes(tmp_path: Path, nats_server: NatsServer) -> Iterator[Processes]:
    procs = Processes(tmp_path, NATS_URL=nats_server.url, NATS_EVENTS_STREAM=STREAM)
    yield procs
    procs.stop()


def _stored(server: NatsServer) -> list[dict[str, object]]:
    client = Nats(server.url)
    try:
        count = client.call(client.nc.jetstream().stream_info(STREAM)).state.messages
        return [json.loads(client.stream_message(STREAM, seq).data) for seq in range(1, count + 1)]
    finally:
        client.close()


def test_the_beat_leader_relays_events_and_resumes_after_nats_restarts(
    processes: Processes, nats_server: NatsServer
) -> None:
    beat = processes.beat()
    processes.wait_all_ready(beat)
    schedule = ScheduleFactory(enabled=True)
    services.schedule_set_enabled(schedule=schedule, enabled=False)

    wait_for(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), 15, message=processes.logs)
    assert [e["type"] for e in _stored(nats_server)] == ["scheduler.schedule.disabled"]

    nats_server.stop()
    services.schedule_set_enabled(schedule=schedule, enabled=True)
    services.schedule_set_enabled(schedule=schedule, enabled=False)
    wait_for(lambda: OutboxEvent.objects.filter(publish_attempts__gt=0, published_at__isnull=True).exists(), 15)
    assert beat.poll() is None  # the beat carries on without NATS
    nats_server.start()

    wait_for(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), 60, message=processes.logs)
    stored = _stored(nats_server)
    assert [e["type"] for e in stored] == [
        "scheduler.schedule.disabled",
        "scheduler.schedule.enabled",
        "scheduler.schedule.disabled",
    ]
    assert [e["id"] for e in stored] == [str(e.event_id) for e in OutboxEvent.objects.order_by("id")]
