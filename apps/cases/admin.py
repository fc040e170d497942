from django.contrib import admin

from apps.scans.models import Scan
from clinic_platform.admin_scoping import ClinicScopedAdmin

from .models import Case


class ScanInline(admin.TabularInline):
    model = Scan
    fields = ("id", "original_filename", "status", "error", "queued_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # uploads go through scan_submit (validation, hashing, queueing)


@admin.register(Case)
class CaseAdmin(ClinicScopedAdmin):
    list_display = ("id", "patient", "title", "clinic", "created_by", "created_at")
    list_filter = ("clinic",)
    search_fields = ("patient__name", "patient__mrn", "title")
    list_select_related = ("patient", "clinic", "created_by")
    raw_id_fields = ("patient",)
    inlines = [ScanInline]
