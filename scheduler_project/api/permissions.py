"""The scope check: which token scope each API action needs."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from scheduler_project.api import scopes
from scheduler_project.api.authentication import Principal


class ScopePermission(BasePermission):
    """Grant an action when the token holds a scope that satisfies the view's requirement.

    Views name their requirement per action in ``required_scopes``; an action missing from
    that map needs ``scheduler:admin`` (fail closed). Without a principal DRF answers 401.
    """

    message = "The token's scope does not allow this operation."

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, Principal):
            return False
        required = required_scope(view)
        if not scopes.grants(principal.scopes, required):
            self.message = f"This operation needs the {required} scope."
            return False
        return True


def required_scope(view: Any) -> str:
    action = getattr(view, "action", None) or (view.request.method.lower() if view.request else "")
    return getattr(view, "required_scopes", {}).get(action, scopes.ADMIN)
