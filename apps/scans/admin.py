from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from clinic_platform.admin_scoping import ClinicScopedAdmin, is_clinic_admin

from .models import Prediction, Scan, ScanReview


class PredictionInline(admin.StackedInline):
    model = Prediction
    readonly_fields = ("label", "probabilities", "model_version", "heatmap", "overlay", "timings_ms", "created_at")
    can_delete = False
    extra = 0


class ScanReviewInline(admin.StackedInline):
    """Shown, never edited: a review is a radiologist's act (scan_review checks the role and
    the clinic), and an editable reviewer field would list every clinic's users. All of a scan's
    reviews are listed, oldest first; the last one counts."""

    model = ScanReview
    fields = readonly_fields = ("reviewer", "agrees", "label", "note", "reviewed_at", "addendum")
    can_delete = False
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The scan page itself is clinic-scoped (ScanAdmin), so its viewers may see the review.
        return super().has_view_permission(request, obj) or is_clinic_admin(request)


@admin.register(Scan)
class ScanAdmin(ClinicScopedAdmin):
    list_display = ("id", "case", "original_filename", "status", "attempts", "queued_at", "finished_at")
    list_filter = ("status", ("case__clinic", admin.RelatedOnlyFieldListFilter))  # clinic: superusers only
    search_fields = ("original_filename", "sha256", "case__patient__name", "case__patient__mrn")
    list_select_related = ("case", "case__patient")
    readonly_fields = (
        "case",
        "uploaded_by",
        "image",
        "original_filename",
        "sha256",
        "size_bytes",
        "width",
        "height",
        "format",
        "queued_at",
        "enqueued_at",
        "started_at",
        "finished_at",
        "attempts",
        # Owned by the worker's state machine (apps/scans/services/transitions.py), never set by hand.
        "status",
        "error",
        "claimed_by",
        # A person's release of a held scan goes through apps/scans/holds.py (audited), not here.
        "burnt_text_released",
        # DICOM scans: what the upload read from the file (apps/scans/ingest.py).
        "dicom",
        "series_uid",
        "slice_order",
        "instance_number",
        "source_patient_id",
    )
    inlines = [PredictionInline, ScanReviewInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        # A deleted case's scans are gone with it for the clinic (superusers still see them).
        return queryset if request.user.is_superuser else queryset.filter(case__deleted_at__isnull=True)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # uploads go through scans_upload
