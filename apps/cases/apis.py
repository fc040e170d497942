"""REST endpoints for cases."""

from django.core.exceptions import ValidationError
from django.db.models import prefetch_related_objects
from django.http import HttpResponse
from django.utils.cache import add_never_cache_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.reads import audit_list_read, audit_read
from apps.patients.models import Patient
from apps.patients.selectors import patient_list
from apps.scans.apis import ScanOutputSerializer, StudyProgressOutputSerializer
from apps.scans.studies import study_progress_for_case
from clinic_platform.api import validated_input
from clinic_platform.renderers import PdfRenderer

from .models import Case
from .reports import case_report_export
from .selectors import CaseFilters, case_get, case_list
from .services import case_create, case_sign
from .worklist import Priority, WorklistFilters, case_worklist_ids, case_worklist_rows


class AddendumOutputSerializer(serializers.Serializer):
    text = serializers.CharField()
    author = serializers.CharField(source="author.username")
    created_at = serializers.DateTimeField()


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
    # Sign-off: until signed_at is set, the model's output in this case is unverified.
    verified = serializers.BooleanField(source="is_signed")
    signed_by = serializers.CharField(source="signed_by.username", allow_null=True, default=None)
    signed_at = serializers.DateTimeField(allow_null=True)
    conclusion = serializers.CharField()
    addenda = AddendumOutputSerializer(many=True, source="addenda.all")
    scans = ScanOutputSerializer(many=True, source="scans.all")
    exam_date = serializers.SerializerMethodField(help_text="the earliest exam date of its DICOM scans")

    def get_exam_date(self, case: Case) -> str | None:
        dates = [scan.exam_date for scan in case.scans.all() if scan.exam_date]  # prefetched
        return min(dates).isoformat() if dates else None


class CaseDetailOutputSerializer(CaseOutputSerializer):
    studies = serializers.SerializerMethodField()

    @extend_schema_field(StudyProgressOutputSerializer(many=True))
    def get_studies(self, case: Case) -> list[dict]:
        """DICOM study uploads, oldest first, with their progress ("83 of 200 slices analysed.")."""
        return StudyProgressOutputSerializer(study_progress_for_case(case=case), many=True).data


class WorklistCaseOutputSerializer(CaseOutputSerializer):
    priority = serializers.IntegerField(help_text="0: tumour with low confidence, 1: tumour, 2: the rest")
    priority_name = serializers.SerializerMethodField()

    def get_priority_name(self, case: Case) -> str:
        return Priority.NAMES[case.priority]


_FILTER_PARAMETERS = [
    OpenApiParameter("q", str, description="Patient name or MRN contains"),
    OpenApiParameter("patient", int),
    OpenApiParameter("date_from", str, description="YYYY-MM-DD, inclusive"),
    OpenApiParameter("date_to", str, description="YYYY-MM-DD, inclusive"),
    OpenApiParameter("label", str),
    OpenApiParameter("status", str, enum=["empty", "pending", "failed", "rejected", "done"]),
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
        page = self.paginate_queryset(cases.prefetch_related("addenda__author"))
        audit_list_read(request, "case", [case.pk for case in page], what="cases api")
        return self.get_paginated_response(CaseOutputSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(request=CaseCreateInputSerializer, responses={201: CaseOutputSerializer})
    def post(self, request: Request) -> Response:
        fields = dict(validated_input(self.CaseCreateInputSerializer, request))
        try:
            patient = patient_list(user=request.user).get(pk=fields.pop("patient"))
        except Patient.DoesNotExist:
            raise ValidationError({"patient": "No such patient."}) from None
        case = case_create(created_by=request.user, patient=patient, **fields)
        case = case_get(user=request.user, case_id=case.pk)
        return Response(CaseOutputSerializer(case, context={"request": request}).data, status=status.HTTP_201_CREATED)


class CaseDetailApi(APIView):
    @extend_schema(responses=CaseDetailOutputSerializer)
    def get(self, request: Request, case_id: int) -> Response:
        case = case_get(user=request.user, case_id=case_id)
        audit_read(request, case, shown="scans", ids=[scan.pk for scan in case.scans.all()])
        return Response(CaseDetailOutputSerializer(case, context={"request": request}).data)


class CaseSignApi(APIView):
    class CaseSignInputSerializer(serializers.Serializer):
        conclusion = serializers.CharField(allow_blank=True)

    @extend_schema(request=CaseSignInputSerializer, responses={200: CaseOutputSerializer})
    def post(self, request: Request, case_id: int) -> Response:
        case = case_get(user=request.user, case_id=case_id)
        conclusion = validated_input(self.CaseSignInputSerializer, request)["conclusion"]
        case_sign(case=case, signer=request.user, conclusion=conclusion)
        case = case_get(user=request.user, case_id=case_id)
        return Response(CaseOutputSerializer(case, context={"request": request}).data)


class CaseReportApi(APIView):
    """The case's PDF report; another clinic's case is a 404 like a missing one."""

    renderer_classes = [JSONRenderer, PdfRenderer]

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    def get(self, request: Request, case_id: int) -> HttpResponse:
        report = case_report_export(user=request.user, case_id=case_id)
        response = HttpResponse(report.pdf, content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{report.filename}"'
        response["X-Content-Type-Options"] = "nosniff"
        add_never_cache_headers(response)  # like the scan media: no copy on a shared PC
        return response


_WORKLIST_PARAMETERS = [
    *[parameter for parameter in _FILTER_PARAMETERS if parameter.name != "status"],
    OpenApiParameter("confidence", str, enum=["low", "confident"]),
    OpenApiParameter("mine", bool, description="Only cases with a scan I reviewed"),
]


class WorklistApi(GenericAPIView):
    """Analysed cases not yet signed, most urgent first (the worklist page's order)."""

    serializer_class = WorklistCaseOutputSerializer

    @extend_schema(parameters=_WORKLIST_PARAMETERS, responses=WorklistCaseOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = WorklistFilters.from_query(request.query_params)
        ids = self.paginate_queryset(case_worklist_ids(user=request.user, filters=filters))
        cases = case_worklist_rows(user=request.user, ids=list(ids))
        prefetch_related_objects(cases, "addenda__author")
        audit_list_read(request, "case", [case.pk for case in cases], what="worklist api")
        data = WorklistCaseOutputSerializer(cases, many=True, context={"request": request}).data
        return self.get_paginated_response(data)
