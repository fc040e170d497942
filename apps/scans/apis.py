"""REST endpoints for scans. Image, overlay and heatmap URLs point at the clinic-checking
views in apps/scans/views.py, never at MEDIA_URL."""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.cases.selectors import case_get

from .models import Scan
from .selectors import scan_get, scan_list_for_case
from .services import scan_review, scan_submit


class PredictionOutputSerializer(serializers.Serializer):
    label = serializers.CharField()
    probabilities = serializers.DictField(child=serializers.FloatField())
    model_version = serializers.CharField()
    timings_ms = serializers.DictField(child=serializers.FloatField())


class ReviewOutputSerializer(serializers.Serializer):
    agrees = serializers.BooleanField()
    note = serializers.CharField()
    reviewer = serializers.CharField(source="reviewer.username")
    reviewed_at = serializers.DateTimeField()


class ScanOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    case = serializers.IntegerField(source="case_id")
    status = serializers.CharField()
    error = serializers.CharField()
    original_filename = serializers.CharField()
    sha256 = serializers.CharField()
    format = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    attempts = serializers.IntegerField()
    queued_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    prediction = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    overlay_url = serializers.SerializerMethodField()
    heatmap_url = serializers.SerializerMethodField()

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def _prediction(self, scan: Scan):
        return getattr(scan, "prediction", None)

    @extend_schema_field(PredictionOutputSerializer(allow_null=True))
    def get_prediction(self, scan: Scan) -> dict | None:
        prediction = self._prediction(scan)
        return PredictionOutputSerializer(prediction).data if prediction else None

    @extend_schema_field(ReviewOutputSerializer(allow_null=True))
    def get_review(self, scan: Scan) -> dict | None:
        review = getattr(scan, "review", None)
        return ReviewOutputSerializer(review).data if review else None

    def get_image_url(self, scan: Scan) -> str:
        return self._absolute(scan.get_image_url())

    def get_overlay_url(self, scan: Scan) -> str | None:
        return self._absolute(scan.get_overlay_url()) if self._prediction(scan) else None

    def get_heatmap_url(self, scan: Scan) -> str | None:
        return self._absolute(scan.get_heatmap_url()) if self._prediction(scan) else None


class CaseScansApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class ScanUploadInputSerializer(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True)  # the service explains an empty file

    @extend_schema(responses=ScanOutputSerializer(many=True))
    def get(self, request: Request, case_id: int) -> Response:
        case = case_get(user=request.user, case_id=case_id)
        scans = scan_list_for_case(case=case)
        audit_record(actor=request.user, action=AuditAction.VIEW, obj=case, request=request, detail="scans")
        return Response(ScanOutputSerializer(scans, many=True, context={"request": request}).data)

    @extend_schema(request=ScanUploadInputSerializer, responses={201: ScanOutputSerializer})
    def post(self, request: Request, case_id: int) -> Response:
        case = case_get(user=request.user, case_id=case_id)
        data = self.ScanUploadInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        scan = scan_submit(case=case, uploaded_by=request.user, upload=data.validated_data["file"])
        return Response(ScanOutputSerializer(scan, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ScanDetailApi(APIView):
    @extend_schema(responses=ScanOutputSerializer)
    def get(self, request: Request, scan_id: int) -> Response:
        scan = scan_get(user=request.user, scan_id=scan_id)
        audit_record(actor=request.user, action=AuditAction.VIEW, obj=scan, request=request)
        return Response(ScanOutputSerializer(scan, context={"request": request}).data)


class ScanReviewApi(APIView):
    class ScanReviewInputSerializer(serializers.Serializer):
        agrees = serializers.BooleanField()
        note = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(request=ScanReviewInputSerializer, responses={200: ReviewOutputSerializer})
    def post(self, request: Request, scan_id: int) -> Response:
        scan = scan_get(user=request.user, scan_id=scan_id)
        data = self.ScanReviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review = scan_review(scan=scan, reviewer=request.user, **data.validated_data)
        return Response(ReviewOutputSerializer(review).data)
