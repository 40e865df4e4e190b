"""Jobs (what to run) and schedules (when to run it)."""

from __future__ import annotations

from django.db import models

from scheduler_project.models import TenantModel


class BackoffStrategy(models.TextChoices):
    FIXED = "FIXED", "Fixed"
    EXPONENTIAL = "EXPONENTIAL", "Exponential"
    EXPONENTIAL_JITTER = "EXPONENTIAL_JITTER", "Exponential with jitter"


class Job(TenantModel):
    """A kind of work a tenant can schedule: a target and how to retry it."""

    key = models.CharField(max_length=200)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # {"type": "HTTP", "method": ..., "url": ..., "headers": {...}} and the like; the shape
    # is checked by runs.targets.spec on every write.
    target = models.JSONField()
    payload = models.JSONField(default=dict, blank=True)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    backoff_strategy = models.CharField(
        max_length=24, choices=BackoffStrategy.choices, default=BackoffStrategy.EXPONENTIAL_JITTER
    )
    backoff_base_seconds = models.PositiveIntegerField(default=10)
    backoff_max_seconds = models.PositiveIntegerField(default=600)
    timeout_seconds = models.PositiveIntegerField(default=300)
    # Signs HTTP target requests instead of WEBHOOK_HMAC_SECRET; never shown by the API.
    webhook_secret = models.CharField(max_length=200, blank=True)
    # None: no limit. Otherwise at most this many runs of the job execute at once, fleet-wide.
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    queue = models.CharField(max_length=100, default="default")
    required_capabilities = models.JSONField(default=list, blank=True)
    priority = models.PositiveSmallIntegerField(default=5)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "key"], name="job_key_unique_per_tenant"),
            models.CheckConstraint(condition=models.Q(max_attempts__gte=1), name="job_max_attempts_positive"),
            models.CheckConstraint(condition=models.Q(timeout_seconds__gte=1), name="job_timeout_positive"),
            models.CheckConstraint(
                condition=models.Q(backoff_max_seconds__gte=models.F("backoff_base_seconds")),
                name="job_backoff_cap_above_base",
            ),
            models.CheckConstraint(
                condition=models.Q(concurrency_limit__isnull=True) | models.Q(concurrency_limit__gte=1),
                name="job_concurrency_limit_positive",
            ),
            models.CheckConstraint(condition=models.Q(priority__lte=9), name="job_priority_0_9"),
        ]
        indexes = [models.Index(fields=["tenant_id", "created_at"], name="job_tenant_created_idx")]

    def __str__(self) -> str:
        return self.key

    @property
    def target_type(self) -> str:
        return str(self.target.get("type", ""))


class CalendarPolicy(models.TextChoices):
    SKIP = "SKIP", "Skip non-business days"
    NEXT_BUSINESS_DAY = "NEXT_BUSINESS_DAY", "Move to the next business day"
    PREVIOUS_BUSINESS_DAY = "PREVIOUS_BUSINESS_DAY", "Move to the previous business day"


class MisfirePolicy(models.TextChoices):
    SKIP = "SKIP", "Skip missed slots"
    RUN_ONCE = "RUN_ONCE", "Run once for all missed slots"
    RUN_ALL = "RUN_ALL", "Run every missed slot (capped)"


class OverlapPolicy(models.TextChoices):
    ALLOW = "ALLOW", "Allow overlapping runs"
    SKIP = "SKIP", "Skip while a run is active"
    BUFFER_ONE = "BUFFER_ONE", "Buffer at most one run"
    CANCEL_PREVIOUS = "CANCEL_PREVIOUS", "Cancel the active run"


class Schedule(TenantModel):
    """When a job fires: a trigger evaluated in a time zone, optionally on a business calendar."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    job = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="schedules")
    # Versioned trigger document, parsed and serialised only by schedules.engine.spec.
    trigger = models.JSONField()
    timezone = models.CharField(max_length=64)
    calendar = models.ForeignKey(
        "calendars.Calendar", on_delete=models.PROTECT, null=True, blank=True, related_name="schedules"
    )
    calendar_policy = models.CharField(max_length=24, choices=CalendarPolicy.choices, default=CalendarPolicy.SKIP)
    payload = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    start_at = models.DateTimeField(null=True, blank=True)
    end_at = models.DateTimeField(null=True, blank=True)
    misfire_policy = models.CharField(max_length=16, choices=MisfirePolicy.choices, default=MisfirePolicy.RUN_ONCE)
    # A slot later than this is "missed" and handled by the misfire policy.
    misfire_grace_seconds = models.PositiveIntegerField(default=300)
    overlap_policy = models.CharField(max_length=16, choices=OverlapPolicy.choices, default=OverlapPolicy.ALLOW)
    jitter_seconds = models.PositiveIntegerField(default=0)
    # UTC instant of the next slot; None when the schedule is exhausted or not yet computed.
    next_fire_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(start_at__isnull=True)
                | models.Q(end_at__isnull=True)
                | models.Q(end_at__gt=models.F("start_at")),
                name="schedule_end_after_start",
            ),
        ]
        indexes = [
            # The beat's due query: WHERE enabled AND next_fire_at <= now ORDER BY next_fire_at.
            models.Index(fields=["enabled", "next_fire_at"], name="schedule_due_idx"),
            models.Index(fields=["tenant_id", "created_at"], name="schedule_tenant_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class BeatLease(models.Model):
    """Who leads the beat processes. One row per lease; changed only by conditional updates.

    ``token`` is a fencing token: it grows by one whenever the lease changes hands, so work
    stamped with an old token can be told from the current leader's. Correctness of dispatch
    does not depend on the lease (the run ledger's unique slot does); the lease decides who
    does singleton work: housekeeping tasks and the sweeper.
    """

    name = models.CharField(primary_key=True, max_length=50)
    holder = models.CharField(max_length=200, blank=True)
    token = models.BigIntegerField(default=0)
    acquired_at = models.DateTimeField(null=True, blank=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.holder or 'nobody'} (token {self.token})"
