"""The Django admin on real PostgreSQL: every page of every registered model renders, the tenant
resources and the ledger are read-only, and the schedule actions go through the services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from calendars.models import Calendar, CalendarDate
from runs.models import DeadLetter, Run, RunAttempt, RunStatus
from scheduler_project.models import OutboxEvent
from schedules.models import BeatLease, Job, Schedule
from schedules.services import beat_lease_acquire
from subscriptions.models import EventSubscription
from tests.factories import (
    OTHER_TENANT,
    TENANT,
    CalendarDateFactory,
    CalendarFactory,
    EventSubscriptionFactory,
    JobFactory,
    RunAttemptFactory,
    RunFactory,
    ScheduleFactory,
    WorkerFactory,
)
from workers.models import Worker, WorkerStatus

pytestmark = pytest.mark.django_db

REGISTERED: list[tuple[type[Model], admin.ModelAdmin]] = sorted(
    admin.site._registry.items(), key=lambda item: item[0]._meta.label
)
MODEL_IDS = [model._meta.label for model, _ in REGISTERED]

# Tenant resources change only through the API (and the admin actions that call its services);
# runs and outbox events are history. None of them may be added, edited or deleted here.
READ_ONLY_MODELS = [Job, Schedule, Calendar, CalendarDate, Run, RunAttempt, DeadLetter, OutboxEvent, BeatLease, Worker]
READ_ONLY_MODELS += [EventSubscription]

SEARCH_MISS = "no-such-thing-anywhere"


def _url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _build_samples(admin_user: User) -> dict[type[Model], Model]:
    """One existing object per registered model, with enough variety that every list filter
    has values to offer."""
    job = JobFactory(key="analytics.kpi_rebuild", queue="reports")
    calendar = CalendarFactory(name="Bavaria", country="DE", subdivision="BY")
    calendar_date = CalendarDateFactory(calendar=calendar)
    CalendarFactory(name="Wall Street", country="", market="NYSE")
    schedule = ScheduleFactory(name="KPI rebuild 02:00", job=job, calendar=calendar)
    ScheduleFactory(name="Paused report", enabled=False, timezone="America/New_York")
    worker = WorkerFactory(name="worker-1@host", status=WorkerStatus.ONLINE, active_runs=1)
    WorkerFactory(name="worker-2@host", status=WorkerStatus.OFFLINE, tenant_id=TENANT)
    run = RunFactory(schedule=schedule, status=RunStatus.SUCCEEDED, worker=worker, idempotency_key="kpi-2027-01")
    attempt = RunAttemptFactory(run=run, worker=worker, worker_name=worker.name)
    dead = RunFactory(tenant_id=OTHER_TENANT, status=RunStatus.DEAD)
    dead_letter = DeadLetter.objects.create(
        tenant_id=OTHER_TENANT,
        run=dead,
        job=dead.job,
        series=1,
        attempts=3,
        payload={"scope": "all"},
        target=dead.job.target,
        error_type="RetryableError",
        error_message="POST https://example.test/hook answered 503",
        response_status=503,
    )
    event = OutboxEvent.objects.create(
        tenant_id=TENANT,
        type="scheduler.schedule.created",
        aggregate_type="schedule",
        aggregate_id=str(schedule.pk),
        data={"id": str(schedule.pk)},
    )
    beat_lease_acquire(holder="host:123:abc", ttl=timedelta(seconds=10))
    lease = BeatLease.objects.get(name="beat")
    group = Group.objects.create(name="operators")
    admin_user.groups.add(group)
    interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    periodic = PeriodicTask.objects.create(
        name="outbox relay",
        task="scheduler.outbox_relay",
        interval=interval,
        start_time=datetime(2027, 1, 1, tzinfo=UTC),
        last_run_at=datetime(2027, 1, 2, tzinfo=UTC),
    )
    return {
        Group: group,
        User: admin_user,
        PeriodicTask: periodic,
        IntervalSchedule: interval,
        CrontabSchedule: CrontabSchedule.objects.create(minute="0", hour="2"),
        SolarSchedule: SolarSchedule.objects.create(event="sunrise", latitude="48.14", longitude="11.58"),
        ClockedSchedule: ClockedSchedule.objects.create(clocked_time=datetime(2027, 3, 1, 9, tzinfo=UTC)),
        OutboxEvent: event,
        BeatLease: lease,
        Calendar: calendar,
        CalendarDate: calendar_date,
        Job: job,
        Schedule: schedule,
        Run: run,
        RunAttempt: attempt,
        DeadLetter: dead_letter,
        Worker: worker,
        EventSubscription: EventSubscriptionFactory(
            schedule=schedule, subject="erp.invoice.*", last_run=run, matched_count=1, rejected_count=2
        ),
    }


@pytest.fixture
def samples(admin_user: User) -> dict[type[Model], Model]:
    return _build_samples(admin_user)


def _search_term(model_admin: admin.ModelAdmin, obj: Model) -> str:
    """The value of the admin's first search field on ``obj`` (following ``__`` relations)."""
    value: Any = obj
    for part in model_admin.search_fields[0].lstrip("^=@").split("__"):
        value = getattr(value, part)
    return str(value)


