"""One error shape everywhere: RFC 9457 problem details with an ``errors`` member.

``{"type": ..., "title": ..., "status": 400, "detail": ..., "errors": {"trigger.expression": [...]}}``
served as ``application/problem+json``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from scheduler_project.api.parsers import PayloadTooLarge
from scheduler_project.errors import ApplicationError

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

_TITLES = {
    400: ("invalid-input", "Invalid input"),
    401: ("not-authenticated", "Not authenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("throttled", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


def _encodable(text: str) -> str:
    """``text`` with lone surrogates escaped. Errors echo input (an unknown field's name, a
    value), and a JSON ``"\\ud800"`` read into such a name would make the error response
    itself fail to encode as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem(status_code: int, detail: str, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    code, title = _TITLES.get(status_code, ("error", "Error"))
    body: dict[str, Any] = {
        "type": f"urn:scheduler:problem:{code}",
        "title": title,
        "status": status_code,
        "detail": _encodable(detail),
    }
    if errors:
        body["errors"] = {
            _encodable(path): [_encodable(str(message)) for message in messages] for path, messages in errors.items()
        }
    return body


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as ``{"field.sub.0": ["message", ...]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            # A nested object's own errors ("expected a dictionary") belong to its path.
            nested_own = key == "non_field_errors" and prefix
            path = prefix if nested_own else f"{prefix}.{key}" if prefix else str(key)
            for sub_path, messages in flatten_errors(value, path).items():
                flat.setdefault(sub_path, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            flat[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item in ({}, []):
                    continue
                path = f"{prefix}.{index}" if prefix else str(index)
                for sub_path, messages in flatten_errors(item, path).items():
                    flat.setdefault(sub_path, []).extend(messages)
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


def _response(body: dict[str, Any], headers: Any = None) -> Response:
    response = Response(body, status=body["status"], headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    return response


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's ``EXCEPTION_HANDLER``: every error the API raises leaves through here."""
    if isinstance(exc, ApplicationError):
        body = problem(exc.status, exc.detail, exc.errors)
        body["type"] = f"urn:scheduler:problem:{exc.code}"
        body["title"] = exc.title
        return _response(body)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        # DRF reads request.body before a JSON parser runs, so Django's own cap (the same
        # DATA_UPLOAD_MAX_MEMORY_SIZE) trips before LimitedJSONParser can.
        exc = PayloadTooLarge(f"Request body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view"), exc_info=exc)
        return _response(problem(500, "The server failed to process the request."))

    headers = {k: v for k, v in response.headers.items() if k in {"WWW-Authenticate", "Retry-After", "Allow"}}
    if isinstance(exc, exceptions.ValidationError):
        body = problem(400, "The request has invalid fields.", flatten_errors(exc.detail))
    elif isinstance(exc, exceptions.ParseError):
        body = problem(400, "The request body is not valid JSON.", {"body": [str(exc.detail)]})
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        if isinstance(detail, dict):
            detail = detail.get("detail", next(iter(detail.values()), ""))
        body = problem(response.status_code, str(detail))
    return _response(body, headers)


def _plain(request: HttpRequest, status_code: int, detail: str) -> JsonResponse:
    return JsonResponse(problem(status_code, detail), status=status_code, content_type=PROBLEM_CONTENT_TYPE)


# Django-level handlers (urls.py): unknown paths and errors outside DRF views get the same shape.
def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _plain(request, 404, "No resource at this path.")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _plain(request, 400, "Bad request.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _plain(request, 403, "Forbidden.")


def server_error(request: HttpRequest) -> JsonResponse:
    return _plain(request, 500, "The server failed to process the request.")
