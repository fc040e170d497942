"""Django admin scoped to a clinic: a superuser sees every clinic, a clinic admin only theirs."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest


def is_clinic_admin(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff and getattr(user, "is_clinic_admin", False) and user.clinic_id)


class ClinicScopedAdmin(admin.ModelAdmin):
    """`clinic_path` is the lookup from the model to its clinic id (e.g. "case__clinic_id")."""

    clinic_path = "clinic_id"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{self.clinic_path: request.user.clinic_id})

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
        return super().has_delete_permission(request, obj) or is_clinic_admin(request)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        # A clinic admin can only pick rows of their own clinic.
        if not request.user.is_superuser:
            model = db_field.related_model
            if model._meta.label == "accounts.Clinic":
                kwargs["queryset"] = model.objects.filter(pk=request.user.clinic_id)
            elif any(f.name == "clinic" for f in model._meta.fields):
                kwargs["queryset"] = model.objects.filter(clinic_id=request.user.clinic_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
