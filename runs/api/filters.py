from __future__ import annotations

import django_filters

from runs.models import Run, RunKind, RunStatus


class RunFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=RunStatus.choices,
        distinct=False,  # runs are unique rows; DISTINCT would defeat the index-ordered scan
        help_text="Repeat to match any of several: ?status=FAILED&status=DEAD.",
    )
    kind = django_filters.MultipleChoiceFilter(choices=RunKind.choices, distinct=False)
    schedule = django_filters.UUIDFilter(field_name="schedule_id")
    job = django_filters.UUIDFilter(field_name="job_id")
    # Two filters rather than one IsoDateTimeFromToRangeFilter: a range filter reports a bad
    # bound under "scheduled_for", a parameter nobody sent; these name the one that is wrong.
    scheduled_for_after = django_filters.IsoDateTimeFilter(
        field_name="scheduled_for", lookup_expr="gte", help_text="Slots at or after this instant (ISO 8601)."
    )
    scheduled_for_before = django_filters.IsoDateTimeFilter(
        field_name="scheduled_for", lookup_expr="lte", help_text="Slots at or before this instant (ISO 8601)."
    )

    class Meta:
        model = Run
        fields = ["status", "kind", "schedule", "job", "scheduled_for_after", "scheduled_for_before"]