def test_every_registered_model_has_a_sample(samples: dict[type[Model], Model]) -> None:
    """A newly registered model must get a sample here, so the page tests below cover it."""
    assert set(samples) == {model for model, _ in REGISTERED}


def test_index(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    listed = {model["object_name"] for app in response.context["app_list"] for model in app["models"]}
    assert listed == {model._meta.object_name for model, _ in REGISTERED}


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=MODEL_IDS)
def test_changelist(
    admin_client: Client, samples: dict[type[Model], Model], model: type[Model], model_admin: admin.ModelAdmin
) -> None:
    response = admin_client.get(_url(model, "changelist"))

    assert response.status_code == 200
    assert samples[model] in response.context["cl"].result_list


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=MODEL_IDS)
def test_changelist_search(
    admin_client: Client, samples: dict[type[Model], Model], model: type[Model], model_admin: admin.ModelAdmin
) -> None:
    if not model_admin.search_fields:
        response = admin_client.get(_url(model, "changelist"), {"q": SEARCH_MISS})
        assert response.status_code == 200
        return
    sample = samples[model]

    hit = admin_client.get(_url(model, "changelist"), {"q": _search_term(model_admin, sample)})
    miss = admin_client.get(_url(model, "changelist"), {"q": SEARCH_MISS})
    by_pk = admin_client.get(_url(model, "changelist"), {"q": str(sample.pk)})

    assert hit.status_code == 200
    assert sample in hit.context["cl"].result_list
    assert miss.status_code == 200
    assert list(miss.context["cl"].result_list) == []
    assert by_pk.status_code == 200


@pytest.mark.parametrize(
    ("model", "model_admin"),
    [(model, model_admin) for model, model_admin in REGISTERED if model_admin.list_filter],
    ids=[model._meta.label for model, model_admin in REGISTERED if model_admin.list_filter],
)
def test_changelist_with_each_filter(
    admin_client: Client, samples: dict[type[Model], Model], model: type[Model], model_admin: admin.ModelAdmin
) -> None:
    """Every choice each list filter offers, applied one at a time, renders (no 500, no ``?e=1``)."""
    changelist = admin_client.get(_url(model, "changelist"))
    cl = changelist.context["cl"]
    # Every filter has something to offer with the sample data, so each one is exercised.
    assert len(cl.filter_specs) == len(model_admin.list_filter)

    applied = 0
    for spec in cl.filter_specs:
        for choice in spec.choices(cl):
            if choice["selected"]:  # "All": the unfiltered list, already fetched above
                continue
            response = admin_client.get(_url(model, "changelist") + choice["query_string"])
            assert response.status_code == 200, (spec.title, choice["query_string"])
            applied += 1
    assert applied >= len(model_admin.list_filter)


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=MODEL_IDS)
def test_change_page(
    admin_client: Client, samples: dict[type[Model], Model], model: type[Model], model_admin: admin.ModelAdmin
) -> None:
    response = admin_client.get(_url(model, "change", samples[model].pk))

    assert response.status_code == 200
    assert response.context["original"] == samples[model]


read_only = pytest.mark.parametrize("model", READ_ONLY_MODELS, ids=lambda m: m._meta.label)


