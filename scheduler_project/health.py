"""Liveness and readiness probes. Both answer without authentication."""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse

from scheduler_project.celery import app as celery_app

CHECK_TIMEOUT_SECONDS = 2.0


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests. Touches nothing else, so it stays cheap."""
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


CHECKS: dict[str, Callable[[], None]] = {"database": _database, "broker": _broker}


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: every dependency answers. 503 names the ones that do not."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # a probe reports any failure of its dependency, whatever the driver raises
            results[name] = f"down: {type(exc).__name__}: {exc}".strip()[:300]
    down = [name for name, result in results.items() if result != "ok"]
    if down:
        body = {
            "type": "urn:scheduler:problem:unavailable",
            "title": "Service unavailable",
            "status": 503,
            "detail": f"Not ready: {', '.join(down)} down.",
            "checks": results,
        }
        return JsonResponse(body, status=503, content_type="application/problem+json")
    return JsonResponse({"status": "ok", "checks": results})
