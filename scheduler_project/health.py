"""Liveness and readiness probes. Both answer without authentication."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduler_project.api.exceptions import PROBLEM_CONTENT_TYPE, problem
from scheduler_project.celery import app as celery_app
from schedules.models import BeatLease

CHECK_TIMEOUT_SECONDS = 2.0


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


CHECKS: dict[str, Callable[[], None]] = {"database": _database, "broker": _broker}

_Status = inline_serializer("HealthStatus", {"status": serializers.CharField()})
_Ready = inline_serializer(
    "ReadyStatus",
    {
        "status": serializers.CharField(),
        "checks": serializers.DictField(child=serializers.CharField(), help_text='Per dependency: "ok" or "down: ..."'),
        "beat": serializers.DictField(
            allow_null=True, help_text="The beat leader: leader, token, lease_age_seconds, expired (null: no beat yet)."
        ),
    },
)


class ProbeView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]


class HealthzView(ProbeView):
    @extend_schema(summary="Liveness: the process is up", responses={200: _Status}, auth=[])
    def get(self, request: Request) -> Response:
        """Touches nothing but the process itself, so it stays cheap under load."""
        return Response({"status": "ok"})


class ReadyzView(ProbeView):
    @extend_schema(
        summary="Readiness: database and broker reachable",
        responses={200: _Ready, 503: OpenApiResponse(_Ready, description="Problem document naming what is down.")},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        results: dict[str, str] = {}
        for name, check in CHECKS.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:  # a probe reports any failure of its dependency, whatever the driver raises
                results[name] = f"down: {type(exc).__name__}: {exc}"[:300]
        down = [name for name, result in results.items() if result != "ok"]
        if down:
            body = problem(503, f"Not ready: {', '.join(down)} down.")
            body["checks"] = results
            return Response(body, status=503, content_type=PROBLEM_CONTENT_TYPE)
        return Response({"status": "ok", "checks": results, "beat": _beat_leader()})


def _beat_leader() -> dict[str, Any] | None:
    """Who leads the beats and how fresh the lease is (information; the API runs without a beat)."""
    lease = BeatLease.objects.filter(name="beat").first()
    if lease is None or lease.renewed_at is None or lease.expires_at is None:
        return None
    now = timezone.now()
    return {
        "leader": lease.holder,
        "token": lease.token,
        "lease_age_seconds": round((now - lease.renewed_at).total_seconds(), 3),
        "expired": lease.expires_at <= now,
    }