@read_only
def test_read_only_add_page_is_forbidden(admin_client: Client, model: type[Model]) -> None:
    assert admin_client.get(_url(model, "add")).status_code == 403
    assert admin_client.post(_url(model, "add"), {}).status_code == 403


@read_only
def test_read_only_change_page_is_a_view(
    admin_client: Client, samples: dict[type[Model], Model], model: type[Model]
) -> None:
    response = admin_client.get(_url(model, "change", samples[model].pk))

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["has_delete_permission"] is False
    assert b'name="_save"' not in response.content


@read_only
def test_read_only_change_post_is_forbidden(
    admin_client: Client, samples: dict[type[Model], Model], model: type[Model]
) -> None:
    sample = samples[model]
    before = model._default_manager.values().get(pk=sample.pk)

    response = admin_client.post(_url(model, "change", sample.pk), {})

    assert response.status_code == 403
    assert model._default_manager.values().get(pk=sample.pk) == before


@read_only
def test_read_only_delete_is_forbidden(
    admin_client: Client, samples: dict[type[Model], Model], model: type[Model]
) -> None:
    sample = samples[model]

    assert admin_client.get(_url(model, "delete", sample.pk)).status_code == 403
    assert admin_client.post(_url(model, "delete", sample.pk), {"post": "yes"}).status_code == 403
    assert model._default_manager.filter(pk=sample.pk).exists()


@read_only
def test_read_only_offers_no_bulk_delete(
    admin_client: Client, samples: dict[type[Model], Model], model: type[Model]
) -> None:
    sample = samples[model]
    response = admin_client.get(_url(model, "changelist"))
    action_form = response.context["action_form"]
    actions = {name for name, _ in action_form.fields["action"].choices} if action_form else set()

    assert "delete_selected" not in actions
    # Posting the action anyway deletes nothing.
    admin_client.post(_url(model, "changelist"), {"action": "delete_selected", "_selected_action": [str(sample.pk)]})
    assert model._default_manager.filter(pk=sample.pk).exists()


# --- schedule actions -----------------------------------------------------------------------


def _run_action(client: Client, action: str, schedules: list[Schedule]) -> Any:
    return client.post(
        _url(Schedule, "changelist"), {"action": action, "_selected_action": [str(s.pk) for s in schedules]}
    )


def _events(schedule: Schedule) -> list[str]:
    return list(
        OutboxEvent.objects.filter(aggregate_type="schedule", aggregate_id=str(schedule.pk)).values_list(
            "type", flat=True
        )
    )


@pytest.mark.parametrize(
    ("action", "initially", "expected_event"),
    [
        ("disable", True, "scheduler.schedule.disabled"),
        ("enable", False, "scheduler.schedule.enabled"),
    ],
    ids=["disable_enabled", "enable_disabled"],
)
def test_schedule_action_flips_enabled_and_records_event(
    admin_client: Client, action: str, initially: bool, expected_event: str
) -> None:
    schedules = [ScheduleFactory(enabled=initially), ScheduleFactory(enabled=initially, tenant_id=OTHER_TENANT)]
    untouched = ScheduleFactory(enabled=initially)

    response = _run_action(admin_client, action, schedules)

    assert response.status_code == 302
    for schedule in schedules:
        schedule.refresh_from_db()
        assert schedule.enabled is not initially
        assert _events(schedule) == [expected_event]
        event = OutboxEvent.objects.get(aggregate_id=str(schedule.pk))
        assert event.tenant_id == schedule.tenant_id
        assert event.data["enabled"] is not initially
    untouched.refresh_from_db()
    assert untouched.enabled is initially
    assert _events(untouched) == []


@pytest.mark.parametrize(
    ("action", "already"), [("disable", False), ("enable", True)], ids=["disable_disabled", "enable_enabled"]
)
def test_schedule_action_on_unchanged_schedule_records_no_event(
    admin_client: Client, action: str, already: bool
) -> None:
    schedule = ScheduleFactory(enabled=already)

    response = _run_action(admin_client, action, [schedule])

    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.enabled is already
    assert _events(schedule) == []


# --- run actions ----------------------------------------------------------------------------


