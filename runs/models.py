"""Runs (one execution of a job) and their attempts."""

from __future__ import annotations

import uuid

from django.db import models

from scheduler_project.models import TenantModel


class RunStatus(models.TextChoices):
    SCHEDULED = "SCHEDULED", "Scheduled"
    QUEUED = "QUEUED", "Queued"
    RUNNING = "RUNNING", "Running"
    RETRYING = "RETRYING", "Retrying"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    DEAD = "DEAD", "Dead-lettered"
    CANCELLED = "CANCELLED", "Cancelled"
    MISSED = "MISSED", "Missed"
    SKIPPED = "SKIPPED", "Skipped"


ACTIVE_STATUSES = (RunStatus.SCHEDULED, RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING)
FINAL_STATUSES = tuple(s for s in RunStatus if s not in ACTIVE_STATUSES)
# What an operator may cancel (not started yet, or waiting for a retry) and retry (finished badly).
CANCELLABLE_STATUSES = (RunStatus.SCHEDULED, RunStatus.QUEUED, RunStatus.RETRYING)
RETRIABLE_STATUSES = (RunStatus.FAILED, RunStatus.DEAD, RunStatus.CANCELLED)


class RunKind(models.TextChoices):
    SCHEDULED = "SCHEDULED", "Scheduled slot"
    MANUAL = "MANUAL", "Manual trigger"
    BACKFILL = "BACKFILL", "Backfill"


# Kinds that stand for a slot of their schedule: a slot can have at most one of them.
SLOT_KINDS = (RunKind.SCHEDULED, RunKind.BACKFILL)


