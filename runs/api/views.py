from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from runs import selectors, services
from runs.api.filters import RunFilter
from runs.api.serializers import ReplayResultSerializer, ReplaySerializer, RunDetailSerializer, RunSerializer
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
    cancel=extend_schema(
        summary="Cancel a run that has not started",
        description="SCHEDULED, QUEUED or RETRYING → CANCELLED; it never executes after this, even if "
        "its message is delivered. A RUNNING or finished run answers 409 with the reason.",
        operation_id="runs_cancel",
        request=None,
        responses={200: RunSerializer, **problems(400, 404, 409)},
    ),
    retry=extend_schema(
        summary="Run a failed, dead or cancelled run again",
        description="A new attempt series of the same run (`series` grows by one; the earlier attempts "
        "stay in its history), enqueued at once. Other states answer 409.",
        operation_id="runs_retry",
        request=None,
        responses={202: RunSerializer, **problems(400, 404, 409)},
    ),
    replay=extend_schema(
        summary="Retry the finished runs matching a filter",
        description="Every FAILED, DEAD (or, if asked, CANCELLED) run matching the filter is retried as "
        "with `/runs/{id}/retry`, oldest slot first. More than RUN_REPLAY_MAX_RUNS (default 1000) "
        "matching runs is a 400 with nothing changed; `dry_run` answers which runs it would retry.",
        operation_id="runs_replay",
        request=ReplaySerializer,
        responses={200: ReplayResultSerializer, 202: ReplayResultSerializer, **problems(400, 413)},
    ),
)
class RunViewSet(TenantViewSet[Run]):
    """Runs: every execution of a job, from a slot, a manual trigger or a backfill."""

    queryset = Run.objects.none()
    serializer_class = RunSerializer
    pagination_class = RunCursorPagination
    filterset_class = RunFilter
    required_scopes = {
        "list": scopes.READ,
        "retrieve": scopes.READ,
        "cancel": scopes.OPERATE,
        "retry": scopes.OPERATE,
        "replay": scopes.OPERATE,
    }

    def tenant_queryset(self, tenant_id: str) -> QuerySet[Run]:
        if self.action == "retrieve":
            return selectors.run_get_with_attempts(tenant_id=tenant_id)
        return selectors.run_list(tenant_id=tenant_id)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(RunSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(RunDetailSerializer(self.get_object()).data)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = services.run_cancel(run=self.get_object())
        return Response(RunSerializer(run).data)

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        run = services.run_retry(run=self.get_object())
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @action(detail=False, methods=["post"])
    def replay(self, request: Request) -> Response:
        data = self.validated(ReplaySerializer, request.data)
        dry_run = data.pop("dry_run")
        ids = services.runs_replay(runs=selectors.runs_matching(tenant_id=self.tenant_id, **data), dry_run=dry_run)
        body: dict[str, Any] = {"dry_run": dry_run, "count": len(ids), "runs": ids}
        return Response(
            ReplayResultSerializer(body).data, status=status.HTTP_200_OK if dry_run else status.HTTP_202_ACCEPTED
        )
