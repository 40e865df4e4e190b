"""Event subscriptions on real PostgreSQL: an inbound event triggers its schedule (matching,
filters, tenancy, idempotency, malformed events, paused schedules), and the API and admin that
manage subscriptions."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from runs.models import Run, RunKind, RunStatus
from scheduler_project.api import scopes
from schedules import services as schedule_services
from subscriptions import selectors, services
from subscriptions.api.serializers import SubscriptionInputSerializer
from subscriptions.engine import EVENT_MAX_BYTES, InboundEvent
from subscriptions.models import EventSubscription
from tests.factories import OTHER_TENANT, TENANT, EventSubscriptionFactory, JobFactory, ScheduleFactory
from tests.integration import test_api_fuzz as fuzz

pytestmark = pytest.mark.django_db

INVOICE = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "/erp",
    "type": "erp.invoice.created",
    "data": {"kind": "invoice", "number": "2027-0001", "amount": 120},
}


def _message(
    subject: str = "erp.invoice.created", body: Any = INVOICE, headers: dict[str, str] | None = None, **kwargs: Any
) -> InboundEvent:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return InboundEvent(subject=subject, data=data, headers=headers or {}, **kwargs)


def _handle(message: InboundEvent) -> services.HandleResult:
    return services.subscription_handle(message=message)


def _runs(subscription: EventSubscription) -> list[Run]:
    return list(Run.objects.filter(schedule=subscription.schedule_id).order_by("created_at"))


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- An inbound event triggers its schedule --------------------------------------------------


def test_an_inbound_event_triggers_its_schedule(django_capture_on_commit_callbacks: Any) -> None:
    job = JobFactory(payload={"scope": "all", "subject": "job default"})
    schedule = ScheduleFactory(job=job, payload={"region": "eu"})
    subscription = EventSubscriptionFactory(schedule=schedule, subject="erp.invoice.*")

    with django_capture_on_commit_callbacks() as callbacks:
        result = _handle(_message())

    [run] = _runs(subscription)
    assert [o.outcome for o in result.outcomes] == [services.TRIGGERED]
    assert result.runs() == [run.pk]
    assert run.kind == RunKind.MANUAL
    assert run.status == RunStatus.SCHEDULED
    assert run.tenant_id == TENANT
    assert run.job_id == job.pk
    # The event over the job's and the schedule's payloads.
    assert run.payload == {"scope": "all", "region": "eu", "event": INVOICE, "subject": "erp.invoice.created"}
    assert run.idempotency_key == f"event:{subscription.pk}:ce:/erp#evt-1"
    assert len(callbacks) == 1  # the run is sent to its queue once the transaction commits
    subscription.refresh_from_db()
    assert subscription.matched_count == 1
    assert subscription.last_matched_at is not None
    assert subscription.last_run_id == run.pk
    assert subscription.rejected_count == 0


@pytest.mark.parametrize(
    ("pattern", "subject", "triggers"),
    [
        ("erp.invoice.created", "erp.invoice.created", True),
        ("erp.*.created", "erp.invoice.created", True),
        ("erp.>", "erp.invoice.created.v2", True),
        ("erp.invoice.*", "erp.invoice", False),
        ("erp.invoice.paid", "erp.invoice.created", False),
        ("erp", "erp.invoice", False),
        ("erp", "erp", True),
    ],
    ids=["literal", "star", "gt", "star_needs_a_token", "other_literal", "root_only", "one_token"],
)
def test_subject_patterns(pattern: str, subject: str, triggers: bool) -> None:
    subscription = EventSubscriptionFactory(subject=pattern)
    _handle(_message(subject=subject))
    assert len(_runs(subscription)) == int(triggers)


FILTERS = {
    "type_and_path": ({"type": "erp.invoice.created", "data.kind": "invoice"}, True),
    "number": ({"data.amount": 120}, True),
    "other_kind": ({"data.kind": "credit_note"}, False),
    "string_is_not_number": ({"data.amount": "120"}, False),
    "missing_field": ({"data.customer": "acme"}, False),
}


@pytest.mark.parametrize(("conditions", "triggers"), FILTERS.values(), ids=list(FILTERS))
def test_filters(conditions: dict[str, Any], triggers: bool) -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*", filter=conditions)
    result = _handle(_message())
    assert len(_runs(subscription)) == int(triggers)
    assert [o.outcome for o in result.outcomes] == [services.TRIGGERED if triggers else services.FILTERED]
    subscription.refresh_from_db()
    assert (subscription.matched_count, subscription.rejected_count) == (int(triggers), 0)


def test_every_matching_subscription_triggers_its_own_schedule() -> None:
    invoices = EventSubscriptionFactory(subject="erp.invoice.*", filter={"data.kind": "invoice"})
    everything = EventSubscriptionFactory(subject="erp.>")
    credit_notes = EventSubscriptionFactory(subject="erp.invoice.*", filter={"data.kind": "credit_note"})
    same_schedule = EventSubscriptionFactory(subject="erp.invoice.created", schedule=invoices.schedule)

    result = _handle(_message())

    assert len(result.runs()) == 3
    assert len(_runs(invoices)) == 2  # two subscriptions of one schedule: two runs, two keys
    assert len(_runs(everything)) == 1
    assert _runs(credit_notes) == []
    assert same_schedule.schedule_id == invoices.schedule_id


def test_a_disabled_subscription_triggers_nothing() -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*", enabled=False)
    assert _handle(_message()).outcomes == []
    assert _runs(subscription) == []


def test_a_paused_schedule_is_not_triggered_and_the_event_is_counted() -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*", schedule=ScheduleFactory(enabled=False))

    result = _handle(_message())

    assert [o.outcome for o in result.outcomes] == [services.PAUSED]
    assert _runs(subscription) == []
    subscription.refresh_from_db()
    assert subscription.rejected_count == 1
    assert "paused" in subscription.last_rejection
    assert subscription.matched_count == 0


# --- Tenancy ---------------------------------------------------------------------------------


def test_a_subscription_only_triggers_its_own_tenants_schedule() -> None:
    mine = EventSubscriptionFactory(subject="erp.invoice.*")
    theirs = EventSubscriptionFactory(subject="erp.invoice.*", tenant_id=OTHER_TENANT)

    _handle(_message())

    [my_run] = _runs(mine)
    [their_run] = _runs(theirs)
    assert my_run.tenant_id == TENANT
    assert their_run.tenant_id == OTHER_TENANT
    assert mine.schedule.tenant_id == TENANT
    assert theirs.schedule.tenant_id == OTHER_TENANT


def _scheduler_event(tenant: str | None, schedule: str) -> dict[str, Any]:
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/scheduler", "type": "scheduler.run.dead"}
    if tenant is not None:
        event["tenantid"] = tenant
    return {**event, "data": {"id": str(uuid.uuid4()), "schedule": schedule, "status": "DEAD"}}


@pytest.mark.parametrize(
    ("tenant", "own_schedule", "triggers"),
    [(TENANT, False, True), (None, False, True), (OTHER_TENANT, False, False), (TENANT, True, False)],
    ids=["own_tenant", "shared_fleet", "other_tenant", "own_schedule_would_loop"],
)
def test_scheduler_events_are_seen_by_their_own_tenant_only(
    tenant: str | None, own_schedule: bool, triggers: bool
) -> None:
    subscription = EventSubscriptionFactory(subject="scheduler.run.dead")
    about = str(subscription.schedule_id) if own_schedule else str(ScheduleFactory().pk)
    _handle(_message(subject="scheduler.run.dead", body=_scheduler_event(tenant, about)))
    assert len(_runs(subscription)) == int(triggers)


# --- Idempotency -----------------------------------------------------------------------------

REDELIVERIES = {
    "nats_msg_id": (
        _message(body={"n": 1}, headers={"Nats-Msg-Id": "m-1"}),
        _message(body={"n": 1}, headers={"Nats-Msg-Id": "m-1"}),
    ),
    "cloudevents_id": (_message(), _message()),
    "jetstream_sequence": (
        _message(body={"n": 1}, stream="ERP", sequence=4),
        _message(body={"n": 1}, stream="ERP", sequence=4),
    ),
    "same_body": (_message(body={"n": 1}), _message(body={"n": 1})),
}


@pytest.mark.parametrize(("first", "again"), REDELIVERIES.values(), ids=list(REDELIVERIES))
def test_a_redelivered_event_does_not_trigger_twice(first: InboundEvent, again: InboundEvent) -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*")

    created = _handle(first)
    repeated = _handle(again)

    [run] = _runs(subscription)
    assert [o.outcome for o in created.outcomes] == [services.TRIGGERED]
    assert [(o.outcome, o.run_id) for o in repeated.outcomes] == [(services.DUPLICATE, run.pk)]
    subscription.refresh_from_db()
    assert subscription.matched_count == 1


DISTINCT_EVENTS = {
    "message_ids": (
        _message(body={"n": 1}, headers={"Nats-Msg-Id": "m-1"}),
        _message(body={"n": 1}, headers={"Nats-Msg-Id": "m-2"}),
    ),
    "cloudevents_ids": (_message(body={**INVOICE, "id": "evt-1"}), _message(body={**INVOICE, "id": "evt-2"})),
    "jetstream_sequences": (
        _message(body={"n": 1}, stream="ERP", sequence=4),
        _message(body={"n": 1}, stream="ERP", sequence=5),
    ),
    "bodies": (_message(body={"n": 1}), _message(body={"n": 2})),
}


@pytest.mark.parametrize(("first", "second"), DISTINCT_EVENTS.values(), ids=list(DISTINCT_EVENTS))
def test_distinct_events_trigger_each(first: InboundEvent, second: InboundEvent) -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*")
    _handle(first)
    _handle(second)
    assert len(_runs(subscription)) == 2


def test_a_long_message_id_is_hashed_into_the_key() -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*")
    message = _message(headers={"Nats-Msg-Id": "m" * 500})
    _handle(message)
    _handle(message)
    [run] = _runs(subscription)
    assert run.idempotency_key is not None
    assert len(run.idempotency_key) <= 200


def test_an_event_handled_before_the_subscription_moved_schedules_is_a_duplicate() -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*")
    _handle(_message())
    services.subscription_update(subscription=subscription, data={"schedule": ScheduleFactory().pk})

    result = _handle(_message())

    assert [o.outcome for o in result.outcomes] == [services.DUPLICATE]


# --- Malformed events ------------------------------------------------------------------------

MALFORMED = {
    "not_json": (b"invoice 2027-0001 created", "not_json"),
    "not_an_object": (b'["invoice", "created"]', "not_object"),
    "too_large": (json.dumps({"blob": "x" * EVENT_MAX_BYTES}).encode(), "too_large"),
    "not_utf8": (b'{"kind": "\xff"}', "not_utf8"),
    "nul_character": (b'{"kind": "a\\u0000"}', "unstorable"),
    "nan": (b'{"amount": NaN}', "not_json"),
}


@pytest.mark.parametrize(("body", "reason"), MALFORMED.values(), ids=list(MALFORMED))
def test_a_malformed_event_is_logged_and_counted_and_triggers_nothing(
    body: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*")
    filtered = EventSubscriptionFactory(subject="erp.>", filter={"type": "x"})
    elsewhere = EventSubscriptionFactory(subject="crm.>")
    before = _metric("scheduler_inbound_events_malformed_total", reason=reason)

    result = _handle(_message(body=body))

    assert result.malformed == reason
    assert {o.outcome for o in result.outcomes} == {services.REJECTED}
    assert _runs(subscription) == []
    for counted in (subscription, filtered):  # its filter cannot be read: counted too
        counted.refresh_from_db()
        assert counted.rejected_count == 1
        assert counted.last_rejected_at is not None
        assert reason in counted.last_rejection
    elsewhere.refresh_from_db()
    assert elsewhere.rejected_count == 0
    assert _metric("scheduler_inbound_events_malformed_total", reason=reason) == before + 1
    assert any(reason in record.getMessage() for record in caplog.records)


def test_an_event_on_a_subject_nobody_subscribes_to_is_ignored() -> None:
    assert _handle(_message(subject="nobody.listens", body=b"garbage")).outcomes == []


def test_outcomes_are_counted_in_the_metrics() -> None:
    EventSubscriptionFactory(subject="erp.invoice.*")
    EventSubscriptionFactory(subject="erp.invoice.*", filter={"data.kind": "credit_note"})
    triggered = _metric("scheduler_event_subscription_outcomes_total", outcome="triggered")
    filtered = _metric("scheduler_event_subscription_outcomes_total", outcome="filtered")

    _handle(_message())

    assert _metric("scheduler_event_subscription_outcomes_total", outcome="triggered") == triggered + 1
    assert _metric("scheduler_event_subscription_outcomes_total", outcome="filtered") == filtered + 1


# --- What the consumer listens to ------------------------------------------------------------


def test_the_consumer_listens_to_the_enabled_subjects() -> None:
    EventSubscriptionFactory(subject="erp.invoice.*")
    EventSubscriptionFactory(subject="erp.invoice.*", tenant_id=OTHER_TENANT)
    EventSubscriptionFactory(subject="crm.>", schedule=ScheduleFactory(enabled=False))  # counted when paused
    EventSubscriptionFactory(subject="hr.>", enabled=False)
    assert selectors.subscription_subjects() == ["crm.>", "erp.invoice.*"]


def test_deleting_a_schedule_deletes_its_subscriptions() -> None:
    subscription = EventSubscriptionFactory()
    schedule_services.schedule_delete(schedule=subscription.schedule)
    assert not EventSubscription.objects.filter(pk=subscription.pk).exists()


# --- API -------------------------------------------------------------------------------------


def test_api_create_read_change_delete(api: APIClient) -> None:
    schedule = ScheduleFactory()
    body = {
        "schedule": str(schedule.pk),
        "subject": "erp.invoice.*",
        "filter": {"data.kind": "invoice"},
        "description": "Invoices start the export",
    }

    created = api.post("/api/v1/subscriptions", body, format="json")
    assert created.status_code == 201, created.content
    subscription = created.json()
    assert {k: subscription[k] for k in body} == body
    assert subscription["enabled"] is True
    assert subscription["matched_count"] == 0
    assert subscription["last_run"] is None
    url = f"/api/v1/subscriptions/{subscription['id']}"

    assert api.get(url).json() == subscription
    assert [s["id"] for s in api.get("/api/v1/subscriptions").json()["results"]] == [subscription["id"]]

    _handle(_message())  # counters are the consumer's ...
    changed = api.patch(url, {"subject": "erp.>", "filter": {}, "enabled": False}, format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["subject"], changed.json()["filter"], changed.json()["enabled"]) == ("erp.>", {}, False)
    assert changed.json()["matched_count"] == 1  # ... and a change keeps them
    assert changed.json()["last_run"] is not None

    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_api_refuses_another_tenants_schedule(api: APIClient) -> None:
    foreign = ScheduleFactory(tenant_id=OTHER_TENANT)
    response = api.post("/api/v1/subscriptions", {"schedule": str(foreign.pk), "subject": "erp.>"}, format="json")
    assert response.status_code == 400
    assert "schedule" in response.json()["errors"]
    assert not EventSubscription.objects.exists()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"subject": ">"}, "subject"),
        ({"subject": "erp.>.x"}, "subject"),
        ({"filter": {"data.kind": ["a", "b"]}}, "filter.data.kind"),
        ({"filter": {"data..kind": "a"}}, "filter.data..kind"),
    ],
    ids=["whole_bus", "gt_in_the_middle", "list_value", "empty_segment"],
)
def test_api_names_what_is_wrong(api: APIClient, body: dict[str, Any], path: str) -> None:
    response = api.post(
        "/api/v1/subscriptions", {"schedule": str(ScheduleFactory().pk), "subject": "erp.>", **body}, format="json"
    )
    assert response.status_code == 400
    assert path in response.json()["errors"], response.json()


def test_reading_needs_read_and_writing_needs_admin(client_for: Callable[..., APIClient]) -> None:
    operator = client_for(TENANT, scopes.OPERATE)
    assert operator.get("/api/v1/subscriptions").status_code == 200
    body = {"schedule": str(ScheduleFactory().pk), "subject": "erp.>"}
    assert operator.post("/api/v1/subscriptions", body, format="json").status_code == 403


# --- Admin -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "initially"), [("disable", True), ("enable", False)])
def test_admin_actions_go_through_the_service(admin_client: Client, action: str, initially: bool) -> None:
    chosen = [
        EventSubscriptionFactory(enabled=initially),
        EventSubscriptionFactory(enabled=initially, tenant_id=OTHER_TENANT),
    ]
    untouched = EventSubscriptionFactory(enabled=initially)

    response = admin_client.post(
        reverse("admin:subscriptions_eventsubscription_changelist"),
        {"action": action, "_selected_action": [str(s.pk) for s in chosen]},
    )

    assert response.status_code == 302
    for subscription in chosen:
        subscription.refresh_from_db()
        assert subscription.enabled is not initially
    untouched.refresh_from_db()
    assert untouched.enabled is initially


# --- Failures --------------------------------------------------------------------------------


def test_a_database_failure_asks_for_a_redelivery(monkeypatch: pytest.MonkeyPatch) -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*")

    def unavailable(**kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "schedule_trigger_now", unavailable)
    result = _handle(_message())

    assert [(o.outcome, o.retry) for o in result.outcomes] == [(services.FAILED, True)]
    assert result.retry
    assert _runs(subscription) == []


def test_an_unexpected_failure_is_recorded_and_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    subscription = EventSubscriptionFactory(subject="erp.invoice.*")
    other = EventSubscriptionFactory(subject="erp.>")

    def broken(*, schedule: Any, **kwargs: Any) -> Any:
        if schedule.pk == subscription.schedule_id:
            raise ValueError("a bug")
        return schedule_services.schedule_trigger_now(schedule=schedule, **kwargs)

    monkeypatch.setattr(services, "schedule_trigger_now", broken)
    result = _handle(_message())

    assert sorted(o.outcome for o in result.outcomes) == [services.FAILED, services.TRIGGERED]
    assert not result.retry  # a redelivery would fail the same way
    assert len(_runs(other)) == 1  # one subscription failing does not stop the others
    subscription.refresh_from_db()
    assert subscription.rejected_count == 1
    assert subscription.last_rejection == "trigger failed: ValueError"


def test_the_consumer_survives_a_message_it_cannot_handle(monkeypatch: pytest.MonkeyPatch) -> None:
    from subscriptions import consumer as consumer_module

    def explode(message: InboundEvent) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(consumer_module, "_handle_sync", explode)
    consumer = consumer_module.EventConsumer(url="nats://127.0.0.1:1")
    assert asyncio.run(consumer._handle(_message())) is None  # logged; a JetStream message is nak'ed


# --- Whatever a client sends -----------------------------------------------------------------

SUBJECTS = st.sampled_from(["erp.>", "erp.*.created", ">", "*.x", "erp..x", "a b", "$JS.>"]) | fuzz.text
FILTER_DOCUMENTS = st.dictionaries(
    st.sampled_from(["type", "data.kind", "data..kind", "", "a." * 20]) | fuzz.text, fuzz.json_values, max_size=4
)


@fuzz.FUZZ
@given(data=st.data())
def test_subscription_writes_never_fail_on_input(api: APIClient, data: st.DataObject) -> None:
    """A 201/200 or a 400 problem document, never a 500; a refused write changes nothing."""
    valid = {"schedule": str(ScheduleFactory().pk), "subject": "erp.invoice.*", "filter": {"type": "x"}}
    fields = fuzz.writable_fields(SubscriptionInputSerializer)
    body = data.draw(fuzz.mutated(valid, fields, subject=SUBJECTS, filter=FILTER_DOCUMENTS))
    before = EventSubscription.objects.count()
    response = fuzz.send(api, "post", "/api/v1/subscriptions", body)
    assert response.status_code in (201, 400), (body, response.content[:1000])
    if response.status_code == 400:
        fuzz.assert_refusal(response)
        assert EventSubscription.objects.count() == before
        return
    url = f"/api/v1/subscriptions/{response.json()['id']}"
    assert fuzz.as_stored(api.get(url)) == fuzz.as_stored(response)

    change = data.draw(fuzz.mutated(valid, fields, subject=SUBJECTS, filter=FILTER_DOCUMENTS))
    stored = api.get(url).json()
    response = fuzz.send(api, "patch", url, change)
    assert response.status_code in (200, 400), (change, response.content[:1000])
    if response.status_code == 400:
        fuzz.assert_refusal(response)
        assert api.get(url).json() == stored
    else:
        assert fuzz.as_stored(api.get(url)) == fuzz.as_stored(response)
