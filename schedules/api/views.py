from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from calendars.engine import BusinessCalendar, InvalidCalendar
from calendars.models import Calendar
from calendars.selectors import business_calendar, calendar_business_calendar
from runs.api.serializers import RunSerializer
from scheduler_project.api import scopes
from scheduler_project.api.schema import problems
from scheduler_project.api.viewsets import TenantViewSet
from scheduler_project.errors import ValidationFailed
from schedules import selectors, services
from schedules.api.serializers import (
    BackfillResultSerializer,
    BackfillSerializer,
    ExplainQuerySerializer,
    JobInputSerializer,
    JobOutputSerializer,
    PreviewQuerySerializer,
    PreviewSerializer,
    ScheduleExplainSerializer,
    ScheduleInputSerializer,
    ScheduleOutputSerializer,
    TriggerNowSerializer,
    TriggerPreviewSerializer,
)
from schedules.engine.base import Trigger, fires
from schedules.engine.compose import build_trigger
from schedules.engine.spec import parse_trigger
from schedules.models import Job, Schedule


@extend_schema_view(
    list=extend_schema(summary="List jobs", responses={200: JobOutputSerializer(many=True), **problems(400)}),
    retrieve=extend_schema(summary="Get a job", responses={200: JobOutputSerializer, **problems(400, 404)}),
    create=extend_schema(
        summary="Create a job", request=JobInputSerializer, responses={201: JobOutputSerializer, **problems(400, 413)}
    ),
    partial_update=extend_schema(
        summary="Change a job",
        request=JobInputSerializer(partial=True),
        responses={200: JobOutputSerializer, **problems(400, 404, 413)},
    ),
)
class JobViewSet(TenantViewSet[Job]):
    """Jobs: what runs (the target), with what retries, limits and routing."""

    queryset = Job.objects.none()
    serializer_class = JobOutputSerializer
    required_scopes = {"list": scopes.READ, "retrieve": scopes.READ}  # writes: admin

    def tenant_queryset(self, tenant_id: str) -> QuerySet[Job]:
        return selectors.job_list(tenant_id=tenant_id)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(JobOutputSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(JobOutputSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        data = self.validated(JobInputSerializer, request.data)
        job = services.job_create(tenant_id=self.tenant_id, **data)
        return Response(JobOutputSerializer(job).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        job = self.get_object()
        data = self.validated(JobInputSerializer, request.data, partial=True)
        job = services.job_update(job=job, data=data)
        return Response(JobOutputSerializer(job).data)


@extend_schema_view(
    list=extend_schema(summary="List schedules", responses={200: ScheduleOutputSerializer(many=True), **problems(400)}),
    retrieve=extend_schema(summary="Get a schedule", responses={200: ScheduleOutputSerializer, **problems(400, 404)}),
    create=extend_schema(
        summary="Create a schedule",
        request=ScheduleInputSerializer,
        responses={201: ScheduleOutputSerializer, **problems(400, 413)},
    ),
    partial_update=extend_schema(
        summary="Change a schedule",
        request=ScheduleInputSerializer(partial=True),
        responses={200: ScheduleOutputSerializer, **problems(400, 404, 413)},
    ),
    destroy=extend_schema(
        summary="Delete a schedule (its runs stay, detached)", responses={204: None, **problems(400, 404)}
    ),
    preview=extend_schema(
        summary="The schedule's next fire times",
        description="What the beat will fire, computed by the same engine: DST and calendar moves explained.",
        operation_id="schedules_preview",
        parameters=[PreviewQuerySerializer],
        responses={200: PreviewSerializer, **problems(400, 404)},
    ),
    explain=extend_schema(
        summary="Why the schedule did, will, or did not fire",
        description="The schedule's state and why; its last `count` slots (found by the engine, without "
        "and with the calendar policy, a year back at most) with what became of each: fired, missed, "
        "skipped by the overlap or the calendar policy, paused or not recorded, and why; and its next "
        "`count` fire times as the preview gives them, with the calendar skips among them, its jitter and "
        "the misfire and overlap policies that will apply. MANUAL runs are listed apart.",
        operation_id="schedules_explain",
        parameters=[ExplainQuerySerializer],
        responses={200: ScheduleExplainSerializer, **problems(400, 404)},
    ),
    trigger=extend_schema(
        summary="Run the schedule's job now",
        description="A run of kind MANUAL, enqueued at once. An `Idempotency-Key` header makes a "
        "repeated request return the run the first one created.",
        operation_id="schedules_trigger",
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER, required=False, description="1-200 characters."
            )
        ],
        request=TriggerNowSerializer,
        responses={202: RunSerializer, **problems(400, 404, 409)},
    ),
    backfill=extend_schema(
        summary="Create runs for past slots",
        description="Runs of kind BACKFILL for the schedule's slots in [start, end]. Idempotent; "
        "`dry_run` answers what it would do (200) without doing it. Refuses ranges of more than "
        "BACKFILL_MAX_SLOTS slots (default 1000) and paused schedules (409).",
        operation_id="schedules_backfill",
        request=BackfillSerializer,
        responses={200: BackfillResultSerializer, 202: BackfillResultSerializer, **problems(400, 404, 409)},
    ),
    enable=extend_schema(
        summary="Resume a schedule",
        operation_id="schedules_enable",
        request=None,
        responses={200: ScheduleOutputSerializer, **problems(400, 404)},
    ),
    disable=extend_schema(
        summary="Pause a schedule",
        operation_id="schedules_disable",
        request=None,
        responses={200: ScheduleOutputSerializer, **problems(400, 404)},
    ),
)
class ScheduleViewSet(TenantViewSet[Schedule]):
    """Schedules: when a job fires, in which time zone and on which business calendar."""

    queryset = Schedule.objects.none()
    serializer_class = ScheduleOutputSerializer
    required_scopes = {
        "list": scopes.READ,
        "retrieve": scopes.READ,
        "preview": scopes.READ,
        "explain": scopes.READ,
        "trigger": scopes.OPERATE,
        "backfill": scopes.OPERATE,
        "enable": scopes.OPERATE,
        "disable": scopes.OPERATE,
    }  # create, change, delete: admin

    def tenant_queryset(self, tenant_id: str) -> QuerySet[Schedule]:
        return selectors.schedule_list(tenant_id=tenant_id)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ScheduleOutputSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ScheduleOutputSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        data = self.validated(ScheduleInputSerializer, request.data)
        schedule = services.schedule_create(tenant_id=self.tenant_id, data=data)
        return Response(ScheduleOutputSerializer(schedule).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        schedule = self.get_object()
        data = self.validated(ScheduleInputSerializer, request.data, partial=True)
        schedule = services.schedule_update(schedule=schedule, data=data)
        return Response(ScheduleOutputSerializer(schedule).data)

    def destroy(self, request: Request, pk: str) -> Response:
        services.schedule_delete(schedule=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["get"])
    def preview(self, request: Request, pk: str) -> Response:
        query = PreviewQuerySerializer.from_query(request.query_params).validated_data
        schedule = self.get_object()
        trigger = services.trigger_or_400(lambda: selectors.schedule_trigger(schedule))
        after = query.get("after") or timezone.now()
        return Response(_preview(trigger, schedule.timezone, after, query["count"]))

    @action(detail=True, methods=["get"])
    def explain(self, request: Request, pk: str) -> Response:
        count = ExplainQuerySerializer.from_query(request.query_params).validated_data["count"]
        schedule = self.get_object()
        explanation = services.schedule_explain(schedule=schedule, count=count, now=timezone.now())
        if explanation.trigger is not None:
            explanation.preview = _preview(explanation.trigger, schedule.timezone, explanation.next_after, count)
        context = {"timezone": schedule.timezone}
        return Response(ScheduleExplainSerializer(explanation, context=context).data)

    @action(detail=True, methods=["post"])
    def trigger(self, request: Request, pk: str) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= 200:
            raise ValidationFailed({"Idempotency-Key": ["Must be 1 to 200 characters."]})
        data = self.validated(TriggerNowSerializer, request.data)
        run, _ = services.schedule_trigger_now(
            schedule=self.get_object(), payload=data.get("payload"), idempotency_key=key
        )
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"])
    def backfill(self, request: Request, pk: str) -> Response:
        data = self.validated(BackfillSerializer, request.data)
        plan = services.schedule_backfill(schedule=self.get_object(), **data)
        body = BackfillResultSerializer({"dry_run": data["dry_run"], "mode": data["mode"], "slots": plan}).data
        return Response(body, status=status.HTTP_200_OK if data["dry_run"] else status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        schedule = services.schedule_set_enabled(schedule=self.get_object(), enabled=True)
        return Response(ScheduleOutputSerializer(schedule).data)

    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str) -> Response:
        schedule = services.schedule_set_enabled(schedule=self.get_object(), enabled=False)
        return Response(ScheduleOutputSerializer(schedule).data)


def _preview(trigger: Trigger, timezone_name: str, after: datetime, count: int) -> dict[str, Any]:
    tz = ZoneInfo(timezone_name)
    upcoming = fires(trigger, after, count)
    return {
        "fire_times": [fire.at.astimezone(tz).isoformat() for fire in upcoming],
        "details": [
            {
                "fire_time": fire.at.astimezone(tz).isoformat(),
                "kind": fire.kind,
                "moved_from": fire.moved_from,
                "message": fire.note,
            }
            for fire in upcoming
            if fire.kind
        ],
    }


@extend_schema_view(
    preview=extend_schema(
        summary="Preview a trigger before saving it",
        description=(
            "The next `count` fire times of a trigger in a time zone, optionally on a calendar "
            "(inline or `calendar_id`) with a calendar policy. FIXED_DELAY previews as if each run "
            "finished the moment it started."
        ),
        operation_id="triggers_preview",
        request=TriggerPreviewSerializer,
        responses={200: PreviewSerializer, **problems(400, 413)},
    ),
)
class TriggerViewSet(TenantViewSet[Schedule]):
    """Triggers on their own, before any schedule uses them."""

    queryset = Schedule.objects.none()
    required_scopes = {"preview": scopes.READ}

    def tenant_queryset(self, tenant_id: str) -> QuerySet[Schedule]:
        return selectors.schedule_list(tenant_id=tenant_id)

    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        data = self.validated(TriggerPreviewSerializer, request.data)
        timezone_name = data.get("timezone") or settings.DEFAULT_TZ
        calendar: BusinessCalendar | None = None
        if data.get("calendar_id"):
            row = Calendar.objects.filter(tenant_id=self.tenant_id, pk=data["calendar_id"]).first()
            if row is None:
                raise ValidationFailed({"calendar_id": [f"No calendar {data['calendar_id']} in this tenant."]})
            calendar = _engine_calendar(lambda: calendar_business_calendar(calendar=row))
        elif data.get("calendar"):
            rules = data["calendar"]
            calendar = _engine_calendar(lambda: business_calendar(**rules))
        trigger = services.trigger_or_400(
            lambda: build_trigger(
                parse_trigger(data["trigger"]),
                timezone=timezone_name,
                calendar=calendar,
                calendar_policy=data["calendar_policy"],
                start_at=data.get("start_at"),
                end_at=data.get("end_at"),
            )
        )
        return Response(_preview(trigger, timezone_name, data.get("after") or timezone.now(), data["count"]))


def _engine_calendar(build: Callable[[], BusinessCalendar]) -> BusinessCalendar:
    try:
        return build()
    except InvalidCalendar as exc:
        raise ValidationFailed({f"calendar.{k}": v for k, v in exc.errors.items()}) from None
