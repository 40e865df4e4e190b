from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from scheduler_project.api import scopes
from scheduler_project.api.schema import problems
from scheduler_project.api.viewsets import TenantViewSet
from workers import selectors
from workers.api.serializers import WorkerSerializer
from workers.models import Worker, WorkerStatus


class WorkerFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=WorkerStatus.choices, distinct=False)

    class Meta:
        model = Worker
        fields = ["status"]


@extend_schema_view(
    list=extend_schema(summary="List workers", responses={200: WorkerSerializer(many=True), **problems(400)}),
    retrieve=extend_schema(summary="Get a worker", responses={200: WorkerSerializer, **problems(400, 404)}),
)
class WorkerViewSet(TenantViewSet[Worker]):
    """The worker fleet as a tenant sees it: shared workers and its own dedicated ones."""

    queryset = Worker.objects.none()
    serializer_class = WorkerSerializer
    filterset_class = WorkerFilter
    required_scopes = {"list": scopes.READ, "retrieve": scopes.READ}

    def tenant_queryset(self, tenant_id: str) -> QuerySet[Worker]:
        return selectors.worker_list(tenant_id=tenant_id)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(WorkerSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(WorkerSerializer(self.get_object()).data)
