from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from scheduler_project.api import scopes
from scheduler_project.api.schema import problems
from scheduler_project.api.viewsets import TenantViewSet
from schedules import selectors, services
from schedules.api.serializers import (
    JobInputSerializer,
    JobOutputSerializer,
    ScheduleInputSerializer,
    ScheduleOutputSerializer,
)
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

    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        schedule = services.schedule_set_enabled(schedule=self.get_object(), enabled=True)
        return Response(ScheduleOutputSerializer(schedule).data)

    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str) -> Response:
        schedule = services.schedule_set_enabled(schedule=self.get_object(), enabled=False)
        return Response(ScheduleOutputSerializer(schedule).data)
