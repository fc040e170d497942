from django.contrib import admin

from clinic_platform.admin_scoping import ClinicScopedAdmin

from .models import Prediction, Scan, ScanReview


class PredictionInline(admin.StackedInline):
    model = Prediction
    readonly_fields = ("label", "probabilities", "model_version", "heatmap", "overlay", "timings_ms", "created_at")
    can_delete = False
    extra = 0


class ScanReviewInline(admin.StackedInline):
    model = ScanReview
    extra = 0


@admin.register(Scan)
class ScanAdmin(ClinicScopedAdmin):
    clinic_path = "case__clinic_id"
    list_display = ("id", "case", "original_filename", "status", "attempts", "queued_at", "finished_at")
    list_filter = ("status", "case__clinic")
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
    )
    inlines = [PredictionInline, ScanReviewInline]

    def has_add_permission(self, request) -> bool:
        return False  # uploads go through scan_submit
