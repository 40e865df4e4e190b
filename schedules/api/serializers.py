from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from calendars.api.serializers import CalendarInputSerializer
from calendars.sources import source_errors
from runs.routing import MAX_WORKER_CAPABILITIES
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
from schedules.services import (
    BACKFILL_MODES,
    EXPLAIN_MAX_COUNT,
    EXPLAIN_OUTCOMES,
    EXPLAIN_STATES,
)

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"
QUEUE_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
# Capabilities become part of Celery queue names (runs.routing): no "@" or "+".
CAPABILITY_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


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
    required_capabilities = StringListField(
        required=False,
        max_items=MAX_WORKER_CAPABILITIES,
        child=serializers.RegexField(
            CAPABILITY_PATTERN,
            max_length=50,
            error_messages={"invalid": "Letters, digits and . _ : - only."},
        ),
        help_text="Capabilities a worker must declare (WORKER_CAPABILITIES) to take this job's runs.",
    )
    priority = serializers.IntegerField(min_value=0, max_value=9, required=False)
    webhook_secret = serializers.CharField(
        required=False,
        allow_blank=True,
        min_length=16,
        max_length=200,
        write_only=True,
        help_text="Signs this job's HTTP requests instead of WEBHOOK_HMAC_SECRET; never returned. "
        "An empty string goes back to WEBHOOK_HMAC_SECRET.",
    )


class BackoffOutputSerializer(serializers.Serializer):
    strategy = serializers.ChoiceField(choices=BackoffStrategy.choices, source="backoff_strategy")
    base_seconds = serializers.IntegerField(source="backoff_base_seconds")
    max_seconds = serializers.IntegerField(source="backoff_max_seconds")


class JobOutputSerializer(serializers.ModelSerializer):
    target = serializers.JSONField()
    payload = serializers.JSONField()
    backoff = BackoffOutputSerializer(source="*")
    required_capabilities = serializers.ListField(child=serializers.CharField())
    webhook_secret_set = serializers.SerializerMethodField(help_text="Whether the job has its own signing secret.")

    def get_webhook_secret_set(self, job: Job) -> bool:
        return bool(job.webhook_secret)

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
            "webhook_secret_set",
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


# --- explain ---------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.DATETIME)
class LocalDateTimeField(serializers.Field):
    """An instant as ISO 8601 with the schedule's local offset (``context["timezone"]``), where
    DateTimeField would use the server's zone."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: datetime) -> str:
        zone = self.context.get("timezone")
        return (value.astimezone(ZoneInfo(zone)) if zone else value).isoformat()


class ExplainQuerySerializer(QuerySerializer):
    count = serializers.IntegerField(
        min_value=1,
        max_value=EXPLAIN_MAX_COUNT,
        required=False,
        default=5,
        help_text="How many past slots (`last`) and next fire times (`next`) to explain.",
    )


class ExplainStateSerializer(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=EXPLAIN_STATES,
        help_text="active; paused (enabled is false); not_started (start_at ahead); ended (end_at passed); "
        "exhausted (no fire time left, e.g. a ONE_SHOT that fired); invalid (the trigger cannot be evaluated).",
    )
    message = serializers.CharField()
    # Shadows Serializer.errors; harmless here: this serializer only renders.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="For `invalid`: field path to messages, as a 400 would name them.",
    )


class ExplainRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.CharField()


class ExplainSlotSerializer(serializers.Serializer):
    slot = LocalDateTimeField(help_text="The slot (without jitter), ISO 8601 with the local offset.")
    outcome = serializers.ChoiceField(
        choices=EXPLAIN_OUTCOMES,
        help_text="fired (a run exists: see `run`); missed (MISSED by the misfire policy); skipped_overlap "
        "(SKIPPED by the overlap policy); skipped_calendar (the rule's slot that the calendar policy dropped "
        "or moved: see `moved_to`); paused (no run: the schedule was paused); not_recorded (no run, and "
        "`reason` says why: created later, not dispatched yet, ...).",
    )
    reason = serializers.CharField()
    run = ExplainRunSerializer(allow_null=True)
    moved_from = serializers.CharField(
        allow_null=True, help_text="For a fire the calendar or a DST gap moved: the day or wall time it left."
    )
    moved_to = LocalDateTimeField(allow_null=True, help_text="For skipped_calendar: where the policy moved it.")


class ExplainManualRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    requested_at = LocalDateTimeField(source="scheduled_for")


class UpcomingSkipSerializer(serializers.Serializer):
    slot = LocalDateTimeField(help_text="The rule's own fire time, on a non-business day.")
    day = serializers.DateField()
    reason = serializers.CharField(help_text="Why the day is not a business day.")
    moved_to = LocalDateTimeField(allow_null=True, help_text="Where the policy moves it; null: dropped (SKIP).")
    message = serializers.CharField()


class ExplainJitterSerializer(serializers.Serializer):
    seconds = serializers.IntegerField(help_text="This schedule's fixed dispatch delay.")
    max_seconds = serializers.IntegerField(help_text="Its jitter_seconds.")
    description = serializers.CharField()


class ExplainMisfireSerializer(serializers.Serializer):
    policy = serializers.ChoiceField(choices=MisfirePolicy.choices)
    grace_seconds = serializers.IntegerField()
    description = serializers.CharField()


class ExplainOverlapSerializer(serializers.Serializer):
    policy = serializers.ChoiceField(choices=OverlapPolicy.choices)
    active_runs = serializers.IntegerField(help_text="The schedule's runs that have not finished.")
    description = serializers.CharField()


class ExplainNextSerializer(serializers.Serializer):
    fire_times = serializers.ListField(
        child=serializers.CharField(), source="preview.fire_times", help_text="As GET /schedules/{id}/preview."
    )
    details = FireDetailSerializer(many=True, source="preview.details", help_text="As the preview's details.")
    calendar_skips = UpcomingSkipSerializer(
        many=True, help_text="The rule's fires up to the last of `fire_times` that the calendar drops or moves."
    )
    calendar_skips_complete = serializers.BooleanField(help_text="False: more skips than `count` were cut off.")
    jitter = ExplainJitterSerializer(allow_null=True, help_text="null: no jitter.")
    misfire = ExplainMisfireSerializer(help_text="What happens to slots the beat dispatches late.")
    overlap = ExplainOverlapSerializer(help_text="What happens to a slot while earlier runs are active.")


class ScheduleExplainSerializer(serializers.Serializer):
    timezone = serializers.CharField(help_text="The schedule's zone: every time here carries its offset.")
    now = LocalDateTimeField(help_text="The instant the explanation is for.")
    state = ExplainStateSerializer()
    last = ExplainSlotSerializer(many=True, help_text="The last `count` slots up to now, oldest first.")
    last_since = LocalDateTimeField(help_text="`last` covers the slots after this instant (a year back at most).")
    manual_runs = ExplainManualRunSerializer(
        many=True, help_text="MANUAL runs requested in the same window, newest first: they are no slots."
    )
    next = ExplainNextSerializer(source="*")
    notes = serializers.ListField(child=serializers.CharField())
