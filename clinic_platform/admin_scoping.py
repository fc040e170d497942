"""Django admin scoped to a clinic: a superuser sees every clinic, a clinic admin only theirs.

Every lookup a clinic admin can make goes through a clinic-scoped queryset:
- changelists, change/delete/history pages: `get_queryset` (another clinic's id redirects
  to the admin index like a missing object);
- foreign-key choices and the labels of selected values: `formfield_for_foreignkey`;
- search-as-you-type pickers: `autocomplete_fields` (the picked model's admin queryset, scoped
  here too). Raw-id widgets are not used: their label lookup and popup are not scoped;
- list filters: no clinic filter for clinic admins, and related filters list only values
  present in their own rows (`RelatedOnlyFieldListFilter`);
- the clinic of a new row is the admin's own (read-only field).
Destructive actions (delete views, "delete selected") are for superusers only; every admin
change is written to the audit trail.
"""

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from apps.accounts.clinics import owned_by


def is_clinic_admin(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff and getattr(user, "is_clinic_admin", False) and user.clinic_id)


def _has_field(model: type[Model], name: str) -> bool:
    return any(f.name == name for f in model._meta.get_fields())


def scoped_queryset(model: type[Model], request: HttpRequest, queryset: QuerySet | None = None) -> QuerySet:
    """`model`'s rows a non-superuser's clinic owns (every row for a superuser); none of a
    model no clinic owns (apps/accounts/clinics.py CLINIC_PATHS has the path to each clinic)."""
    queryset = model._default_manager.all() if queryset is None else queryset
    user = request.user
    if user.is_superuser:
        return queryset
    if model._meta.label == "accounts.User":
        queryset = queryset.filter(is_superuser=False)
    return owned_by(queryset, user.clinic_id)


class ClinicScopedAdmin(admin.ModelAdmin):
    """The model's path to its clinic is apps/accounts/clinics.py's CLINIC_PATHS."""

    audit_reads = True  # the audit trail's own admin says False: reading it is not a read of patient data

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return owned_by(queryset, request.user.clinic_id)

    # Clinic admins manage their own clinic without per-model permission rows.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or is_clinic_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or is_clinic_admin(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) or is_clinic_admin(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) or is_clinic_admin(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Destructive: superusers only (a clinic admin deactivates users, soft-deletes cases).
        return request.user.is_active and request.user.is_superuser

    def get_list_filter(self, request: HttpRequest) -> tuple:
        filters = tuple(super().get_list_filter(request))
        if request.user.is_superuser:
            return filters
        # A clinic admin has one clinic: a clinic filter would only name other clinics.
        return tuple(f for f in filters if "clinic" not in (f[0] if isinstance(f, tuple) else str(f)))

    def _owns_clinic_field(self) -> bool:
        return _has_field(self.model, "clinic") and self.model._meta.label != "accounts.Clinic"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser and self._owns_clinic_field():
            readonly += ("clinic",)  # set to the admin's own clinic on save
        return readonly

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not request.user.is_superuser and self._owns_clinic_field():
            obj.clinic_id = request.user.clinic_id
        if not change and _has_field(self.model, "created_by") and getattr(obj, "created_by_id", None) is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        # A clinic admin can only pick, and only sees the label of, rows of their own clinic.
        kwargs["queryset"] = scoped_queryset(db_field.related_model, request, kwargs.get("queryset"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if not request.user.is_superuser:
            kwargs["queryset"] = scoped_queryset(db_field.related_model, request, kwargs.get("queryset"))
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None and not getattr(request, "audit_failure_recorded", False):
            # Another clinic's id (or a missing one) is redirected to the index like Django's
            # admin does, not answered 404: record the refusal here.
            from apps.audit.models import AuditAction, AuditOutcome
            from apps.audit.services import audit_record, object_type_of_label

            audit_record(
                actor=request.user, action=AuditAction.DENIED, request=request, outcome=AuditOutcome.FAILURE,
                object_type=object_type_of_label(self.model._meta.label_lower), object_id=str(object_id)[:64],
                detail="admin: no such object in this clinic",
            )  # fmt: skip
        return obj

    # Reads are audited like the pages': a change page is one read of its object, a changelist
    # page one read naming the ids it listed.
    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        response = super().change_view(request, object_id, form_url, extra_context)
        original = (getattr(response, "context_data", None) or {}).get("original")
        if self.audit_reads and request.method == "GET" and response.status_code == 200 and original is not None:
            from apps.audit.reads import audit_read

            audit_read(request, original, detail="admin")
        return response

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        response = super().changelist_view(request, extra_context)
        changelist = (getattr(response, "context_data", None) or {}).get("cl")
        if self.audit_reads and request.method == "GET" and response.status_code == 200 and changelist is not None:
            from apps.audit.reads import audit_list_read
            from apps.audit.services import object_type_of_label

            audit_list_read(
                request, object_type_of_label(self.model._meta.label_lower),
                [row.pk for row in changelist.result_list], what="admin list",
            )  # fmt: skip
        return response

    # The audit trail records every admin change (Django's own LogEntry only covers the admin).
    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        self._audit(request, obj, "added")
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        self._audit(request, obj, "changed")
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: QuerySet) -> Any:
        for obj in queryset:
            self._audit(request, obj, "deleted")
        return super().log_deletions(request, queryset)

    def _audit(self, request: HttpRequest, obj: Any, what: str) -> None:
        from apps.audit.models import AuditAction
        from apps.audit.services import audit_record

        audit_record(actor=request.user, action=AuditAction.ADMIN_CHANGE, obj=obj, request=request, detail=what)
