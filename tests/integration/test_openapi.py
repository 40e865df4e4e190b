"""The OpenAPI document: valid, generated without warnings, and complete for every routed endpoint.

The expected operations are derived from the router, so an endpoint added without a schema (or a
schema entry without an endpoint) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from scheduler_project.api.router import router

API_PREFIX = "/api/v1/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
WRITE_METHODS = {"post", "put", "patch"}
# Actions that exist to take input: their operation must document the request body.
BODY_ACTIONS = {"create", "update", "partial_update"}
PROBES = ["/healthz", "/readyz"]
SCHEMA_MEDIA_TYPE = "application/vnd.oai.openapi+json"


def _template(regex: str) -> str:
    """``^schedules/(?P<pk>[^/.]+)/enable/?$`` -> ``/api/v1/schedules/{id}/enable``."""
    path = regex.removeprefix("^").removesuffix("$").removesuffix("/?")
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path)
    # drf-spectacular documents the primary key lookup as {id}.
    return API_PREFIX + path.replace("{pk}", "{id}")


def _routed_operations() -> dict[tuple[str, str], str]:
    """``(path, method) -> action`` for every URL the router serves."""
    operations: dict[tuple[str, str], str] = {}
    for pattern in router.urls:
        path = _template(pattern.pattern.regex.pattern)
        for method, action in pattern.callback.actions.items():
            operations[(path, method)] = action
    return operations


ROUTED = _routed_operations()
ROUTED_IDS = [f"{method.upper()} {path}" for path, method in ROUTED]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The document as /api/schema serves it (generating it reads no rows)."""
    response = APIClient().get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def _operation(schema: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    assert path in schema["paths"], f"{path} missing from the schema"
    assert method in schema["paths"][path], f"{method.upper()} {path} missing from the schema"
    return schema["paths"][path][method]


def _api_operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        if path.startswith(API_PREFIX)
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _assert_problem_response(operation: dict[str, Any], code: str) -> None:
    assert code in operation["responses"], f"response {code} not documented"
    content = operation["responses"][code].get("content", {})
    assert PROBLEM_MEDIA_TYPE in content, f"response {code} is not documented as {PROBLEM_MEDIA_TYPE}"
    assert content[PROBLEM_MEDIA_TYPE]["schema"] == {"$ref": PROBLEM_REF}


def test_router_has_routes() -> None:
    """Guards the derivation below: an empty route table would make every check vacuous."""
    assert {prefix for prefix, _, _ in router.registry} <= {path.split("/")[3] for path, _ in ROUTED}
    assert ("/api/v1/schedules", "post") in ROUTED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "headers"),
    [({"format": "json"}, {}), ({}, {"HTTP_ACCEPT": SCHEMA_MEDIA_TYPE})],
    ids=["format_query", "accept_header"],
)
def test_schema_endpoint_serves_valid_openapi_3(query: dict[str, str], headers: dict[str, str]) -> None:
    response = APIClient().get("/api/schema", query, **headers)

    assert response.status_code == 200
    assert response["Content-Type"].startswith(SCHEMA_MEDIA_TYPE)
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    validate_schema(document)


@pytest.mark.django_db
def test_schema_endpoint_serves_yaml_by_default() -> None:
    response = APIClient().get("/api/schema")

    assert response.status_code == 200
    assert yaml.safe_load(response.content)["openapi"].startswith("3.")


def test_generator_runs_without_warnings(tmp_path: Path) -> None:
    """``spectacular --validate --fail-on-warn``: a view the generator cannot resolve fails CI."""
    GENERATOR_STATS.reset()  # warnings of earlier generations in this process are not this run's
    out = tmp_path / "openapi.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    document = yaml.safe_load(out.read_text())
    assert document["openapi"].startswith("3.")
    assert not GENERATOR_STATS


@pytest.mark.parametrize(("path", "method"), list(ROUTED), ids=ROUTED_IDS)
def test_every_routed_operation_is_documented(schema: dict[str, Any], path: str, method: str) -> None:
    _operation(schema, path, method)


def test_schema_documents_no_unrouted_api_operation(schema: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in _api_operations(schema)}

    assert documented == set(ROUTED)


@pytest.mark.parametrize(("path", "method"), list(ROUTED), ids=ROUTED_IDS)
def test_operation_requires_bearer_auth_and_documents_auth_errors(
    schema: dict[str, Any], path: str, method: str
) -> None:
    operation = _operation(schema, path, method)

    # Exactly the bearer scheme: an extra ``{}`` entry would mark authentication optional.
    assert operation.get("security") == [{"bearerAuth": []}]
    _assert_problem_response(operation, "401")
    _assert_problem_response(operation, "403")


@pytest.mark.parametrize(
    ("path", "method"),
    [key for key in ROUTED if "{id}" in key[0]],
    ids=[f"{m.upper()} {p}" for p, m in ROUTED if "{id}" in p],
)
def test_detail_operation_documents_404(schema: dict[str, Any], path: str, method: str) -> None:
    operation = _operation(schema, path, method)

    _assert_problem_response(operation, "404")
    assert {"in": "path", "name": "id"}.items() <= next(p for p in operation["parameters"] if p["name"] == "id").items()


@pytest.mark.parametrize(
    ("path", "method"),
    [key for key in ROUTED if key[1] in WRITE_METHODS],
    ids=[f"{m.upper()} {p}" for p, m in ROUTED if m in WRITE_METHODS],
)
def test_write_operation_documents_body_and_400(schema: dict[str, Any], path: str, method: str) -> None:
    operation = _operation(schema, path, method)

    _assert_problem_response(operation, "400")
    if ROUTED[(path, method)] in BODY_ACTIONS:
        body = operation.get("requestBody")
        assert body, "request body not documented"
        assert "application/json" in body["content"]
        assert body["content"]["application/json"]["schema"]


def test_security_scheme_is_bearer_jwt(schema: dict[str, Any]) -> None:
    scheme = schema["components"]["securitySchemes"]["bearerAuth"]

    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert scheme["bearerFormat"] == "JWT"
    # Authentication is declared per operation; a global requirement would also cover the probes.
    assert not schema.get("security")


@pytest.mark.parametrize("path", PROBES, ids=lambda p: p.strip("/"))
def test_probes_are_documented_without_auth(schema: dict[str, Any], path: str) -> None:
    operation = _operation(schema, path, "get")

    assert operation.get("security", []) in ([], [{}])
    assert "401" not in operation["responses"]
    assert "200" in operation["responses"]


@pytest.mark.django_db
def test_docs_page_renders() -> None:
    response = APIClient().get("/api/docs")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()
    assert b"/api/schema" in response.content
