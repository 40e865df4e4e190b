from __future__ import annotations

from typing import Any

from rest_framework import serializers

from scheduler_project.api.serializers import InputSerializer, JSONObjectField
from subscriptions.engine import SUBJECT_MAX_LENGTH
from subscriptions.models import EventSubscription

FILTER_MAX_BYTES = 8 * 1024


class SubjectField(serializers.CharField):
    """A NATS subject pattern, as a JSON string (a number is not read as one); its syntax is
    checked by the service (``subscriptions.engine.subject_errors``)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SubscriptionInputSerializer(InputSerializer):
    schedule = serializers.UUIDField(help_text="Id of a schedule of the same tenant: what an event runs.")
    subject = SubjectField(
        max_length=SUBJECT_MAX_LENGTH,
        help_text="A NATS subject, with `*` for one token and `>` (last) for one or more, e.g. "
        "`erp.invoice.*`. The first token is literal; tokens hold letters, digits, `_`, `-` and `:`.",
    )
    filter = JSONObjectField(
        required=False,
        max_bytes=FILTER_MAX_BYTES,
        help_text='Exact-match conditions on the event, by dotted path: {"type": "erp.invoice.created", '
        '"data.kind": "invoice"}. Values are strings, numbers, booleans or null; all must hold. '
        "Default {}: every event on the subject.",
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    enabled = serializers.BooleanField(required=False)


class SubscriptionOutputSerializer(serializers.ModelSerializer):
    filter = serializers.JSONField()

    class Meta:
        model = EventSubscription
        fields = [
            "id",
            "schedule",
            "subject",
            "filter",
            "description",
            "enabled",
            "matched_count",
            "last_matched_at",
            "last_run",
            "rejected_count",
            "last_rejected_at",
            "last_rejection",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {
            "matched_count": {"help_text": "Events that matched and started a run (a redelivery counts once)."},
            "last_run": {"help_text": "The run the last matching event started."},
            "rejected_count": {
                "help_text": "Events on the subject that could not run: malformed, schedule paused, trigger failed."
            },
            "last_rejection": {"help_text": "Why the last one could not."},
        }
