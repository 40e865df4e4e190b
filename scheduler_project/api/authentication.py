"""JWT bearer authentication: the one place a request becomes a tenant principal.

Tokens are verified by djangorestframework-simplejwt: RS256 against the key set at
``JWKS_URL`` when it is set, else HS256 with ``SECRET_KEY``. The token must carry a
``tenant_id`` claim and a space-separated ``scope`` claim; there is no user table behind it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken

from scheduler_project.api.scopes import KNOWN_SCOPES

MAX_TENANT_ID_LENGTH = 64


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, the scopes the token grants, and the token's subject."""

    tenant_id: str
    scopes: frozenset[str]
    subject: str = ""

    is_authenticated = True
    is_anonymous = False

    def __str__(self) -> str:
        return f"{self.subject or 'token'}@{self.tenant_id}"


@functools.cache
def token_backend() -> TokenBackend:
    """The token backend for the current settings (rebuilt when tests change them)."""
    return TokenBackend(
        algorithm="RS256" if settings.JWKS_URL else "HS256",
        signing_key=settings.SECRET_KEY,
        audience=settings.JWT_AUDIENCE,
        issuer=settings.JWT_ISSUER,
        jwk_url=settings.JWKS_URL,
        leeway=settings.JWT_LEEWAY_SECONDS,
    )


@receiver(setting_changed)
def _reset_token_backend(*, setting: str, **kwargs: Any) -> None:
    if setting in {"SECRET_KEY", "JWKS_URL", "JWT_AUDIENCE", "JWT_ISSUER", "SIMPLE_JWT"}:
        token_backend.cache_clear()


class TenantAccessToken(AccessToken):
    def get_token_backend(self) -> TokenBackend:
        return token_backend()


class TenantJWTAuthentication(JWTAuthentication):
    www_authenticate_realm = "scheduler"

    def get_validated_token(self, raw_token: bytes) -> TenantAccessToken:
        try:
            return TenantAccessToken(raw_token)  # type: ignore[arg-type]
        except TokenError as exc:
            raise InvalidToken(str(exc.args[0])) from exc

    def get_user(self, validated_token: Any) -> Principal:  # type: ignore[override]
        tenant_id = validated_token.get("tenant_id")
        if not isinstance(tenant_id, str) or not 0 < len(tenant_id) <= MAX_TENANT_ID_LENGTH:
            raise InvalidToken("Token carries no valid tenant_id claim.")
        scope = validated_token.get("scope", "")
        if not isinstance(scope, str):
            raise InvalidToken("Token's scope claim must be a space-separated string.")
        subject = validated_token.get("sub", "")
        return Principal(
            tenant_id=tenant_id,
            scopes=frozenset(scope.split()),
            subject=subject if isinstance(subject, str) else str(subject),
        )


def token_issue(*, tenant_id: str, scopes: list[str], subject: str = "", lifetime: timedelta) -> str:
    """Sign an HS256 token with the local secret (for local use and tests)."""
    if settings.JWKS_URL:
        raise ValueError("JWKS_URL is set: tokens come from the identity provider, not from this service.")
    if not 0 < len(tenant_id) <= MAX_TENANT_ID_LENGTH:
        raise ValueError(f"tenant must be 1-{MAX_TENANT_ID_LENGTH} characters.")
    unknown = sorted(set(scopes) - KNOWN_SCOPES)
    if unknown:
        raise ValueError(f"unknown scope {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_SCOPES))}.")
    now = datetime.now(UTC)
    payload = {
        "sub": subject or f"local:{tenant_id}",
        "tenant_id": tenant_id,
        "scope": " ".join(scopes),
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return token_backend().encode(payload)