class Run(TenantModel):
    job = models.ForeignKey("schedules.Job", on_delete=models.PROTECT, related_name="runs")
    # A deleted schedule keeps its history: the runs stay, detached.
    schedule = models.ForeignKey(
        "schedules.Schedule", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    kind = models.CharField(max_length=16, choices=RunKind.choices, default=RunKind.SCHEDULED)
    # The slot this run stands for (UTC); for a manual run, the time it was requested.
    scheduled_for = models.DateTimeField()
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.SCHEDULED)
    # Attempts made so far in the current series; a retry of a finished run starts a new series.
    attempt = models.PositiveSmallIntegerField(default=0)
    series = models.PositiveSmallIntegerField(default=1)
    payload = models.JSONField(default=dict, blank=True)
    worker = models.ForeignKey("workers.Worker", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs")
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # RETRYING: when the next attempt is due (the beat enqueues it then; no broker ETA).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # RUNNING: the claim lasts until then (the job's timeout plus a grace); a run still RUNNING
    # after it lost its worker, and the recovery retries it. An expired lease holds no slot.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # QUEUED and waiting for a free slot of its job's concurrency limit (or of its schedule's
    # BUFFER_ONE): its message was consumed, and the run that frees the slot enqueues it again.
    blocked_at = models.DateTimeField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    # Why a run was MISSED, SKIPPED or CANCELLED.
    reason = models.CharField(max_length=500, blank=True)
    outcome = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        constraints = [
            # The ledger's core invariant: one run per schedule slot, whoever writes it.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"],
                condition=models.Q(kind__in=SLOT_KINDS),
                name="run_one_per_schedule_slot",
            ),
            models.UniqueConstraint(
                fields=["tenant_id", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="run_idempotency_key_unique_per_tenant",
            ),
        ]
        indexes = [
            # The runs list of a tenant, newest first, alone or filtered (cursor pagination).
            models.Index(fields=["tenant_id", "-scheduled_for", "-id"], name="run_tenant_slot_idx"),
            models.Index(fields=["tenant_id", "status", "-scheduled_for", "-id"], name="run_tenant_status_idx"),
            models.Index(fields=["tenant_id", "schedule", "-scheduled_for", "-id"], name="run_tenant_schedule_idx"),
            models.Index(fields=["tenant_id", "job", "-scheduled_for", "-id"], name="run_tenant_job_idx"),
            # The overlap check: a schedule's runs that have not finished.
            models.Index(
                fields=["schedule", "status"],
                name="run_active_idx",
                condition=models.Q(status__in=ACTIVE_STATUSES),
            ),
            # The sweeper: runs created long ago and still not started.
            models.Index(
                fields=["status", "created_at"],
                name="run_unstarted_idx",
                condition=models.Q(status__in=(RunStatus.SCHEDULED, RunStatus.QUEUED)),
            ),
            # The beat: retries that are due.
            models.Index(
                fields=["next_attempt_at"],
                name="run_retry_due_idx",
                condition=models.Q(status=RunStatus.RETRYING),
            ),
            # The recovery: running runs whose lease ran out (their worker died).
            models.Index(
                fields=["lease_expires_at"],
                name="run_lease_idx",
                condition=models.Q(status=RunStatus.RUNNING),
            ),
            # A concurrency slot: who holds one of a job's slots, and who waits for one.
            models.Index(
                fields=["job", "lease_expires_at"],
                name="run_job_running_idx",
                condition=models.Q(status=RunStatus.RUNNING),
            ),
            models.Index(
                fields=["job", "blocked_at"],
                name="run_job_blocked_idx",
                condition=models.Q(blocked_at__isnull=False),
            ),
            # A worker's running runs: its heartbeat counts them, and a worker found offline
            # has them taken back (workers.services).
            models.Index(
                fields=["worker"],
                name="run_worker_running_idx",
                condition=models.Q(status=RunStatus.RUNNING),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} @ {self.scheduled_for:%Y-%m-%d %H:%M:%S} {self.status}"

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class AttemptOutcome(models.TextChoices):
    RUNNING = "RUNNING", "Running"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    RETRYABLE_ERROR = "RETRYABLE_ERROR", "Retryable error"
    FATAL_ERROR = "FATAL_ERROR", "Fatal error"
    TIMEOUT = "TIMEOUT", "Timed out"
    LOST = "LOST", "Worker lost"


class RunAttempt(models.Model):
    """One try at executing a run: who ran it, when, and what came back."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts")
    series = models.PositiveSmallIntegerField(default=1)
    number = models.PositiveSmallIntegerField()
    worker = models.ForeignKey(
        "workers.Worker", on_delete=models.SET_NULL, null=True, blank=True, related_name="attempts"
    )
    # Kept as text too: the worker row may be gone long after the attempt.
    worker_name = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices, default=AttemptOutcome.RUNNING)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # Time from sending to the target's answer (an HTTP response's headers, a publish ack).
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["series", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "series", "number"], name="run_attempt_unique_number"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.series}.{self.number} {self.outcome}"

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class DeadLetter(TenantModel):
    """A run whose retryable errors outlasted its attempts: what it carried and how it last
    failed, kept for an operator to inspect and replay (``POST /runs/{id}/retry``)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="dead_letters")
    job = models.ForeignKey("schedules.Job", on_delete=models.PROTECT, related_name="dead_letters")
    series = models.PositiveSmallIntegerField()
    attempts = models.PositiveSmallIntegerField()
    payload = models.JSONField(default=dict, blank=True)
    target = models.JSONField(default=dict, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # Set when the run was retried from here.
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run", "series"], name="dead_letter_one_per_series"),
        ]
        indexes = [models.Index(fields=["tenant_id", "-created_at"], name="dead_letter_tenant_idx")]

    def __str__(self) -> str:
        return f"dead letter of {self.run_id} (series {self.series})"


class PendingSend(models.Model):
    """The runs of one beat batch, written ``QUEUED`` in the transaction that wrote this row, whose
    messages may not be on the broker yet. Deleted once they are: a row that outlives its send by
    far means the beat died between its commit and its messages, and the sweeper sends them
    (``runs.services.run_sweep``). One row per batch of up to 500 runs, instead of an update of
    each run from ``SCHEDULED`` to ``QUEUED`` after the send."""

    id = models.BigAutoField(primary_key=True)
    run_ids = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{len(self.run_ids)} runs to send, committed at {self.created_at:%Y-%m-%d %H:%M:%S}"
