"""Business calendars: a country's or market's holidays, weekend days, custom dates."""

from __future__ import annotations

from django.db import models

from scheduler_project.models import TenantModel


def default_weekend() -> list[int]:
    return [5, 6]  # Saturday and Sunday, Monday = 0


class Calendar(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # ISO 3166 code and optional subdivision known to the `holidays` package ...
    country = models.CharField(max_length=8, blank=True)
    subdivision = models.CharField(max_length=64, blank=True)
    # ... or a financial market calendar of `holidays` (NYSE, ...). At most one of the two.
    market = models.CharField(max_length=16, blank=True)
    weekend = models.JSONField(default=default_weekend)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "name"], name="calendar_name_unique_per_tenant"),
            models.CheckConstraint(
                condition=models.Q(country="") | models.Q(market=""),
                name="calendar_country_or_market",
            ),
            models.CheckConstraint(
                condition=~models.Q(subdivision="") & ~models.Q(country="") | models.Q(subdivision=""),
                name="calendar_subdivision_needs_country",
            ),
        ]
        indexes = [models.Index(fields=["tenant_id", "created_at"], name="calendar_tenant_created_idx")]

    def __str__(self) -> str:
        return self.name


class CalendarDateKind(models.TextChoices):
    HOLIDAY = "HOLIDAY", "Holiday"
    WORKING_DAY = "WORKING_DAY", "Working day"


class CalendarDate(models.Model):
    """A custom date of a calendar: an extra holiday, or a working day that would not be one."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="dates")
    date = models.DateField()
    kind = models.CharField(max_length=16, choices=CalendarDateKind.choices)
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint(fields=["calendar", "date"], name="calendar_date_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.get_kind_display()}"
