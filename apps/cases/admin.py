from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.scans.models import Scan
from clinic_platform.admin_scoping import ClinicScopedAdmin, is_clinic_admin

from .models import Case, CaseAddendum
from .services import case_restore, case_soft_delete


class ScanInline(admin.TabularInline):
    model = Scan
    fields = ("id", "original_filename", "status", "error", "queued_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # uploads go through scans_upload (validation, hashing, queueing)


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Current"), ("yes", "Deleted (kept until the retention purge)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


class CaseAddendumInline(admin.TabularInline):
    """Shown, never edited: addenda are kept as written (cases.services.case_addendum_add)."""

    model = CaseAddendum
    fields = readonly_fields = ("author", "text", "created_at")
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        # The case page itself is clinic-scoped (CaseAdmin), so its viewers may read the addenda.
        return super().has_view_permission(request, obj) or is_clinic_admin(request)


@admin.register(Case)
class CaseAdmin(ClinicScopedAdmin):
    list_display = ("id", "patient", "title", "clinic", "created_by", "created_at", "deleted_at")
    list_filter = (DeletedFilter, ("clinic", admin.RelatedOnlyFieldListFilter))
    search_fields = ("patient__name", "patient__mrn", "title")
    list_select_related = ("patient", "clinic", "created_by")
    # A scoped search-as-you-type picker: the raw-id widget looked any clinic's patient up.
    autocomplete_fields = ("patient",)
    # A signature is a radiologist's act through case_sign, never typed into the admin.
    readonly_fields = ("created_by", "created_at", "deleted_at", "deleted_by", "signed_by", "signed_at", "conclusion")
    inlines = [ScanInline, CaseAddendumInline]
    actions = ["soft_delete", "restore"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A signed case is shown read-only (a POST is a 403): corrections are addenda by a
        # radiologist on the case page, never edits (Case.save refuses them too).
        if obj is not None and obj.is_signed:
            return False
        return super().has_change_permission(request, obj)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        obj = self.get_object(request, object_id)
        if obj is not None and obj.is_signed and request.method == "GET":
            self.message_user(
                request, f"Signed by {obj.signed_by} on {obj.signed_at:%Y-%m-%d %H:%M}: this case is locked. "
                "Corrections go through an addendum by a radiologist on the case page.", messages.WARNING,
            )  # fmt: skip
        return super().change_view(request, object_id, form_url, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Deleted cases too (the "deleted" filter), so they can be restored before the purge.
        queryset = Case.all_objects.select_related(*self.list_select_related)
        if request.user.is_superuser:
            return queryset
        return queryset.for_clinic(request.user.clinic_id)

    @admin.action(description="Delete the selected cases (restorable until the retention purge)")
    def soft_delete(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, case_soft_delete, "deleted")

    @admin.action(description="Restore the selected deleted cases")
    def restore(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, case_restore, "restored")

    def _each(self, request: HttpRequest, queryset: QuerySet, service: Any, verb: str) -> None:
        done = 0
        for case in queryset:
            try:
                service(case=case, by=request.user)
                done += 1
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
        if done:
            self.message_user(request, f"{done} case(s) {verb}.", messages.SUCCESS)

    # A superuser's delete view or "delete selected" soft-deletes too: the files go only when
    # the retention purge runs.
    def delete_model(self, request: HttpRequest, obj: Case) -> None:
        self._each(request, [obj], case_soft_delete, "deleted")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, case_soft_delete, "deleted")
