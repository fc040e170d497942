"""The audit trail in the admin: read-only for everyone (superusers included), scoped to the
clinic for clinic admins, filterable, and exported as CSV (an action on the selected or, with
"select all", every filtered event)."""

import csv
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from clinic_platform.admin_scoping import ClinicScopedAdmin

from .models import AuditAction, AuditEvent
from .services import audit_record

CSV_COLUMNS = ("at", "actor_username", "action", "object_type", "object_id", "ip", "outcome", "detail")


@admin.register(AuditEvent)
class AuditEventAdmin(ClinicScopedAdmin):
    audit_reads = False
    list_display = CSV_COLUMNS
    list_filter = ("action", "outcome", "object_type", "at", ("clinic", admin.RelatedOnlyFieldListFilter))
    search_fields = ("actor_username", "object_id", "ip")
    date_hierarchy = "at"
    fields = readonly_fields = ("at", "actor", "actor_username", "clinic", *CSV_COLUMNS[2:])
    list_select_related = ("actor",)
    actions = ["export_csv"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Export the selected events as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-events.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        rows = queryset.order_by("at", "id").values_list(*CSV_COLUMNS)
        count = 0
        for row in rows.iterator():
            # A leading = + - @ would be a formula in a spreadsheet (usernames are typed by anyone).
            writer.writerow(["'" + v if isinstance(v, str) and v[:1] in "=+-@" else v for v in row])
            count += 1
        audit_record(actor=request.user, action=AuditAction.EXPORT, request=request, object_type="audit",
                     detail=f"{count} events as CSV")
        return response
