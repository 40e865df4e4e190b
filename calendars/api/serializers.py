from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from calendars.engine import MAX_RANGE_DAYS, Closure
from calendars.models import Calendar, CalendarDateKind
from scheduler_project.api.serializers import InputSerializer, QuerySerializer

MAX_CUSTOM_DATES = 1000
DEFAULT_RANGE_DAYS = 365  # the holidays list without `to`: a year ahead of `from`


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "date"},
            {
                "type": "object",
                "properties": {"date": {"type": "string", "format": "date"}, "name": {"type": "string"}},
                "required": ["date"],
            },
        ]
    }
)
class CustomDateField(serializers.Field):
    """A date as ``"2027-12-24"`` or ``{"date": "2027-12-24", "name": "Christmas Eve"}``."""

    default_error_messages = {
        # Braces doubled: fail() formats the message.
        "invalid": 'Must be a date "YYYY-MM-DD" or an object {{"date": "YYYY-MM-DD", "name": "..."}}.',
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The name gets a CharField's checks: length, and no NUL or lone surrogate (which
        # PostgreSQL cannot store).
        self.name_field = serializers.CharField(max_length=200, allow_blank=True)

    def to_internal_value(self, data: Any) -> tuple[date, str]:
        name = ""
        if isinstance(data, dict):
            if set(data) - {"date", "name"} or "date" not in data:
                self.fail("invalid")
            name = data.get("name") or ""
            if not isinstance(name, str):
                self.fail("invalid")
            try:
                name = self.name_field.run_validation(name)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError([f"name: {message}" for message in exc.detail]) from None
            data = data["date"]
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return date.fromisoformat(data), name
        except ValueError:
            self.fail("invalid")
            raise  # unreachable: fail() raises

    def to_representation(self, value: Any) -> dict[str, str]:
        return {"date": value.date.isoformat(), "name": value.name}


class CustomDateListField(serializers.ListField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=CustomDateField(), max_length=MAX_CUSTOM_DATES, **kwargs)

    def to_internal_value(self, data: Any) -> list[tuple[date, str]]:
        dates = super().to_internal_value(data)
        repeated = sorted(day for day, count in Counter(day for day, _ in dates).items() if count > 1)
        if repeated:  # one row per calendar and date: the database would refuse the second
            raise serializers.ValidationError(f"Must not repeat a date: {', '.join(map(str, repeated))}.")
        return dates


class CalendarInputSerializer(InputSerializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    country = serializers.CharField(required=False, allow_blank=True, max_length=8)
    subdivision = serializers.CharField(required=False, allow_blank=True, max_length=64)
    market = serializers.CharField(required=False, allow_blank=True, max_length=16)
    weekend = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=6),
        max_length=6,
        required=False,
        help_text="Weekend days, Monday = 0. Default: [5, 6].",
    )
    holidays = CustomDateListField(required=False, help_text="Extra non-business days of this calendar.")
    working_days = CustomDateListField(
        required=False, help_text="Business days that the country, market or weekend would make free."
    )

    def validate_country(self, value: str) -> str:
        return value.upper()

    def validate_market(self, value: str) -> str:
        return value.upper()

    def validate_weekend(self, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Must not repeat a day.")
        return value


class CustomDateOutputSerializer(serializers.Serializer):
    date = serializers.DateField()
    name = serializers.CharField()


class CalendarOutputSerializer(serializers.ModelSerializer):
    holidays = serializers.SerializerMethodField()
    working_days = serializers.SerializerMethodField()

    class Meta:
        model = Calendar
        fields = [
            "id",
            "name",
            "description",
            "country",
            "subdivision",
            "market",
            "weekend",
            "holidays",
            "working_days",
            "created_at",
            "updated_at",
        ]

    def _dates(self, calendar: Calendar, kind: str) -> list[dict[str, str]]:
        return [{"date": d.date.isoformat(), "name": d.name} for d in calendar.dates.all() if d.kind == kind]

    @extend_schema_field(CustomDateOutputSerializer(many=True))
    def get_holidays(self, calendar: Calendar) -> list[dict[str, str]]:
        return self._dates(calendar, CalendarDateKind.HOLIDAY)

    @extend_schema_field(CustomDateOutputSerializer(many=True))
    def get_working_days(self, calendar: Calendar) -> list[dict[str, str]]:
        return self._dates(calendar, CalendarDateKind.WORKING_DAY)


class HolidaysQuerySerializer(QuerySerializer):
    """The query of ``GET /calendars/{id}/holidays``: an inclusive date range, both ends optional.

    ``from`` and ``to`` are Python keywords, hence :meth:`get_fields` rather than class attributes.
    """

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "from": serializers.DateField(
                input_formats=["%Y-%m-%d"],
                required=False,
                help_text="First day, YYYY-MM-DD. Default: today in the service's DEFAULT_TZ.",
            ),
            "to": serializers.DateField(
                input_formats=["%Y-%m-%d"],
                required=False,
                help_text=(
                    f"Last day (included), YYYY-MM-DD. Default: `from` + {DEFAULT_RANGE_DAYS} days. "
                    f"At most {MAX_RANGE_DAYS} days in all."
                ),
            ),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start: date = attrs.get("from") or timezone.localdate(timezone=ZoneInfo(settings.DEFAULT_TZ))
        try:
            end: date = attrs.get("to") or start + timedelta(days=DEFAULT_RANGE_DAYS)
        except OverflowError:
            end = date.max
        if end < start:
            raise serializers.ValidationError({"to": [f"Must not be before from ({start})."]})
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise serializers.ValidationError(
                {"to": [f"Must be at most {MAX_RANGE_DAYS - 1} days after from ({start}); the range is capped."]}
            )
        return {"from": start, "to": end}


class NonBusinessDaySerializer(serializers.Serializer):
    date = serializers.DateField(source="day")
    reason = serializers.CharField(help_text='"Christmas Day", "Weekend (Saturday)", a custom holiday\'s name, ...')
    kind = serializers.ChoiceField(
        choices=[(kind.value, kind.value) for kind in Closure],
        help_text=(
            "HOLIDAY: of the calendar's country, subdivision or market; CUSTOM_HOLIDAY: one of the "
            "calendar's own holidays; WEEKEND: a weekend day that is no holiday."
        ),
    )


class CalendarHolidaysSerializer(serializers.Serializer):
    """The non-working days of a calendar in a date range."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "calendar": serializers.UUIDField(),
            "from": serializers.DateField(),
            "to": serializers.DateField(),
            "days": NonBusinessDaySerializer(many=True),
        }
