from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from clinic_platform.admin_scoping import ClinicScopedAdmin

from .models import DicomNode, OutboxItem
from .services import _service_user


@admin.register(DicomNode)
class DicomNodeAdmin(ClinicScopedAdmin):
    list_display = ("ae_title", "host", "port", "send_results", "is_active", "clinic")
    list_filter = (("clinic", admin.RelatedOnlyFieldListFilter), "is_active", "send_results")
    search_fields = ("ae_title", "host")
    readonly_fields = ("created_by", "created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            clinic_id = obj.clinic_id if request.user.is_superuser else request.user.clinic_id
            obj.service_user = _service_user(clinic_id, obj.ae_title)
        super().save_model(request, obj, form, change)  # audited by ClinicScopedAdmin


@admin.register(OutboxItem)
class OutboxItemAdmin(ClinicScopedAdmin):
    """Read-only: the outbox is moved forward by the sender only."""

    list_display = ("study", "kind", "verified", "node", "state", "attempts", "next_attempt_at", "sent_at")
    list_filter = ("state", "kind")
    readonly_fields = [f.name for f in OutboxItem._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
