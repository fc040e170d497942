"""GET /api/audit-events/: the clinic's audit trail, for clinic admins."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from clinic_platform.api import IsClinicAdmin

from .models import AuditAction
from .selectors import AuditFilters, audit_event_list


class AuditEventOutputSerializer(serializers.Serializer):
    actor = serializers.CharField(source="actor_username")
    action = serializers.ChoiceField(choices=AuditAction.choices)
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    ip = serializers.IPAddressField(allow_null=True)
    at = serializers.DateTimeField()
    outcome = serializers.CharField()


class AuditEventListApi(GenericAPIView):
    permission_classes = (IsClinicAdmin,)
    serializer_class = AuditEventOutputSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("action", str, enum=AuditAction.values),
            OpenApiParameter("object_type", str, description="patient, case, scan, user, token, audit…"),
            OpenApiParameter("object_id", str),
            OpenApiParameter("actor", str, description="username"),
            OpenApiParameter("since", str, description="ISO 8601 date or date-time, inclusive"),
        ],
        responses=AuditEventOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        events = audit_event_list(user=request.user, filters=AuditFilters.from_query(request.query_params))
        page = self.paginate_queryset(events)
        return self.get_paginated_response(AuditEventOutputSerializer(page, many=True).data)
