"""The base viewset: the single choke point for authentication, tenant scoping and scopes.

Every API view derives from :class:`TenantViewSet`. Its queryset always comes from a
tenant-scoped selector, so another tenant's id is a 404 and never leaks a row; its
``required_scopes`` map names the scope each action needs (``ScopePermission`` checks it).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Generic, TypeVar, cast

import structlog
from django.db.models import Model, QuerySet
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from scheduler_project.api import scopes
from scheduler_project.api.authentication import Principal

PAGINATOR_PARAM_ATTRS = ("page_query_param", "page_size_query_param", "cursor_query_param")
M = TypeVar("M", bound=Model)


class TenantViewSet(viewsets.GenericViewSet, Generic[M]):
    required_scopes: ClassVar[dict[str, str]] = {"list": scopes.READ, "retrieve": scopes.READ}

    def tenant_queryset(self, tenant_id: str) -> QuerySet[M]:
        """The tenant-scoped selector behind this view."""
        raise NotImplementedError

    @property
    def principal(self) -> Principal:
        user = self.request.user
        assert isinstance(user, Principal)  # ScopePermission has already refused anything else
        return user

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id

    def get_queryset(self) -> QuerySet[M]:
        if getattr(self, "swagger_fake_view", False):
            # Schema generation has no principal; no tenant has the empty id.
            return self.tenant_queryset("")
        return self.tenant_queryset(self.tenant_id)

    def get_object(self) -> M:
        raw = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        try:
            uuid.UUID(str(raw))
        except ValueError:
            raise ValidationError({"id": [f"{raw!r} is not a valid UUID."]}) from None
        return cast(M, super().get_object())

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        if isinstance(request.user, Principal):  # every log line of the request names its tenant
            structlog.contextvars.bind_contextvars(tenant_id=request.user.tenant_id)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if self.action == "list":
            self._refuse_unknown_query_params(request)

    def _refuse_unknown_query_params(self, request: Request) -> None:
        # Only the parameters of this list's paginator: ?page= on the (cursor-paginated) runs
        # list would otherwise be dropped without a word.
        paginator = self.paginator
        allowed = {getattr(paginator, attr, None) for attr in PAGINATOR_PARAM_ATTRS} - {None}
        filterset_class = getattr(self, "filterset_class", None)
        if filterset_class is not None:
            # One parameter per filter: no range filters, whose widgets would add suffixes.
            allowed |= set(filterset_class.base_filters)
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise ValidationError({name: ["Unknown query parameter."] for name in unknown})

    @staticmethod
    def validated(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict[str, Any]:
        serializer = serializer_class(data=data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)
