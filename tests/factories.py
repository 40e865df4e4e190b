"""factory_boy factories for every model. Tenant defaults to "acme"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import factory

from calendars.models import Calendar, CalendarDate, CalendarDateKind
from runs.models import AttemptOutcome, Run, RunAttempt, RunKind, RunStatus
from schedules.models import Job, Schedule
from subscriptions.models import EventSubscription
from workers.models import Worker, WorkerStatus

TENANT = "acme"
OTHER_TENANT = "globex"


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    tenant_id = TENANT
    key = factory.Sequence(lambda n: f"analytics.job_{n}")
    name = factory.Sequence(lambda n: f"Job {n}")
    target = factory.LazyFunction(
        lambda: {"type": "HTTP", "method": "POST", "url": "https://example.test/hook", "headers": {}}
    )


class CalendarFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Calendar

    tenant_id = TENANT
    name = factory.Sequence(lambda n: f"Calendar {n}")
    country = "DE"


class CalendarDateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CalendarDate

    calendar = factory.SubFactory(CalendarFactory)
    date = factory.Sequence(lambda n: datetime(2027, 1, 1, tzinfo=UTC).date() + timedelta(days=n))
    kind = CalendarDateKind.HOLIDAY


class ScheduleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Schedule

    tenant_id = TENANT
    name = factory.Sequence(lambda n: f"Schedule {n}")
    job = factory.SubFactory(JobFactory, tenant_id=factory.SelfAttribute("..tenant_id"))
    trigger = factory.LazyFunction(lambda: {"version": 1, "type": "CRON", "expression": "0 2 * * *"})
    timezone = "Europe/Berlin"


class WorkerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Worker

    name = factory.Sequence(lambda n: f"worker-{n}@host")
    hostname = "host"
    queues = factory.LazyFunction(lambda: ["default"])
    concurrency = 4
    status = WorkerStatus.ONLINE


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    tenant_id = TENANT
    schedule = factory.SubFactory(ScheduleFactory, tenant_id=factory.SelfAttribute("..tenant_id"))
    job = factory.SelfAttribute("schedule.job")
    kind = RunKind.SCHEDULED
    scheduled_for = factory.Sequence(lambda n: datetime(2027, 1, 1, 2, tzinfo=UTC) + timedelta(days=n))
    status = RunStatus.SUCCEEDED


class RunAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RunAttempt

    run = factory.SubFactory(RunFactory)
    number = 1
    started_at = factory.LazyAttribute(lambda a: a.run.scheduled_for)
    finished_at = factory.LazyAttribute(lambda a: a.run.scheduled_for + timedelta(seconds=2))
    outcome = AttemptOutcome.SUCCEEDED


class EventSubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EventSubscription

    tenant_id = TENANT
    schedule = factory.SubFactory(ScheduleFactory, tenant_id=factory.SelfAttribute("..tenant_id"))
    subject = factory.Sequence(lambda n: f"erp.events{n}.*")
