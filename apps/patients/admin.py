from django.contrib import admin

from clinic_platform.admin_scoping import ClinicScopedAdmin

from .models import Patient


@admin.register(Patient)
class PatientAdmin(ClinicScopedAdmin):
    list_display = ("name", "mrn", "clinic", "date_of_birth", "sex", "created_at")
    list_filter = (("clinic", admin.RelatedOnlyFieldListFilter), "sex")  # clinic: superusers only
    search_fields = ("name", "mrn")  # also what the case form's patient picker searches
    list_select_related = ("clinic",)
    readonly_fields = ("created_by", "created_at")
