"""OpenAPI pieces shared by every view: the problem document and the bearer scheme."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from scheduler_project.api.exceptions import PROBLEM_CONTENT_TYPE

_DESCRIPTIONS = {
    400: "Invalid input: `errors` maps each field path to its messages.",
    401: "No token, or an invalid or expired one.",
    403: "The token's scope does not allow this operation.",
    404: "No such resource for this tenant.",
    409: "The resource's state does not allow this operation.",
    413: "Request body too large.",
}


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details (``application/problem+json``)."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    # Shadows Serializer.errors; harmless here: this serializer only describes the schema.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text='Field path to messages, e.g. {"trigger.expression": ["..."]}.',
    )


def problems(*codes: int) -> dict[tuple[int, str], Any]:
    """Error responses of an operation; 401 and 403 apply to every endpoint.

    Documented with the media type they are served as, ``application/problem+json``.
    """
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=_DESCRIPTIONS[code])
        for code in (401, 403, *codes)
    }


class TenantJWTScheme(OpenApiAuthenticationExtension):
    target_class = "scheduler_project.api.authentication.TenantJWTAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer", bearer_format="JWT"
        )
        scheme["description"] = (
            "A JWT with claims `tenant_id` and `scope` (space-separated: scheduler:read, "
            "scheduler:operate, scheduler:admin, scheduler:worker)."
        )
        return scheme


def strip_trailing_slashes(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: document paths without the (optional) trailing slash."""
    result["paths"] = {path.rstrip("/") or "/": item for path, item in result.get("paths", {}).items()}
    return result
