"""Per-request observability: the log context, one structured "request" line, and HTTP metrics."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse

from scheduler_project import metrics

logger = structlog.get_logger("scheduler_project.request")

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's request id is kept when it looks like one (a proxy's or a client's), else replaced:
# it is echoed into every log line and the response, so it must stay short and plain.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Probes and scrapes arrive every few seconds: their lines are DEBUG, not INFO.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestObservabilityMiddleware:
    """First in MIDDLEWARE, so it times and logs everything the others do."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        # A worker thread serves one request after another: nothing bound for the last one
        # (its tenant) may leak into this one.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            seconds = time.perf_counter() - started
            match = request.resolver_match
            view = match.view_name if match is not None and match.view_name else "unmatched"
            metrics.http_request(method=request.method or "", view=view, status=response.status_code, seconds=seconds)
            log = logger.debug if request.path in QUIET_PATHS else logger.info
            log(
                "request",
                method=request.method,
                path=request.path,
                view=view,
                status=response.status_code,
                duration_ms=round(seconds * 1000, 1),
            )
            response[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            structlog.contextvars.clear_contextvars()
