"""RS256 tokens verified against a JWKS served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from scheduler_project.api import scopes
from tests.factories import TENANT, JobFactory

pytestmark = pytest.mark.django_db
KID = "key-2027"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY = _rsa_key()
FOREIGN_KEY = _rsa_key()


class _JWKSHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[str]:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING_KEY.public_key(), as_dict=True)
    jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})
    handler = type("Handler", (_JWKSHandler,), {"body": json.dumps({"keys": [jwk]}).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture
def jwks(settings: Any, jwks_server: str) -> str:
    settings.JWKS_URL = jwks_server
    return jwks_server


def _token(key: Any = SIGNING_KEY, kid: str = KID, algorithm: str = "RS256", **claims: Any) -> str:
    now = datetime.now(UTC)
    payload = {
        "sub": "svc-analytics",
        "tenant_id": TENANT,
        "scope": f"{scopes.READ} {scopes.OPERATE}",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def _get(token: str, path: str = "/api/v1/jobs") -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(path)


def test_rs256_token_from_the_key_set_is_accepted(jwks: str) -> None:
    job = JobFactory()
    response = _get(_token())
    assert response.status_code == 200
    assert [j["id"] for j in response.json()["results"]] == [str(job.pk)]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: _token(key=FOREIGN_KEY), id="signed_by_unknown_key"),
        pytest.param(lambda: _token(kid="rotated-away"), id="unknown_kid"),
        pytest.param(lambda: _token(exp=int(datetime.now(UTC).timestamp()) - 3600), id="expired"),
        pytest.param(lambda: _token(key="local-secret-" * 4, algorithm="HS256"), id="hs256_when_jwks_configured"),
    ],
)
def test_tokens_the_key_set_does_not_vouch_for_are_401(jwks: str, token: Any) -> None:
    assert _get(token()).status_code == 401


def test_unreachable_key_set_is_401_not_500(settings: Any) -> None:
    settings.JWKS_URL = "http://127.0.0.1:9/jwks.json"  # discard port: nothing listens
    response = _get(_token())
    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_audience_is_enforced_when_configured(jwks: str, settings: Any) -> None:
    settings.JWT_AUDIENCE = "scheduler"
    assert _get(_token()).status_code == 401
    assert _get(_token(aud="scheduler")).status_code == 200
    assert _get(_token(aud="someone-else")).status_code == 401


def test_scope_from_identity_provider_is_enforced(jwks: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {_token()}")
    response = client.post("/api/v1/jobs", {}, format="json")
    assert response.status_code == 403
    assert scopes.ADMIN in response.json()["detail"]


def test_issue_token_refuses_when_tokens_come_from_the_identity_provider(jwks: str) -> None:
    with pytest.raises(CommandError, match="JWKS_URL"):
        call_command("issue_token", "--tenant", TENANT)
