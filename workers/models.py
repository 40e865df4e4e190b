"""The worker fleet: Celery workers (and external ones) that execute runs."""

from __future__ import annotations

import uuid

from django.db import models

from scheduler_project.models import TimeStampedModel


class WorkerStatus(models.TextChoices):
    ONLINE = "ONLINE", "Online"
    DRAINING = "DRAINING", "Draining"
    OFFLINE = "OFFLINE", "Offline"


class Worker(TimeStampedModel):
    """A worker process. Workers are a shared fleet unless one names a tenant."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Empty: serves every tenant. Otherwise the one tenant whose runs it takes.
    tenant_id = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=255)
    queues = models.JSONField(default=list, blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    concurrency = models.PositiveIntegerField(default=1)
    version = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=WorkerStatus.choices, default=WorkerStatus.ONLINE)
    active_runs = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["tenant_id", "name"], name="worker_tenant_name_idx"),
            # Offline detection: live workers whose last heartbeat is too old.
            models.Index(fields=["status", "last_heartbeat_at"], name="worker_status_heartbeat_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def utilisation(self) -> float:
        return self.active_runs / self.concurrency if self.concurrency else 0.0
