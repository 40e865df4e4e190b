from __future__ import annotations

from rest_framework import serializers

from runs.models import Run, RunAttempt


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


class RunDetailSerializer(RunSerializer):
    attempts = RunAttemptSerializer(many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "attempts"]
