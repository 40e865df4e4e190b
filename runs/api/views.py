from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from runs import selectors
from runs.api.filters import RunFilter
from runs.api.serializers import RunDetailSerializer, RunSerializer
from runs.models import Run
from scheduler_project.api import scopes
from scheduler_project.api.pagination import RunCursorPagination
from scheduler_project.api.schema import problems
from scheduler_project.api.viewsets import TenantViewSet


@extend_schema_view(
    list=extend_schema(
        summary="List runs, newest slot first", responses={200: RunSerializer(many=True), **problems(400)}
    ),
    retrieve=extend_schema(
        summary="Get a run with its attempts", responses={200: RunDetailSerializer, **problems(400, 404)}
    ),
)
class RunViewSet(TenantViewSet[Run]):
    """Runs: every execution of a job, from a slot, a manual trigger or a backfill."""

    queryset = Run.objects.none()
    serializer_class = RunSerializer
    pagination_class = RunCursorPagination
    filterset_class = RunFilter
    required_scopes = {"list": scopes.READ, "retrieve": scopes.READ}

    def tenant_queryset(self, tenant_id: str) -> QuerySet[Run]:
        if self.action == "retrieve":
            return selectors.run_get_with_attempts(tenant_id=tenant_id)
        return selectors.run_list(tenant_id=tenant_id)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(RunSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(RunDetailSerializer(self.get_object()).data)
