"""REST endpoints for patients. Views parse and answer; services and selectors do the work."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.models import AuditAction
from apps.audit.reads import audit_list_read
from apps.audit.services import audit_record
from clinic_platform.api import validated_input

from .models import Sex
from .selectors import patient_get, patient_list
from .services import patient_create


class PatientOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    mrn = serializers.CharField()
    name = serializers.CharField()
    date_of_birth = serializers.DateField(allow_null=True)
    sex = serializers.CharField()
    created_at = serializers.DateTimeField()


class PatientListApi(GenericAPIView):
    class PatientCreateInputSerializer(serializers.Serializer):
        mrn = serializers.CharField(max_length=64)
        name = serializers.CharField(max_length=200)
        date_of_birth = serializers.DateField(required=False, allow_null=True)
        sex = serializers.ChoiceField(choices=Sex.choices, required=False, allow_blank=True)

    serializer_class = PatientOutputSerializer

    @extend_schema(responses=PatientOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        patients = patient_list(user=request.user, search=request.query_params.get("search", ""))
        page = self.paginate_queryset(patients)
        audit_list_read(request, "patient", [patient.pk for patient in page], what="list")
        return self.get_paginated_response(PatientOutputSerializer(page, many=True).data)

    @extend_schema(request=PatientCreateInputSerializer, responses={201: PatientOutputSerializer})
    def post(self, request: Request) -> Response:
        patient = patient_create(created_by=request.user, **validated_input(self.PatientCreateInputSerializer, request))
        return Response(PatientOutputSerializer(patient).data, status=status.HTTP_201_CREATED)


class PatientDetailApi(APIView):
    @extend_schema(responses=PatientOutputSerializer)
    def get(self, request: Request, patient_id: int) -> Response:
        patient = patient_get(user=request.user, patient_id=patient_id)
        audit_record(actor=request.user, action=AuditAction.VIEW, obj=patient, request=request)
        return Response(PatientOutputSerializer(patient).data)
