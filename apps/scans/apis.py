"""REST endpoints for scans. Image, overlay and heatmap URLs point at the clinic-checking
views in apps/scans/views.py, never at MEDIA_URL."""

import itertools

from django.http import FileResponse, Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.models import AuditAction
from apps.audit.reads import audit_read, covered_by_page_view
from apps.audit.services import audit_record
from apps.cases.selectors import case_get, case_of_clinic
from clinic_platform.api import validated_input
from clinic_platform.errors import error_body
from clinic_platform.renderers import CsvRenderer

from .agreement import agreement_by_version, agreement_readings_csv
from .holds import scan_hold_discard, scan_hold_release
from .labels import MODEL_LABEL_CHOICES, MODEL_LABELS, READING_CHOICES, READING_LABELS
from .models import Scan, ScanReview
from .selectors import scan_get, scan_list_for_case, scan_review_history
from .services import scan_class_heatmap, scan_review, scans_upload
from .studies import study_progress, study_progress_for_case


class PredictionOutputSerializer(serializers.Serializer):
    label = serializers.ChoiceField(choices=MODEL_LABEL_CHOICES)
    label_name = serializers.CharField()
    probabilities = serializers.DictField(child=serializers.FloatField())
    model_version = serializers.CharField()
    timings_ms = serializers.DictField(child=serializers.FloatField())
    validated = serializers.BooleanField(
        allow_null=True,
        help_text=(
            "is the scan's sequence one the model is validated on (the model card's list)? false: a result the "
            "model was not validated for, never a confident one; null: cannot say (sequence unknown)"
        ),
    )


class ReviewOutputSerializer(serializers.Serializer):
    """One reading. `label` is the reading (blank only on old disagreements that gave none);
    `at` and `reviewed_at` are the same time (`reviewed_at` kept for existing clients)."""

    id = serializers.IntegerField()
    label = serializers.CharField()
    label_name = serializers.CharField()
    agrees = serializers.BooleanField()
    note = serializers.CharField()
    reviewer = serializers.CharField(source="reviewer.username")
    at = serializers.DateTimeField(source="reviewed_at")
    reviewed_at = serializers.DateTimeField()
    addendum = serializers.CharField(source="addendum.text", allow_null=True, default=None)


class ScanOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    case = serializers.IntegerField(source="case_id")
    status = serializers.CharField(
        help_text="queued, processing, done, failed, rejected (not a brain MRI slice), or held (text burnt "
        "into the image: waits for a clinic admin or radiologist to release or discard it, see `hold_reason`)"
    )
    error = serializers.CharField()
    held = serializers.BooleanField(source="is_held")
    hold_reason = serializers.SerializerMethodField()
    ood_score = serializers.FloatField(
        allow_null=True, help_text="how unlike the brain MRI slices the model was trained on (higher: less alike)"
    )
    ood_threshold = serializers.FloatField(
        allow_null=True, help_text="the gate's threshold that score was judged against: above it, the scan is rejected"
    )
    ood_gate = serializers.CharField(
        help_text="which fitted gate judged the score: the sha256 of its statistics (the model card's "
        "`ood.statistics_sha256`); empty for a model without a gate or a scan not analysed yet"
    )
    sequence = serializers.ChoiceField(
        choices=Scan._meta.get_field("sequence").choices, help_text="the MRI sequence the slice is believed to be"
    )
    sequence_source = serializers.ChoiceField(
        choices=Scan._meta.get_field("sequence_source").choices,
        help_text="how the sequence is known: dicom (its attributes), image, or unknown",
    )
    validated = serializers.SerializerMethodField()
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
    # False until a radiologist has read the scan in a signed case: the model's output is unverified.
    verified = serializers.BooleanField(source="is_verified")
    image_url = serializers.SerializerMethodField()
    overlay_url = serializers.SerializerMethodField()
    heatmap_url = serializers.SerializerMethodField()
    dicom_url = serializers.SerializerMethodField()
    series_uid = serializers.CharField()
    instance_number = serializers.IntegerField(allow_null=True)
    patient_id_mismatch = serializers.BooleanField()
    exam_date = serializers.DateField(allow_null=True, help_text="DICOM: the exam's date (StudyDate, else SeriesDate)")
    series_description = serializers.CharField(help_text="DICOM: kept when it does not name the patient")
    study_upload = serializers.IntegerField(
        source="study_upload_id", allow_null=True, help_text="the DICOM study upload it was unpacked from"
    )

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def _prediction(self, scan: Scan):
        return getattr(scan, "prediction", None)

    @extend_schema_field(PredictionOutputSerializer(allow_null=True))
    def get_prediction(self, scan: Scan) -> dict | None:
        prediction = self._prediction(scan)
        return PredictionOutputSerializer(prediction).data if prediction else None

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_validated(self, scan: Scan) -> bool | None:
        """The prediction's `validated` (null before a result)."""
        prediction = self._prediction(scan)
        return prediction.validated if prediction else None

    @extend_schema_field(ReviewOutputSerializer(allow_null=True))
    def get_review(self, scan: Scan) -> dict | None:
        review = getattr(scan, "review", None)
        return ReviewOutputSerializer(review).data if review else None

    def get_hold_reason(self, scan: Scan) -> str | None:
        return "text burnt into the image" if scan.is_held else None

    def get_image_url(self, scan: Scan) -> str:
        return self._absolute(scan.get_image_url())

    def get_overlay_url(self, scan: Scan) -> str | None:
        return self._absolute(scan.get_overlay_url()) if self._prediction(scan) else None

    def get_heatmap_url(self, scan: Scan) -> str | None:
        return self._absolute(scan.get_heatmap_url()) if self._prediction(scan) else None

    def get_dicom_url(self, scan: Scan) -> str | None:
        """The de-identified DICOM file of a DICOM scan (clinic-checked like every media URL)."""
        url = scan.get_dicom_url()
        return self._absolute(url) if url else None


class SkippedOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    reason = serializers.CharField()


class StudyProgressOutputSerializer(serializers.Serializer):
    """A DICOM study upload: unpacked by a worker, then its slices analysed."""

    id = serializers.IntegerField()
    status = serializers.CharField(
        help_text="received, unpacking, analysing, held (the rest wait for a person's decision), done, or failed"
    )
    slices_total = serializers.IntegerField(
        help_text="declared by the headers until unpacked, then the slices made (less removed ones)"
    )
    slices_done = serializers.IntegerField(help_text="slices analysed (done, failed or not a brain MRI)")
    slices_held = serializers.IntegerField(help_text="slices held for a person's decision (text burnt into the image)")
    progress = serializers.CharField(source="text", help_text='e.g. "83 of 200 slices analysed."')
    skipped = SkippedOutputSerializer(many=True)
    error = serializers.CharField()


class ScanBatchOutputSerializer(serializers.Serializer):
    scans = ScanOutputSerializer(many=True)
    skipped = SkippedOutputSerializer(many=True)
    studies = StudyProgressOutputSerializer(
        many=True, required=False, help_text="DICOM uploads: stored as they came, unpacked into scans by a worker"
    )


class CaseScansApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class ScanUploadInputSerializer(serializers.Serializer):
        # Repeatable: several JPEG/PNG/DICOM files, or .zip archives of DICOM studies.
        file = serializers.ListField(
            child=serializers.FileField(allow_empty_file=True),  # the service explains an empty file
            allow_empty=False,
        )

    @extend_schema(responses=ScanOutputSerializer(many=True))
    def get(self, request: Request, case_id: int) -> Response:
        case = case_get(user=request.user, case_id=case_id)
        scans = list(scan_list_for_case(case=case))
        audit_read(request, case, shown="scans", ids=[scan.pk for scan in scans])
        return Response(ScanOutputSerializer(scans, many=True, context={"request": request}).data)

    @extend_schema(
        request=ScanUploadInputSerializer,
        responses={
            201: PolymorphicProxySerializer(
                component_name="ScanUploadResult",
                serializers=[ScanOutputSerializer, ScanBatchOutputSerializer],
                resource_type_field_name=None,
            )
        },
        description="One JPEG/PNG scan created and nothing skipped: that scan. Otherwise (several files, "
        "DICOM files, a zipped study): `{scans: [...], skipped: [{name, reason}], studies: [...]}`. DICOM is "
        "checked from its headers only and answered at once: each upload's DICOM is one study in `studies`, "
        "which a worker unpacks into scans (follow its progress on `GET /api/cases/{id}/studies/`).",
    )
    def post(self, request: Request, case_id: int) -> Response:
        case = case_get(user=request.user, case_id=case_id)
        uploads = validated_input(self.ScanUploadInputSerializer, request)["file"]
        outcome = scans_upload(case=case, uploaded_by=request.user, uploads=uploads)
        context = {"request": request}
        if len(outcome.scans) == 1 and not outcome.skipped and not outcome.studies:
            body = ScanOutputSerializer(outcome.scans[0], context=context).data
        else:
            studies = [study_progress(study=study) for study in outcome.studies]
            body = ScanBatchOutputSerializer(
                {"scans": outcome.scans, "skipped": [vars(s) for s in outcome.skipped], "studies": studies},
                context=context,
            ).data
        return Response(body, status=status.HTTP_201_CREATED)


