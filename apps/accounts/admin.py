from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from clinic_platform.admin_scoping import ClinicScopedAdmin

from .models import Clinic, User


@admin.register(Clinic)
class ClinicAdmin(ClinicScopedAdmin):
    clinic_path = "pk"
    list_display = ("name", "created_at")
    search_fields = ("name",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(User)
class UserAdmin(ClinicScopedAdmin, BaseUserAdmin):
    list_display = ("username", "first_name", "last_name", "clinic", "role", "is_active", "is_staff")
    list_filter = ("role", "clinic", "is_active", "is_staff")
    fieldsets = (*BaseUserAdmin.fieldsets, ("Clinic", {"fields": ("clinic", "role")}))
    add_fieldsets = (*BaseUserAdmin.add_fieldsets, ("Clinic", {"fields": ("clinic", "role")}))

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # A clinic admin must not see, edit or reset the password of a superuser, even one
        # attached to their clinic: that would hand them every clinic.
        queryset = super().get_queryset(request)
        if not request.user.is_superuser:
            queryset = queryset.filter(is_superuser=False)
        return queryset

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Only a superuser hands out superuser status, Django permissions or another clinic.
        readonly = tuple(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += ("is_superuser", "groups", "user_permissions")
        return readonly
