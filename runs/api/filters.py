from __future__ import annotations

import django_filters

from runs.models import Run, RunKind, RunStatus


class RunFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=RunStatus.choices, help_text="Repeat to match any of several: ?status=FAILED&status=DEAD."
    )
    kind = django_filters.MultipleChoiceFilter(choices=RunKind.choices)
    schedule = django_filters.UUIDFilter(field_name="schedule_id")
    job = django_filters.UUIDFilter(field_name="job_id")
    scheduled_for = django_filters.IsoDateTimeFromToRangeFilter(
        help_text="Time range on the slot: scheduled_for_after / scheduled_for_before (ISO 8601, inclusive)."
    )

    class Meta:
        model = Run
        fields = ["status", "kind", "schedule", "job", "scheduled_for"]
