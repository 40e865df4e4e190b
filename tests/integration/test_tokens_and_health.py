"""`issue_token` for local use, and the health probes against the real database and broker."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from scheduler_project.celery import app as celery_app
from schedules.services import beat_lease_acquire
from tests.factories import TENANT, JobFactory


def _issue(*args: str) -> str:
    out = StringIO()
    call_command("issue_token", *args, stdout=out)
    return out.getvalue().strip()


@pytest.mark.django_db
def test_issued_token_opens_the_api_for_its_tenant_and_scope() -> None:
    job = JobFactory()
    token = _issue("--tenant", TENANT, "--scope", "scheduler:read")
    claims = jwt.decode(token, settings.SECRET_KEY, algorithms=["HS256"])
    assert claims["tenant_id"] == TENANT
    assert claims["scope"] == "scheduler:read"
    assert claims["exp"] - claims["iat"] == 12 * 3600

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert [j["id"] for j in client.get("/api/v1/jobs").json()["results"]] == [str(job.pk)]
    assert client.post("/api/v1/jobs", {}, format="json").status_code == 403


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "acme", "--scope", "scheduler:everything"], "unknown scope"),
        (["--tenant", "", "--scope", "scheduler:read"], "tenant"),
        (["--tenant", "x" * 65], "tenant"),
        (["--tenant", "acme", "--hours", "0"], "--hours"),
    ],
    ids=["unknown_scope", "empty_tenant", "long_tenant", "zero_lifetime"],
)
def test_issue_token_refuses_bad_arguments_clearly(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        _issue(*args)


def test_healthz_is_cheap_and_open() -> None:
    response = APIClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture
def beat_leads() -> None:
    assert beat_lease_acquire(holder="test-beat", ttl=timedelta(seconds=30)) is not None


@pytest.mark.django_db
@pytest.mark.usefixtures("beat_leads")
def test_readyz_checks_database_broker_and_beat(settings: Any) -> None:
    settings.NATS_URL = None  # tests/integration/test_observability.py checks NATS against a server of its own
    response = APIClient().get("/readyz")
    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    assert {name: checks[name] for name in ("database", "broker", "beat")} == {
        "database": "ok",
        "broker": "ok",
        "beat": "ok",
    }
    assert set(checks) == {"database", "broker", "beat", "workers"}  # workers: reported, not required


@pytest.fixture
def broker_down() -> Any:
    original = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    yield
    celery_app.conf.broker_url = original


@pytest.mark.django_db
@pytest.mark.usefixtures("broker_down", "beat_leads")
def test_readyz_names_the_dependency_that_is_down() -> None:
    response = APIClient().get("/readyz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("down: ")
    assert "broker" in body["detail"]
