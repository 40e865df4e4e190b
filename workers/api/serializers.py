from __future__ import annotations

from rest_framework import serializers

from runs.routing import MAX_WORKER_CAPABILITIES
from scheduler_project.api.serializers import InputSerializer, StringListField
from schedules.api.serializers import CAPABILITY_PATTERN, QUEUE_PATTERN
from workers.models import Worker, WorkerStatus

# A Celery node name is "name@host"; external workers pick any name in the same alphabet.
WORKER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9@._:\-]*$"
HOSTNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"
VERSION_PATTERN = r"^[\x21-\x7e][\x20-\x7e]*$"  # printable ASCII, not starting with a space


class WorkerSerializer(serializers.ModelSerializer):
    queues = serializers.ListField(child=serializers.CharField())
    capabilities = serializers.ListField(child=serializers.CharField())
    utilisation = serializers.FloatField(read_only=True, help_text="Active runs divided by concurrency.")
    dedicated = serializers.SerializerMethodField(help_text="True when the worker serves only this tenant.")
    drained_at = serializers.DateTimeField(
        read_only=True, help_text="When an operator drained it; null when it may take runs."
    )

    class Meta:
        model = Worker
        fields = [
            "id",
            "name",
            "hostname",
            "dedicated",
            "queues",
            "capabilities",
            "concurrency",
            "version",
            "status",
            "active_runs",
            "utilisation",
            "drained_at",
            "started_at",
            "last_heartbeat_at",
            "created_at",
            "updated_at",
        ]

    def get_dedicated(self, worker: Worker) -> bool:
        return bool(worker.tenant_id)


class WorkerRegisterSerializer(InputSerializer):
    name = serializers.RegexField(
        WORKER_NAME_PATTERN,
        max_length=200,
        help_text="Unique among your workers; registering the same name again is the same worker restarting.",
        error_messages={"invalid": "Letters, digits and @ . _ : - only, starting with a letter or digit."},
    )
    hostname = serializers.RegexField(
        HOSTNAME_PATTERN,
        max_length=255,
        error_messages={"invalid": "A host name: letters, digits, . _ - only, starting with a letter or digit."},
    )
    queues = StringListField(
        min_length=1,
        max_items=50,
        child=serializers.RegexField(
            QUEUE_PATTERN, max_length=100, error_messages={"invalid": "Letters, digits and . _ : - only."}
        ),
        help_text="The queues the worker consumes.",
    )
    capabilities = StringListField(
        required=False,
        max_items=MAX_WORKER_CAPABILITIES,
        child=serializers.RegexField(
            CAPABILITY_PATTERN, max_length=50, error_messages={"invalid": "Letters, digits and . _ : - only."}
        ),
        help_text="What the worker offers (as WORKER_CAPABILITIES does for a Celery worker).",
    )
    concurrency = serializers.IntegerField(
        min_value=1, max_value=10_000, required=False, default=1, help_text="How many runs it executes at once."
    )
    version = serializers.RegexField(
        VERSION_PATTERN,
        max_length=64,
        required=False,
        default="",
        allow_blank=True,
        error_messages={"invalid": "Printable ASCII only."},
    )


class WorkerHeartbeatSerializer(InputSerializer):
    active_runs = serializers.IntegerField(
        min_value=0,
        max_value=1_000_000,
        required=False,
        help_text="How many runs the worker executes now. Without it, the runs the ledger shows it running.",
    )
    status = serializers.ChoiceField(
        choices=[WorkerStatus.OFFLINE],
        required=False,
        help_text="OFFLINE: the last heartbeat of a clean shutdown (its running runs are retried elsewhere). "
        "A worker cannot drain or undrain itself: operators do (POST /workers/{id}/drain, /undrain).",
        error_messages={
            "invalid_choice": '"{input}" cannot be reported: only OFFLINE (a clean shutdown). '
            "Draining is an operator's order."
        },
    )