class ScanDetailApi(APIView):
    @extend_schema(responses=ScanOutputSerializer)
    def get(self, request: Request, scan_id: int) -> Response:
        scan = scan_get(user=request.user, scan_id=scan_id)
        audit_record(actor=request.user, action=AuditAction.VIEW, obj=scan, request=request)
        return Response(ScanOutputSerializer(scan, context={"request": request}).data)


class ScanReviewInputSerializer(serializers.Serializer):
    agrees = serializers.BooleanField()
    label = serializers.ChoiceField(choices=READING_CHOICES, required=False, allow_blank=True, default="")
    note = serializers.CharField(required=False, allow_blank=True, default="")
    addendum = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Required once the case is signed: why."
    )


class CaseStudiesApi(APIView):
    @extend_schema(
        responses=StudyProgressOutputSerializer(many=True),
        description="The case's DICOM studies and their progress, oldest first (what `GET cases/{id}/` "
        "carries as `studies`, without the case's scans): the cheap answer to poll while a study is analysed.",
    )
    def get(self, request: Request, case_id: int) -> Response:
        case = case_of_clinic(user=request.user, case_id=case_id)
        progress = study_progress_for_case(case=case)
        audit_read(request, case, shown="studies", ids=[line.id for line in progress])
        return Response(StudyProgressOutputSerializer(progress, many=True).data)


def _record_review(request: Request, scan_id: int, *, reading_required: bool = True) -> ScanReview:
    scan = scan_get(user=request.user, scan_id=scan_id)
    fields = validated_input(ScanReviewInputSerializer, request)
    return scan_review(scan=scan, reviewer=request.user, reading_required=reading_required, **fields)


class ScanReviewApi(APIView):
    """The first review endpoint, kept as it was for its clients: records a review like
    `POST scans/{id}/reviews/` but answers 200, and a disagreement may leave out the reading."""

    @extend_schema(request=ScanReviewInputSerializer, responses={200: ReviewOutputSerializer})
    def post(self, request: Request, scan_id: int) -> Response:
        return Response(ReviewOutputSerializer(_record_review(request, scan_id, reading_required=False)).data)


class ScanReviewsApi(APIView):
    """A scan's review history (oldest first; the last one counts) and a new review."""

    @extend_schema(responses=ReviewOutputSerializer(many=True))
    def get(self, request: Request, scan_id: int) -> Response:
        scan = scan_get(user=request.user, scan_id=scan_id)
        reviews = list(scan_review_history(scan=scan))
        audit_read(request, scan, shown="reviews", ids=[review.pk for review in reviews])
        return Response(ReviewOutputSerializer(reviews, many=True).data)

    @extend_schema(request=ScanReviewInputSerializer, responses={201: ReviewOutputSerializer})
    def post(self, request: Request, scan_id: int) -> Response:
        review = _record_review(request, scan_id)
        return Response(ReviewOutputSerializer(review).data, status=status.HTTP_201_CREATED)


class HoldDecisionInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["release", "discard"], help_text="release to analysis, or discard")


class ScanHoldApi(APIView):
    """A held scan (text burnt into the image): a clinic admin or radiologist releases it to
    analysis or discards it (audited). 400 when the scan is not held, 403 for clinic staff."""

    @extend_schema(request=HoldDecisionInputSerializer, responses={200: ScanOutputSerializer})
    def post(self, request: Request, scan_id: int) -> Response:
        scan = scan_get(user=request.user, scan_id=scan_id)
        release = validated_input(HoldDecisionInputSerializer, request)["decision"] == "release"
        decide = scan_hold_release if release else scan_hold_discard
        decide(scan=scan, by=request.user)
        scan = scan_get(user=request.user, scan_id=scan_id)
        return Response(ScanOutputSerializer(scan, context={"request": request}).data)


class TallyOutputSerializer(serializers.Serializer):
    reviewed = serializers.IntegerField()
    agreed = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)


class MonthAgreementOutputSerializer(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM, of the model's results")
    overall = TallyOutputSerializer()
    by_class = serializers.DictField(child=TallyOutputSerializer(), help_text="by the model's label")


class VersionAgreementOutputSerializer(serializers.Serializer):
    model_version = serializers.CharField()
    overall = TallyOutputSerializer()
    confusion = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="model label → reading → count (latest review of each scan)",
    )
    recall = serializers.DictField(
        child=serializers.FloatField(allow_null=True), help_text="per class, against the readings"
    )
    read_as = serializers.DictField(child=serializers.IntegerField())
    unlabelled = serializers.IntegerField()
    months = MonthAgreementOutputSerializer(many=True, source="month_list")


