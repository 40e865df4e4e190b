from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from calendars import selectors, services
from calendars.api.serializers import (
    CalendarHolidaysSerializer,
    CalendarInputSerializer,
    CalendarOutputSerializer,
    HolidaysQuerySerializer,
)
from calendars.engine import InvalidCalendar
from calendars.models import Calendar
from scheduler_project.api import scopes
from scheduler_project.api.schema import problems
from scheduler_project.api.viewsets import TenantViewSet
from scheduler_project.errors import Conflict


@extend_schema_view(
    list=extend_schema(summary="List calendars", responses={200: CalendarOutputSerializer(many=True), **problems(400)}),
    retrieve=extend_schema(summary="Get a calendar", responses={200: CalendarOutputSerializer, **problems(400, 404)}),
    create=extend_schema(
        summary="Create a calendar",
        request=CalendarInputSerializer,
        responses={201: CalendarOutputSerializer, **problems(400, 413)},
    ),
    partial_update=extend_schema(
        summary="Change a calendar",
        request=CalendarInputSerializer(partial=True),
        responses={200: CalendarOutputSerializer, **problems(400, 404, 413)},
    ),
    destroy=extend_schema(summary="Delete an unused calendar", responses={204: None, **problems(400, 404, 409)}),
    holidays=extend_schema(
        summary="List a calendar's non-working days",
        description=(
            "Every day from `from` to `to` (both included) that is not a business day, with its "
            "reason: a holiday of the country, subdivision or market (named in English), one of the "
            "calendar's custom holidays, or a weekend day. Custom working days are left out. "
            "Both ends are optional: `from` defaults to today in the service's time zone "
            "(DEFAULT_TZ), `to` to a year after `from`."
        ),
        operation_id="calendars_holidays",
        parameters=[HolidaysQuerySerializer],
        responses={200: CalendarHolidaysSerializer, **problems(400, 404, 409)},
    ),
)
class CalendarViewSet(TenantViewSet[Calendar]):
    """Business calendars: holidays of a country or market, weekend days and custom dates."""

    queryset = Calendar.objects.none()
    serializer_class = CalendarOutputSerializer
    required_scopes = {"list": scopes.READ, "retrieve": scopes.READ, "holidays": scopes.READ}  # writes: admin

    def tenant_queryset(self, tenant_id: str) -> QuerySet[Calendar]:
        return selectors.calendar_list(tenant_id=tenant_id)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(CalendarOutputSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(CalendarOutputSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        data = self.validated(CalendarInputSerializer, request.data)
        calendar = services.calendar_create(tenant_id=self.tenant_id, **data)
        return Response(CalendarOutputSerializer(self._reload(calendar)).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        calendar = self.get_object()
        data = self.validated(CalendarInputSerializer, request.data, partial=True)
        calendar = services.calendar_update(calendar=calendar, data=data)
        return Response(CalendarOutputSerializer(self._reload(calendar)).data)

    def destroy(self, request: Request, pk: str) -> Response:
        services.calendar_delete(calendar=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["get"])
    def holidays(self, request: Request, pk: str) -> Response:
        # The query is checked before the calendar is looked up: a bad query is a 400 whether
        # or not the id exists. The default `from` reads the clock here, never in the engine.
        query = HolidaysQuerySerializer.from_query(request.query_params)
        start, end = query.validated_data["from"], query.validated_data["to"]
        calendar = self.get_object()
        try:
            business_calendar = selectors.calendar_business_calendar(calendar=calendar)
        except InvalidCalendar as exc:
            # Stored when valid; a `holidays` upgrade can drop a subdivision or market code.
            raise Conflict(f"The calendar's holiday source is no longer supported: {exc}", exc.errors) from None
        days = business_calendar.closures(start, end)
        return Response(
            CalendarHolidaysSerializer({"calendar": calendar.pk, "from": start, "to": end, "days": days}).data
        )

    def _reload(self, calendar: Calendar) -> Any:
        return self.get_queryset().get(pk=calendar.pk)
