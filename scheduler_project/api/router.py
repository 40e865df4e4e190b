"""Every API resource under /api/v1/, with the trailing slash optional."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from calendars.api.views import CalendarViewSet
from runs.api.views import RunViewSet
from schedules.api.views import JobViewSet, ScheduleViewSet, TriggerViewSet
from subscriptions.api.views import SubscriptionViewSet
from workers.api.views import WorkerViewSet


class OptionalSlashRouter(SimpleRouter):
    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("jobs", JobViewSet, basename="job")
router.register("schedules", ScheduleViewSet, basename="schedule")
router.register("triggers", TriggerViewSet, basename="trigger")
router.register("runs", RunViewSet, basename="run")
router.register("calendars", CalendarViewSet, basename="calendar")
router.register("workers", WorkerViewSet, basename="worker")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
