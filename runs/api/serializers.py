from __future__ import annotations

from typing import Any

from rest_framework import serializers

from runs.models import RETRIABLE_STATUSES, DeadLetter, Run, RunAttempt
from scheduler_project.api.serializers import AwareDateTimeField, InputSerializer


class RunAttemptSerializer(serializers.ModelSerializer):
    duration_ms = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = RunAttempt
        fields = [
            "id",
            "series",
            "number",
            "worker",
            "worker_name",
            "started_at",
            "finished_at",
            "duration_ms",
            "outcome",
            "error_type",
            "error_message",
            "response_status",
            "latency_ms",
            "response_excerpt",
        ]


class RunSerializer(serializers.ModelSerializer):
    payload = serializers.JSONField()
    outcome = serializers.JSONField()
    duration_ms = serializers.IntegerField(allow_null=True, read_only=True)
    worker_name = serializers.CharField(source="worker.name", allow_null=True, default=None, read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "job",
            "schedule",
            "kind",
            "scheduled_for",
            "status",
            "attempt",
            "series",
            "payload",
            "worker",
            "worker_name",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "next_attempt_at",
            "error_type",
            "error_message",
            "reason",
            "outcome",
            "idempotency_key",
            "created_at",
            "updated_at",
        ]


class DeadLetterSerializer(serializers.ModelSerializer):
    payload = serializers.JSONField()
    target = serializers.JSONField()

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "series",
            "attempts",
            "payload",
            "target",
            "error_type",
            "error_message",
            "response_status",
            "created_at",
            "replayed_at",
        ]


class RunDetailSerializer(RunSerializer):
    attempts = RunAttemptSerializer(many=True, read_only=True)
    dead_letters = DeadLetterSerializer(many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "attempts", "dead_letters"]


class ReplaySerializer(InputSerializer):
    """Which finished runs to run again: every filter given must match."""

    job = serializers.UUIDField(required=False)
    schedule = serializers.UUIDField(required=False)
    status = serializers.ListField(
        child=serializers.ChoiceField(choices=[str(s) for s in RETRIABLE_STATUSES]),
        required=False,
        min_length=1,
        default=["FAILED", "DEAD"],
        help_text="Any of FAILED, DEAD, CANCELLED (default: FAILED and DEAD).",
    )
    scheduled_for_after = AwareDateTimeField(required=False, help_text="Slots at or after this instant.")
    scheduled_for_before = AwareDateTimeField(required=False, help_text="Slots at or before this instant.")
    dry_run = serializers.BooleanField(
        required=False, default=False, help_text="Answer which runs would be retried, without retrying them."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        after, before = attrs.get("scheduled_for_after"), attrs.get("scheduled_for_before")
        if after is not None and before is not None and before < after:
            raise serializers.ValidationError({"scheduled_for_before": ["Must not be before scheduled_for_after."]})
        return attrs


class ReplayResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    count = serializers.IntegerField()
    runs = serializers.ListField(child=serializers.UUIDField(), help_text="At most RUN_REPLAY_MAX_RUNS (1000).")
