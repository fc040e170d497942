"""REST endpoints for cases."""

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.patients.models import Patient
from apps.patients.selectors import patient_list
from apps.scans.apis import ScanOutputSerializer

from .selectors import CaseFilters, case_get, case_list
from .services import case_create


class CaseOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    patient = serializers.IntegerField(source="patient_id")
    patient_name = serializers.CharField(source="patient.name")
    patient_mrn = serializers.CharField(source="patient.mrn")
    title = serializers.CharField()
    clinical_notes = serializers.CharField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    status = serializers.CharField()
    scans = ScanOutputSerializer(many=True, source="scans.all")


_FILTER_PARAMETERS = [
    OpenApiParameter("q", str, description="Patient name or MRN contains"),
    OpenApiParameter("patient", int),
    OpenApiParameter("date_from", str, description="YYYY-MM-DD, inclusive"),
    OpenApiParameter("date_to", str, description="YYYY-MM-DD, inclusive"),
    OpenApiParameter("label", str),
    OpenApiParameter("status", str, enum=["empty", "pending", "failed", "done"]),
]


class CaseListApi(GenericAPIView):
    class CaseCreateInputSerializer(serializers.Serializer):
        patient = serializers.IntegerField()
        title = serializers.CharField(max_length=200, required=False, allow_blank=True)
        clinical_notes = serializers.CharField(required=False, allow_blank=True)

    serializer_class = CaseOutputSerializer

    @extend_schema(parameters=_FILTER_PARAMETERS, responses=CaseOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        cases = case_list(user=request.user, filters=CaseFilters.from_query(request.query_params))
        page = self.paginate_queryset(cases)
        return self.get_paginated_response(CaseOutputSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(request=CaseCreateInputSerializer, responses={201: CaseOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.CaseCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        try:
            patient = patient_list(user=request.user).get(pk=fields.pop("patient"))
        except Patient.DoesNotExist:
            raise ValidationError({"patient": "No such patient."}) from None
        case = case_create(created_by=request.user, patient=patient, **fields)
        case = case_get(user=request.user, case_id=case.pk)
        return Response(CaseOutputSerializer(case, context={"request": request}).data, status=status.HTTP_201_CREATED)


class CaseDetailApi(APIView):
    @extend_schema(responses=CaseOutputSerializer)
    def get(self, request: Request, case_id: int) -> Response:
        case = case_get(user=request.user, case_id=case_id)
        audit_record(actor=request.user, action=AuditAction.VIEW, obj=case, request=request)
        return Response(CaseOutputSerializer(case, context={"request": request}).data)
