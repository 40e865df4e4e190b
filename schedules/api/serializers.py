from __future__ import annotations

from typing import Any

from rest_framework import serializers

from calendars.api.serializers import CalendarInputSerializer
from calendars.sources import source_errors
from scheduler_project.api.serializers import (
    AwareDateTimeField,
    InputSerializer,
    JSONObjectField,
    QuerySerializer,
    StringListField,
    TimeZoneField,
)
from schedules.engine.spec import TRIGGER_TYPES
from schedules.models import (
    BackoffStrategy,
    CalendarPolicy,
    Job,
    MisfirePolicy,
    OverlapPolicy,
    Schedule,
)
from schedules.services import BACKFILL_MODES

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"
QUEUE_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


class TargetField(JSONObjectField):
    """``{"type": "HTTP", "url": ..., "method": ..., "headers": {...}}``, ``{"type": "EVENT",
    "subject": ...}`` or ``{"type": "QUEUE", "queue": ... | "task": ...}``."""


class TriggerField(JSONObjectField):
    """A trigger document: ``{"type": "CRON", "expression": "0 2 * * *"}``, ``{"type": "RRULE",
    "rrule": ..., "dtstart": ...}``, ``{"type": "FIXED_DELAY", "delay_seconds": ...}`` or
    ``{"type": "ONE_SHOT", "run_at": ...}`` or ``{"type": "BUSINESS_DAY", "day": ..., "at": ...}``."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if value.get("type") not in TRIGGER_TYPES:
            raise serializers.ValidationError({"type": [f"Must be one of {', '.join(TRIGGER_TYPES)}."]})
        return value


class BackoffSerializer(InputSerializer):
    strategy = serializers.ChoiceField(choices=BackoffStrategy.choices, required=False)
    base_seconds = serializers.IntegerField(min_value=1, max_value=86_400, required=False)
    max_seconds = serializers.IntegerField(min_value=1, max_value=7 * 86_400, required=False)


class JobInputSerializer(InputSerializer):
    key = serializers.RegexField(
        KEY_PATTERN,
        max_length=200,
        error_messages={"invalid": "Letters, digits and . _ : - only, starting with a letter or digit."},
    )
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    target = TargetField(max_bytes=16 * 1024)
    payload = JSONObjectField(required=False, help_text="Default payload, merged under each schedule's payload.")
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, required=False)
    backoff = BackoffSerializer(required=False)
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=86_400, required=False)
    concurrency_limit = serializers.IntegerField(
        min_value=1, max_value=100_000, required=False, allow_null=True, help_text="null: no limit."
    )
    queue = serializers.RegexField(QUEUE_PATTERN, max_length=100, required=False)
    required_capabilities = StringListField(required=False)
    priority = serializers.IntegerField(min_value=0, max_value=9, required=False)


class BackoffOutputSerializer(serializers.Serializer):
    strategy = serializers.ChoiceField(choices=BackoffStrategy.choices, source="backoff_strategy")
    base_seconds = serializers.IntegerField(source="backoff_base_seconds")
    max_seconds = serializers.IntegerField(source="backoff_max_seconds")


class JobOutputSerializer(serializers.ModelSerializer):
    target = serializers.JSONField()
    payload = serializers.JSONField()
    backoff = BackoffOutputSerializer(source="*")
    required_capabilities = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Job
        fields = [
            "id",
            "key",
            "name",
            "description",
            "target",
            "payload",
            "max_attempts",
            "backoff",
            "timeout_seconds",
            "concurrency_limit",
            "queue",
            "required_capabilities",
            "priority",
            "created_at",
            "updated_at",
        ]


class ScheduleInputSerializer(InputSerializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    job = serializers.UUIDField(help_text="Id of a job of the same tenant.")
    trigger = TriggerField(max_bytes=32 * 1024)
    timezone = TimeZoneField(required=False, help_text="IANA time zone; default: the service's DEFAULT_TZ.")
    calendar = serializers.UUIDField(required=False, allow_null=True)
    calendar_policy = serializers.ChoiceField(choices=CalendarPolicy.choices, required=False)
    payload = JSONObjectField(required=False)
    enabled = serializers.BooleanField(required=False)
    start_at = AwareDateTimeField(required=False, allow_null=True)
    end_at = AwareDateTimeField(required=False, allow_null=True)
    misfire_policy = serializers.ChoiceField(choices=MisfirePolicy.choices, required=False)
    misfire_grace_seconds = serializers.IntegerField(min_value=0, max_value=7 * 86_400, required=False)
    overlap_policy = serializers.ChoiceField(choices=OverlapPolicy.choices, required=False)
    jitter_seconds = serializers.IntegerField(min_value=0, max_value=3600, required=False)


class ScheduleOutputSerializer(serializers.ModelSerializer):
    trigger = serializers.JSONField()
    payload = serializers.JSONField()

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "description",
            "job",
            "trigger",
            "timezone",
            "calendar",
            "calendar_policy",
            "payload",
            "enabled",
            "start_at",
            "end_at",
            "misfire_policy",
            "misfire_grace_seconds",
            "overlap_policy",
            "jitter_seconds",
            "next_fire_at",
            "last_fired_at",
            "created_at",
            "updated_at",
        ]


MAX_PREVIEW = 1000


class PreviewQuerySerializer(QuerySerializer):
    count = serializers.IntegerField(min_value=1, max_value=MAX_PREVIEW, required=False, default=10)
    after = AwareDateTimeField(required=False, help_text="Fire times after this instant. Default: now.")


class InlineCalendarSerializer(CalendarInputSerializer):
    """A calendar given in place: the fields of POST /calendars without a name."""

    name = None  # type: ignore[assignment]
    description = None  # type: ignore[assignment]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = source_errors(
            country=attrs.get("country", ""), subdivision=attrs.get("subdivision", ""), market=attrs.get("market", "")
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class TriggerPreviewSerializer(InputSerializer):
    trigger = TriggerField(max_bytes=32 * 1024)
    timezone = TimeZoneField(required=False, help_text="IANA time zone; default: the service's DEFAULT_TZ.")
    calendar = InlineCalendarSerializer(required=False, allow_null=True)
    calendar_id = serializers.UUIDField(required=False, allow_null=True, help_text="Instead of `calendar`.")
    calendar_policy = serializers.ChoiceField(choices=CalendarPolicy.choices, required=False, default="SKIP")
    start_at = AwareDateTimeField(required=False, allow_null=True)
    end_at = AwareDateTimeField(required=False, allow_null=True)
    after = AwareDateTimeField(required=False, help_text="Fire times after this instant. Default: now.")
    count = serializers.IntegerField(min_value=1, max_value=MAX_PREVIEW, required=False, default=10)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("calendar") and attrs.get("calendar_id"):
            raise serializers.ValidationError({"calendar_id": ["Give `calendar` or `calendar_id`, not both."]})
        return attrs


class FireDetailSerializer(serializers.Serializer):
    fire_time = serializers.DateTimeField(help_text="ISO 8601 with the local offset.")
    kind = serializers.ChoiceField(choices=["DST_GAP", "CALENDAR_SHIFT"])
    moved_from = serializers.CharField(help_text="The day (or wall time) the rule alone gives.")
    message = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    fire_times = serializers.ListField(child=serializers.CharField(), help_text="ISO 8601 with the local offset.")
    details = FireDetailSerializer(many=True, help_text="One entry per fire time that was moved, and why.")


class TriggerNowSerializer(InputSerializer):
    payload = JSONObjectField(required=False, help_text="Merged over the job's and the schedule's payload.")


class BackfillSerializer(InputSerializer):
    start = AwareDateTimeField(help_text="First slot instant to consider (included).")
    end = AwareDateTimeField(help_text="Last slot instant to consider (included).")
    mode = serializers.ChoiceField(
        choices=BACKFILL_MODES,
        required=False,
        default="missing",
        help_text="missing: slots with no run or one that never executed; failed: FAILED, DEAD or "
        "CANCELLED runs; all: every slot whose run is not active.",
    )
    dry_run = serializers.BooleanField(required=False, default=False)


class BackfillSlotSerializer(serializers.Serializer):
    scheduled_for = serializers.DateTimeField()
    action = serializers.ChoiceField(choices=["create", "rerun", "keep"])
    run = serializers.UUIDField(source="run.pk", allow_null=True, default=None)


class BackfillResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    mode = serializers.CharField()
    slots = BackfillSlotSerializer(many=True)