def test_run_retry_action_replays_failed_runs_and_leaves_the_rest(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    dead = RunFactory(status=RunStatus.DEAD, job__queue="admin-test-retry")
    cancelled = RunFactory(status=RunStatus.CANCELLED, job__queue="admin-test-retry")
    succeeded = RunFactory(status=RunStatus.SUCCEEDED)

    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            _url(Run, "changelist"),
            {"action": "retry", "_selected_action": [str(r.pk) for r in (dead, cancelled, succeeded)]},
            follow=True,
        )

    assert response.status_code == 200
    assert "Retried 2 run(s); 1 not FAILED, DEAD or CANCELLED left alone." in response.content.decode()
    assert {Run.objects.get(pk=r.pk).series for r in (dead, cancelled)} == {2}
    assert Run.objects.get(pk=succeeded.pk).series == 1


def test_run_cancel_action_cancels_only_runs_that_have_not_started(admin_client: Client) -> None:
    queued = RunFactory(status=RunStatus.QUEUED)
    running = RunFactory(status=RunStatus.RUNNING)

    response = admin_client.post(
        _url(Run, "changelist"),
        {"action": "cancel", "_selected_action": [str(queued.pk), str(running.pk)]},
        follow=True,
    )

    assert "Cancelled 1 run(s); 1 already running or finished left alone." in response.content.decode()
    assert Run.objects.get(pk=queued.pk).status == RunStatus.CANCELLED
    assert Run.objects.get(pk=running.pk).status == RunStatus.RUNNING


# --- worker actions -------------------------------------------------------------------------


def test_worker_drain_and_undrain_actions_go_through_the_services(admin_client: Client) -> None:
    """Operators may drain any worker here, the shared fleet's included (no tenant may)."""
    shared = WorkerFactory(status=WorkerStatus.ONLINE)
    dedicated = WorkerFactory(status=WorkerStatus.ONLINE, tenant_id=OTHER_TENANT)
    offline = WorkerFactory(status=WorkerStatus.OFFLINE)
    untouched = WorkerFactory(status=WorkerStatus.ONLINE)
    selected = [str(w.pk) for w in (shared, dedicated, offline)]

    response = admin_client.post(
        _url(Worker, "changelist"), {"action": "drain", "_selected_action": selected}, follow=True
    )

    assert "Drained 3 worker(s)." in response.content.decode()
    statuses = dict(Worker.objects.values_list("pk", "status"))
    assert (statuses[shared.pk], statuses[dedicated.pk], statuses[offline.pk], statuses[untouched.pk]) == (
        WorkerStatus.DRAINING,
        WorkerStatus.DRAINING,
        WorkerStatus.OFFLINE,  # drained: it comes back DRAINING
        WorkerStatus.ONLINE,
    )
    assert Worker.objects.filter(drained_at__isnull=False).count() == 3
    drained = OutboxEvent.objects.filter(type="scheduler.worker.drained")
    assert sorted(e.aggregate_id for e in drained) == sorted(selected)
    assert {e.tenant_id for e in drained} == {"", OTHER_TENANT}

    response = admin_client.post(
        _url(Worker, "changelist"), {"action": "undrain", "_selected_action": selected}, follow=True
    )

    assert "Undrained 3 worker(s)." in response.content.decode()
    assert Worker.objects.get(pk=shared.pk).status == WorkerStatus.ONLINE
    assert Worker.objects.get(pk=offline.pk).status == WorkerStatus.OFFLINE
    assert not Worker.objects.filter(drained_at__isnull=False).exists()
    assert OutboxEvent.objects.filter(type="scheduler.worker.undrained").count() == 3


# --- who may enter --------------------------------------------------------------------------

ADMIN_PAGES: list[tuple[str, Callable[[], str]]] = [
    ("index", lambda: reverse("admin:index")),
    ("schedule_changelist", lambda: _url(Schedule, "changelist")),
    ("run_changelist", lambda: _url(Run, "changelist")),
]


@pytest.mark.parametrize("page", [url for _, url in ADMIN_PAGES], ids=[name for name, _ in ADMIN_PAGES])
def test_non_staff_user_is_redirected_to_login(
    client: Client, django_user_model: type[User], page: Callable[[], str]
) -> None:
    user = django_user_model.objects.create_user(username="tenant-dev", password="not-staff-9f8e7d")
    client.force_login(user)
    url = page()

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={url}"


def test_anonymous_is_redirected_to_login(client: Client) -> None:
    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
