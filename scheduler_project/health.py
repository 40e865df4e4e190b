"""Liveness and readiness probes. Both answer without authentication.

``/readyz`` runs every check and reports each; only the checks named in ``READY_REQUIRE``
(default: database, broker, nats, beat) make it answer 503. ``nats`` runs only with
``NATS_URL`` set; ``workers`` is reported but not required by default, so an API deployed
before (or without) its workers is not taken out of service by surprise.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduler_project.api.exceptions import PROBLEM_CONTENT_TYPE, problem
from scheduler_project.celery import app as celery_app
from scheduler_project.selectors import outbox_backlog
from schedules.models import BeatLease
from schedules.selectors import beat_lease_state
from workers.models import Worker, WorkerStatus

CHECK_TIMEOUT_SECONDS = 2.0


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


class CheckFailed(Exception):
    """A check's own verdict: reported as ``down: <message>``."""


class NotConfigured(Exception):
    """The dependency is not part of this deployment: the check is left out."""


def _nats() -> None:
    """A TCP connection and the server's INFO line: the server is up and speaks NATS. No
    client session (the relay and EVENT targets keep their own)."""
    if not settings.NATS_URL:
        raise NotConfigured
    url = urlsplit(settings.NATS_URL)
    with socket.create_connection((url.hostname or "", url.port or 4222), timeout=CHECK_TIMEOUT_SECONDS) as sock:
        line = sock.makefile("rb").readline(64 * 1024)
    if not line.startswith(b"INFO "):
        raise CheckFailed(f"{url.hostname}:{url.port or 4222} answered {line[:40]!r}, not a NATS INFO line")


def _beat() -> None:
    """A beat holds the leader lease, or held it until less than one lease period ago (a standby
    takes over within that time). A database on which no beat ever ran is not ready either."""
    lease = beat_lease_state()
    if lease is None:
        raise CheckFailed("no beat has taken the leader lease yet")
    if lease.expired_for_seconds > settings.BEAT_LEASE_SECONDS:
        raise CheckFailed(
            f"the leader lease expired {lease.expired_for_seconds:.0f} s ago (last held by {lease.holder}) "
            "and no beat has taken it over"
        )


def _workers() -> None:
    """Some worker is ONLINE and sent a heartbeat within WORKER_OFFLINE_AFTER_SECONDS (both
    timed by the database's clock, as heartbeats are)."""
    window = getattr(settings, "WORKER_OFFLINE_AFTER_SECONDS", 60)
    fresh = Now() - timedelta(seconds=window)
    if not Worker.objects.filter(status=WorkerStatus.ONLINE, last_heartbeat_at__gte=fresh).exists():
        raise CheckFailed(f"no worker is ONLINE with a heartbeat in the last {window} s")


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "broker": _broker,
    "nats": _nats,
    "beat": _beat,
    "workers": _workers,
}

_Status = inline_serializer("HealthStatus", {"status": serializers.CharField()})
_Ready = inline_serializer(
    "ReadyStatus",
    {
        "status": serializers.CharField(),
        "checks": serializers.DictField(child=serializers.CharField(), help_text='Per dependency: "ok" or "down: ..."'),
        "required": serializers.ListField(
            child=serializers.CharField(), help_text="The checks that make the answer 503 when down (READY_REQUIRE)."
        ),
        "beat": serializers.DictField(
            allow_null=True, help_text="The beat leader: leader, token, lease_age_seconds, expired (null: no beat yet)."
        ),
        "events": serializers.DictField(
            help_text="The outbox relay's backlog (information, never a failed check): relay (nats or off), "
            "pending, oldest_occurred_at, oldest_age_seconds, and the oldest event's publish_attempts and last_error."
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
        summary="Readiness: database, broker, NATS and the beat leader (workers reported)",
        responses={200: _Ready, 503: OpenApiResponse(_Ready, description="Problem document naming what is down.")},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        results: dict[str, str] = {}
        for name, check in CHECKS.items():
            try:
                check()
                results[name] = "ok"
            except NotConfigured:
                continue
            except CheckFailed as exc:
                results[name] = f"down: {exc}"[:300]
            except Exception as exc:  # a probe reports any failure of its dependency, whatever the driver raises
                results[name] = f"down: {type(exc).__name__}: {exc}"[:300]
        required = [name for name in settings.READY_REQUIRE if name in results]
        down = [name for name in required if results[name] != "ok"]
        if down:
            body = problem(503, f"Not ready: {', '.join(down)} down.")
            body["checks"] = results
            body["required"] = required
            if results.get("database") == "ok":  # the backlog matters most when NATS is down
                body["events"] = outbox_backlog().as_dict()
            return Response(body, status=503, content_type=PROBLEM_CONTENT_TYPE)
        return Response(
            {
                "status": "ok",
                "checks": results,
                "required": required,
                "beat": _beat_leader(),
                "events": outbox_backlog().as_dict(),
            }
        )


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