class AgreementOutputSerializer(serializers.Serializer):
    model_labels = serializers.ListField(child=serializers.CharField(), help_text="confusion rows, in order")
    reading_labels = serializers.ListField(child=serializers.CharField(), help_text="confusion columns, in order")
    label_names = serializers.DictField(child=serializers.CharField())
    versions = VersionAgreementOutputSerializer(many=True)


class AgreementApi(APIView):
    """Radiologists' readings against the model, per model version, class and month
    (radiologists and clinic admins; clinic staff 403)."""

    @extend_schema(
        parameters=[OpenApiParameter("model_version", str)],
        responses=AgreementOutputSerializer,
    )
    def get(self, request: Request) -> Response:
        version = request.query_params.get("model_version", "")
        versions = agreement_by_version(user=request.user, model_version=version)
        audit_record(
            actor=request.user, action=AuditAction.VIEW, object_type="agreement", request=request,
            detail=f"model {version or 'all'}",
        )  # fmt: skip
        return Response(
            AgreementOutputSerializer(
                {
                    "model_labels": [label.value for label in MODEL_LABELS],
                    "reading_labels": [label.value for label in READING_LABELS],
                    "label_names": {label.value: label.label for label in READING_LABELS},
                    "versions": versions,
                }
            ).data
        )


class AgreementReadingsCsvApi(APIView):
    """The corrected readings as labelled CSV for the next training run (file, model label,
    reading: stored label values)."""

    renderer_classes = [JSONRenderer, CsvRenderer]

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request) -> StreamingHttpResponse:
        lines = agreement_readings_csv(user=request.user)
        first = next(lines)  # checks the role now, before the 200 is sent
        response = StreamingHttpResponse(itertools.chain([first], lines), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="readings.csv"'
        add_never_cache_headers(response)
        return response


class PNGRenderer(BaseRenderer):
    """Lets a client ask for `Accept: image/png`; the PNG itself is a FileResponse."""

    media_type = "image/png"
    format = "png"
    charset = None
    render_style = "binary"

    def render(
        self, data: object, accepted_media_type: str | None = None, renderer_context: dict | None = None
    ) -> bytes:
        return data if isinstance(data, bytes) else b""


@method_decorator(never_cache, name="dispatch")  # a patient's heatmap stays out of every cache
class ScanHeatmapApi(APIView):
    """The heatmap of any class for an analysed scan, as an 8-bit gray PNG (0 = nothing, 255 =
    the map's peak; pages colour it in the browser). Computed by a worker on first request and
    kept: until then 202 with `Retry-After`."""

    renderer_classes = [JSONRenderer, PNGRenderer]

    @extend_schema(
        responses={
            (200, "image/png"): OpenApiTypes.BINARY,
            202: OpenApiResponse(description="being computed; ask again after Retry-After seconds"),
            400: OpenApiResponse(description="unknown class, or the scan is not analysed yet"),
            422: OpenApiResponse(description="the heatmap could not be computed (detail says why)"),
        }
    )
    def get(self, request: Request, scan_id: int, label: str) -> HttpResponse:
        scan = scan_get(user=request.user, scan_id=scan_id)
        state = scan_class_heatmap(scan=scan, label=label)
        # The one error shape (`error`: code, message, fields); `status`/`detail` kept for the
        # clients written before it (static/js/heatmap.js reads them).
        if state.status == "pending":
            message = "The heatmap is being computed."
            body = {**error_body("pending", message), "status": "pending", "detail": message}
            response = JsonResponse(body, status=202)
            response["Retry-After"] = "1"
            return response
        if state.status == "failed":
            body = {**error_body("heatmap_failed", state.error), "status": "failed", "detail": state.error}
            return JsonResponse(body, status=422)
        try:
            handle = state.file.open("rb")
        except (FileNotFoundError, ValueError):
            raise Http404("The heatmap file is missing.") from None
        if not covered_by_page_view(request.user, scan.case_id):  # the case page's class switch
            audit_record(
                actor=request.user, action=AuditAction.DOWNLOAD, obj=scan, request=request, detail=f"heatmap:{label}"
            )
        response = FileResponse(handle, content_type="image/png")
        response["X-Content-Type-Options"] = "nosniff"
        return response
