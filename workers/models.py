"""The worker fleet: Celery workers (and external ones) that execute runs."""

from __future__ import annotations

import uuid

from django.db import models

from scheduler_project.models import TimeStampedModel


class WorkerStatus(models.TextChoices):
    ONLINE = "ONLINE", "Online"
    DRAINING = "DRAINING", "Draining"
    OFFLINE = "OFFLINE", "Offline"


# Workers that are expected to send heartbeats: the ones offline detection watches.
LIVE_STATUSES = (WorkerStatus.ONLINE, WorkerStatus.DRAINING)


class Worker(TimeStampedModel):
    """A worker process. Workers are a shared fleet unless one names a tenant.

    ``status`` is what the fleet sees: ONLINE, DRAINING (alive, taking no new runs) or OFFLINE
    (shut down, or silent for longer than WORKER_OFFLINE_AFTER_SECONDS). ``drained_at`` is the
    operator's order, kept apart from liveness: a drained worker that goes offline and comes
    back is still DRAINING until an operator undrains it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Empty: serves every tenant. Otherwise the one tenant whose runs it takes.
    tenant_id = models.CharField(max_length=64, blank=True)
    # Unique per tenant (a Celery worker's name is its hostname, ``celery@host``): registering
    # the same name again is the same worker starting again.
    name = models.CharField(max_length=200)
    hostname = models.CharField(max_length=255)
    queues = models.JSONField(default=list, blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    concurrency = models.PositiveIntegerField(default=1)
    version = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=WorkerStatus.choices, default=WorkerStatus.ONLINE)
    active_runs = models.PositiveIntegerField(default=0)
    # When an operator drained it (API or admin); null when it may take runs.
    drained_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written with the database's clock, and compared with it: hosts' clocks may disagree.
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "name"], name="worker_name_unique_per_tenant"),
        ]
        indexes = [
            # Offline detection: live workers whose last heartbeat is too old.
            models.Index(fields=["status", "last_heartbeat_at"], name="worker_status_heartbeat_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def utilisation(self) -> float:
        return self.active_runs / self.concurrency if self.concurrency else 0.0
