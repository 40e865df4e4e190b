from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from scheduler_project.api import scopes
from scheduler_project.api.schema import problems
from scheduler_project.api.viewsets import TenantViewSet
from subscriptions import selectors, services
from subscriptions.api.serializers import SubscriptionInputSerializer, SubscriptionOutputSerializer
from subscriptions.models import EventSubscription

_DESCRIPTION = (
    "Each event published on NATS on `subject` whose JSON body meets `filter` runs `schedule` now: a "
    'MANUAL run whose payload is `{"event": <the event>, "subject": <its subject>}` over the job\'s '
    "and schedule's payloads. A redelivered event (same `Nats-Msg-Id`, CloudEvents id, or body) runs "
    "once; a paused schedule does not run. `manage.py consume_events` does the listening."
)


@extend_schema_view(
    list=extend_schema(
        summary="List event subscriptions",
        description=_DESCRIPTION,
        responses={200: SubscriptionOutputSerializer(many=True), **problems(400)},
    ),
    retrieve=extend_schema(
        summary="Get an event subscription", responses={200: SubscriptionOutputSerializer, **problems(400, 404)}
    ),
    create=extend_schema(
        summary="Subscribe a schedule to events",
        description=_DESCRIPTION,
        request=SubscriptionInputSerializer,
        responses={201: SubscriptionOutputSerializer, **problems(400, 413)},
    ),
    partial_update=extend_schema(
        summary="Change an event subscription",
        request=SubscriptionInputSerializer(partial=True),
        responses={200: SubscriptionOutputSerializer, **problems(400, 404, 413)},
    ),
    destroy=extend_schema(summary="Delete an event subscription", responses={204: None, **problems(400, 404)}),
)
class SubscriptionViewSet(TenantViewSet[EventSubscription]):
    """Event subscriptions: NATS events that trigger a schedule."""

    queryset = EventSubscription.objects.none()
    serializer_class = SubscriptionOutputSerializer
    required_scopes = {"list": scopes.READ, "retrieve": scopes.READ}  # writes: admin

    def tenant_queryset(self, tenant_id: str) -> QuerySet[EventSubscription]:
        return selectors.subscription_list(tenant_id=tenant_id)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(SubscriptionOutputSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(SubscriptionOutputSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        data = self.validated(SubscriptionInputSerializer, request.data)
        subscription = services.subscription_create(tenant_id=self.tenant_id, **data)
        return Response(SubscriptionOutputSerializer(subscription).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        subscription = self.get_object()
        data = self.validated(SubscriptionInputSerializer, request.data, partial=True)
        subscription = services.subscription_update(subscription=subscription, data=data)
        return Response(SubscriptionOutputSerializer(subscription).data)

    def destroy(self, request: Request, pk: str) -> Response:
        services.subscription_delete(subscription=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
