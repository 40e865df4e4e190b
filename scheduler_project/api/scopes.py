"""Token scopes and what each one grants."""

from __future__ import annotations

READ = "scheduler:read"
OPERATE = "scheduler:operate"
ADMIN = "scheduler:admin"
WORKER = "scheduler:worker"

KNOWN_SCOPES = frozenset({READ, OPERATE, ADMIN, WORKER})

# A required scope is satisfied by any of these granted scopes: admin can do everything,
# operate includes read; worker endpoints take a worker token or admin.
SATISFIED_BY: dict[str, frozenset[str]] = {
    READ: frozenset({READ, OPERATE, ADMIN}),
    OPERATE: frozenset({OPERATE, ADMIN}),
    ADMIN: frozenset({ADMIN}),
    WORKER: frozenset({WORKER, ADMIN}),
}


def grants(granted: frozenset[str], required: str) -> bool:
    return not granted.isdisjoint(SATISFIED_BY[required])
