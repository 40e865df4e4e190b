from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from scheduler_project.api import scopes
from scheduler_project.api.schema import problems
from scheduler_project.api.viewsets import TenantViewSet
from workers import selectors, services
from workers.api.serializers import WorkerHeartbeatSerializer, WorkerRegisterSerializer, WorkerSerializer
from workers.models import Worker, WorkerStatus


class WorkerFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=WorkerStatus.choices, distinct=False)

    class Meta:
        model = Worker
        fields = ["status"]


@extend_schema_view(
    list=extend_schema(summary="List workers", responses={200: WorkerSerializer(many=True), **problems(400)}),
    retrieve=extend_schema(summary="Get a worker", responses={200: WorkerSerializer, **problems(400, 404)}),
    register=extend_schema(
        summary="Register a worker that is starting",
        description="For a worker outside Celery (Celery workers register themselves). The worker is "
        "dedicated to the token's tenant and takes its name; registering a name again is the same "
        "worker restarting (200): its description is replaced, it is ONLINE again (DRAINING while "
        "drained) and the runs its previous process was running are retried. Send heartbeats "
        "(`/workers/{id}/heartbeat`) more often than WORKER_OFFLINE_AFTER_SECONDS.",
        operation_id="workers_register",
        request=WorkerRegisterSerializer,
        responses={200: WorkerSerializer, 201: WorkerSerializer, **problems(400, 413)},
    ),
    heartbeat=extend_schema(
        summary="Report that a worker is alive",
        description="Refreshes `last_heartbeat_at` (and `active_runs`, when given) and answers the worker "
        "with its status to follow: DRAINING means take no new runs. `status: OFFLINE` is the last "
        "heartbeat of a clean shutdown. A worker silent for WORKER_OFFLINE_AFTER_SECONDS is marked "
        "OFFLINE and its running runs are retried; a later heartbeat brings it back. Only your "
        "dedicated workers: a shared worker is a 403.",
        operation_id="workers_heartbeat",
        request=WorkerHeartbeatSerializer,
        responses={200: WorkerSerializer, **problems(400, 404, 413)},
    ),
    drain=extend_schema(
        summary="Drain a worker: it takes no new runs",
        description="The runs it executes finish; it takes no new ones until undrained (it learns the "
        "order at its next heartbeat). The order outlasts restarts and offline spells. Only your "
        "dedicated workers: shared workers are drained by the platform's operators in the admin (403).",
        operation_id="workers_drain",
        request=None,
        responses={200: WorkerSerializer, **problems(400, 404)},
    ),
    undrain=extend_schema(
        summary="Undrain a worker: it takes runs again",
        operation_id="workers_undrain",
        request=None,
        responses={200: WorkerSerializer, **problems(400, 404)},
    ),
)
class WorkerViewSet(TenantViewSet[Worker]):
    """The worker fleet as a tenant sees it: shared workers and its own dedicated ones. A tenant
    registers, beats for, drains and undrains only its dedicated workers."""

    queryset = Worker.objects.none()
    serializer_class = WorkerSerializer
    filterset_class = WorkerFilter
    required_scopes = {
        "list": scopes.READ,
        "retrieve": scopes.READ,
        "register": scopes.WORKER,
        "heartbeat": scopes.WORKER,
        "drain": scopes.OPERATE,
        "undrain": scopes.OPERATE,
    }

    def tenant_queryset(self, tenant_id: str) -> QuerySet[Worker]:
        return selectors.worker_list(tenant_id=tenant_id)

    def dedicated_object(self) -> Worker:
        """The addressed worker, if it is this tenant's own: a shared worker serves every tenant,
        so no tenant may change it (it is visible, hence a 403 rather than a 404)."""
        worker = self.get_object()
        if worker.tenant_id != self.tenant_id:
            raise PermissionDenied("A shared worker serves every tenant: only the platform's operators change it.")
        return worker

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(WorkerSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(WorkerSerializer(self.get_object()).data)

    @action(detail=False, methods=["post"])
    def register(self, request: Request) -> Response:
        data = self.validated(WorkerRegisterSerializer, request.data)
        worker, created = services.worker_register(tenant_id=self.tenant_id, **data)
        return Response(
            WorkerSerializer(worker).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @action(detail=True, methods=["post"])
    def heartbeat(self, request: Request, pk: str) -> Response:
        worker = self.dedicated_object()
        data = self.validated(WorkerHeartbeatSerializer, request.data)
        if data.get("status") == WorkerStatus.OFFLINE:
            services.worker_mark_offline(worker_id=worker.pk, reason="shut down")
        else:
            services.worker_heartbeat(worker_id=worker.pk, active_runs=data.get("active_runs"))
        worker.refresh_from_db()
        return Response(WorkerSerializer(worker).data)

    @action(detail=True, methods=["post"])
    def drain(self, request: Request, pk: str) -> Response:
        return Response(WorkerSerializer(services.worker_drain(worker=self.dedicated_object())).data)

    @action(detail=True, methods=["post"])
    def undrain(self, request: Request, pk: str) -> Response:
        return Response(WorkerSerializer(services.worker_undrain(worker=self.dedicated_object())).data)
