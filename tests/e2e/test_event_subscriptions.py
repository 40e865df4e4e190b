"""An inbound event triggers its schedule: `manage.py consume_events` runs as a real process on
the test database, events are published on NATS, and the schedule's MANUAL runs appear with the
event as payload. A malformed event does not stop it; it keeps consuming across a restart of
NATS (a server of the test's own) and, on a JetStream stream, picks up what was published while
it was down. Every process is stopped at teardown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from runs.models import Run, RunKind, RunStatus
from scheduler_project.config import BASE_DIR
from subscriptions.models import EventSubscription
from tests.e2e.harness import Nats, wait_for
from tests.e2e.nats_server import NatsServer
from tests.factories import EventSubscriptionFactory, JobFactory, ScheduleFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class Consumer:
    """``manage.py consume_events`` on the test database, its output in ``consumer.log``."""

    def __init__(self, tmp_path: Path, nats_url: str) -> None:
        database = connection.settings_dict
        self.log = tmp_path / "consumer.log"
        self.env = {
            **os.environ,
            "POSTGRES_URL": f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
            "NATS_URL": nats_url,
            "DATA_DIR": str(tmp_path),
            "LOG_FORMAT": "console",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "consume_events", "--refresh-seconds", "0.5"],
                cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_output(self, text: str, timeout: float = 30, after: int = 0) -> None:
        wait_for(lambda: text in self.output()[after:] or self.died(), timeout, message=self.output)
        assert not self.died(), self.output()

    def died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def terminate(self, timeout: float = 20) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


def _subscription(queue: str, subject: str, **kwargs: Any) -> EventSubscription:
    job = JobFactory(queue=queue, payload={"scope": "all"})
    return EventSubscriptionFactory(schedule=ScheduleFactory(job=job), subject=subject, **kwargs)


def _event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "/erp",
        "type": "erp.invoice.created",
        "data": {"kind": "invoice", "number": n},
        **extra,
    }


def _publish(client: Nats, subject: str, body: Any, headers: dict[str, str] | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    client.call(client.nc.publish(subject, data, headers=headers))
    client.call(client.nc.flush())


def _runs(subscription: EventSubscription) -> list[Run]:
    return list(Run.objects.filter(schedule=subscription.schedule_id).order_by("created_at"))


def _run_for(subscription: EventSubscription, number: int) -> Run | None:
    return next((r for r in _runs(subscription) if r.payload["event"]["data"]["number"] == number), None)


def test_an_inbound_event_triggers_its_schedule(tmp_path: Path, queue: str) -> None:
    """On the machine's NATS server (core NATS: no stream captures the test's subject)."""
    root = f"e2e{uuid.uuid4().hex[:12]}"
    subscription = _subscription(queue, f"{root}.invoice.*", filter={"data.kind": "invoice"})
    consumer = Consumer(tmp_path, settings.NATS_URL or "nats://127.0.0.1:4222")
    client = Nats(consumer.env["NATS_URL"])
    try:
        consumer.start()
        consumer.wait_for_output(f"{root}.invoice.* (core NATS)")

        # Malformed events are logged and counted; the consumer carries on.
        _publish(client, f"{root}.invoice.created", b"invoice 1 created")
        _publish(client, f"{root}.invoice.created", b"[1, 2, 3]")
        _publish(client, f"{root}.invoice.created", json.dumps({"blob": "x" * 70_000}).encode())
        wait_for(lambda: EventSubscription.objects.get(pk=subscription.pk).rejected_count == 3, message=consumer.output)
        assert "not_json" in consumer.output()
        assert not consumer.died()

        _publish(client, f"{root}.invoice.created", _event(1))
        run = wait_for(lambda: _run_for(subscription, 1), message=consumer.output)
        assert run.kind == RunKind.MANUAL
        assert run.payload == {"scope": "all", "event": _event(1), "subject": f"{root}.invoice.created"}
        # Committed and sent to the job's queue, like any manual trigger.
        wait_for(lambda: Run.objects.get(pk=run.pk).status == RunStatus.QUEUED, message=consumer.output)

        # The same event again, one the filter refuses, then another: one run each for 1 and 2.
        _publish(client, f"{root}.invoice.created", _event(1))
        _publish(client, f"{root}.invoice.created", _event(3, data={"kind": "credit_note", "number": 3}))
        _publish(client, f"{root}.invoice.created", _event(2), headers={"Nats-Msg-Id": "msg-2"})
        wait_for(lambda: _run_for(subscription, 2), message=consumer.output)
        assert sorted(r.payload["event"]["data"]["number"] for r in _runs(subscription)) == [1, 2]
        subscription.refresh_from_db()
        assert (subscription.matched_count, subscription.rejected_count) == (2, 3)

        assert consumer.terminate() == 0  # SIGTERM: a clean exit
        assert "event consumer stopped" in consumer.output()
    finally:
        consumer.stop()
        client.close()


def test_the_consumer_follows_new_subscriptions_and_survives_a_nats_restart(
    tmp_path: Path, queue: str, nats_server: NatsServer
) -> None:
    consumer = Consumer(tmp_path, nats_server.url)
    client = Nats(nats_server.url)
    try:
        consumer.start()
        consumer.wait_for_output("NATS: connected")
        subscription = _subscription(queue, "erp.invoice.*")  # created while it runs
        consumer.wait_for_output("erp.invoice.* (core NATS)")
        _publish(client, "erp.invoice.created", _event(1))
        wait_for(lambda: _run_for(subscription, 1), message=consumer.output)

        mark = len(consumer.output())
        nats_server.stop()
        consumer.wait_for_output("disconnected", after=mark)
        nats_server.start()
        consumer.wait_for_output("reconnected", after=mark)

        # Publish until the server has the consumer's subscription again (and the test's client is
        # back too): the event's id makes every copy one run.
        def published_and_run() -> Run | None:
            with contextlib.suppress(Exception):
                _publish(client, "erp.invoice.created", _event(2))
            return _run_for(subscription, 2)

        wait_for(published_and_run, interval=0.5, message=consumer.output)
        assert len(_runs(subscription)) == 2
        assert not consumer.died()
    finally:
        consumer.stop()
        client.close()


def test_on_a_jetstream_stream_nothing_published_while_the_consumer_is_down_is_lost(
    tmp_path: Path, queue: str, nats_server: NatsServer
) -> None:
    client = Nats(nats_server.url)
    client.add_stream("E2E_ERP", ["erp.>"])
    subscription = _subscription(queue, "erp.invoice.*")
    consumer = Consumer(tmp_path, nats_server.url)

    def publish(n: int) -> None:
        client.call(client.nc.jetstream().publish("erp.invoice.created", json.dumps(_event(n)).encode()))

    def published(n: int) -> bool:
        try:
            publish(n)
        except Exception:  # the stream is not back yet
            return False
        return True

    try:
        consumer.start()
        consumer.wait_for_output("erp.invoice.* (JetStream stream E2E_ERP)")
        publish(1)
        client.call(client.nc.jetstream().publish("erp.invoice.created", b"not json"))
        wait_for(lambda: _run_for(subscription, 1), message=consumer.output)
        wait_for(lambda: EventSubscription.objects.get(pk=subscription.pk).rejected_count == 1)

        assert consumer.terminate() == 0
        publish(2)  # while no consumer runs: the durable consumer keeps it
        consumer.start()
        wait_for(lambda: _run_for(subscription, 2), message=consumer.output)

        # Every message was acknowledged, the malformed one included: nothing is delivered again.
        info = client.call(client.nc.jetstream().consumer_info("E2E_ERP", _durable("erp.invoice.*")))
        wait_for(lambda: _pending(client) == (0, 0), message=lambda: f"{_pending(client)}\n{consumer.output()}")
        assert info.config.deliver_policy == "new"  # a new durable does not replay the stream's past
        assert info.config.inactive_threshold == 7 * 86400  # removed by the server once unused for a week

        # NATS restarts (its store survives): the consumer fetches from the same durable again.
        mark = len(consumer.output())
        nats_server.stop()
        consumer.wait_for_output("disconnected", after=mark)
        nats_server.start()
        consumer.wait_for_output("reconnected", after=mark)
        wait_for(lambda: published(3), message=consumer.output)  # once JetStream has restored the stream
        wait_for(lambda: _run_for(subscription, 3), message=consumer.output)
        assert sorted(r.payload["event"]["data"]["number"] for r in _runs(subscription)) == [1, 2, 3]
        assert not consumer.died()
    finally:
        consumer.stop()
        client.close()


def _durable(pattern: str) -> str:
    from subscriptions.consumer import durable_name

    return durable_name(pattern)


def _pending(client: Nats) -> tuple[int, int]:
    info = client.call(client.nc.jetstream().consumer_info("E2E_ERP", _durable("erp.invoice.*")))
    return info.num_pending, info.num_ack_pending
