"""Shared fixtures: API clients holding tokens of a given tenant and scope."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from scheduler_project.api import scopes
from scheduler_project.api.authentication import token_issue
from tests.e2e.harness import Receiver, broker_purge
from tests.factories import OTHER_TENANT, TENANT

ALL_SCOPES = (scopes.READ, scopes.OPERATE, scopes.ADMIN, scopes.WORKER)


def make_token(tenant: str = TENANT, scope: tuple[str, ...] | str = scopes.ADMIN, hours: float = 1) -> str:
    scope_list = [scope] if isinstance(scope, str) else list(scope)
    return token_issue(tenant_id=tenant, scopes=scope_list, lifetime=timedelta(hours=hours))


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    """``client_for(tenant="acme", scope="scheduler:admin")``: an API client with a bearer token."""

    def build(tenant: str = TENANT, scope: tuple[str, ...] | str = scopes.ADMIN) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(tenant, scope)}")
        return client

    return build


@pytest.fixture
def api(client_for: Callable[..., APIClient]) -> APIClient:
    """An admin client of the default tenant."""
    return client_for()


@pytest.fixture
def other_api(client_for: Callable[..., APIClient]) -> APIClient:
    """An admin client of another tenant."""
    return client_for(OTHER_TENANT)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 (tests/e2e/harness.py), answering 200 unless told otherwise."""
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def queue() -> Iterator[str]:
    """A broker queue of the test's own, emptied (with its capability queues) afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    broker_purge(name)
