from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from knox.models import AuthToken

from clinic_platform.admin_scoping import ClinicScopedAdmin, is_clinic_admin

from .models import Clinic, User
from .services import staff_status, user_deactivate


@admin.register(Clinic)
class ClinicAdmin(ClinicScopedAdmin):
    list_display = ("name", "time_zone", "created_at")
    search_fields = ("name",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser


@admin.register(User)
class UserAdmin(ClinicScopedAdmin, BaseUserAdmin):
    list_display = ("username", "first_name", "last_name", "clinic", "role", "is_active", "is_staff")
    list_filter = ("role", ("clinic", admin.RelatedOnlyFieldListFilter), "is_active", "is_staff")
    fieldsets = (*BaseUserAdmin.fieldsets, ("Clinic", {"fields": ("clinic", "role")}))
    add_fieldsets = (*BaseUserAdmin.add_fieldsets, ("Clinic", {"fields": ("clinic", "role")}))
    actions = ["deactivate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # A clinic admin must not see, edit or reset the password of a superuser, even one
        # attached to their clinic: that would hand them every clinic.
        queryset = super().get_queryset(request)
        if not request.user.is_superuser:
            queryset = queryset.filter(is_superuser=False)
        return queryset

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Only a superuser hands out superuser status, Django permissions or another clinic.
        # Sign-in and joining dates are recorded by the system, never typed (for no one); staff
        # status follows the role.
        readonly = (*super().get_readonly_fields(request, obj), "last_login", "date_joined", "is_staff")
        if not request.user.is_superuser:
            readonly += ("is_superuser", "groups", "user_permissions")
        return readonly

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Users are deactivated, never deleted: cases, scans, reviews and the audit trail name them.
        return False

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        # "Clinic admin" is what opens the admin: the role sets the staff flag (as user_create
        # does), so nobody has to tick "Staff status" by hand, and a demoted admin loses it.
        obj.is_staff = staff_status(role=obj.role, is_superuser=obj.is_superuser)
        super().save_model(request, obj, form, change)

    @admin.action(description="Deactivate the selected users (sign-in and API tokens end)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for user in queryset.exclude(pk=request.user.pk):
            user_deactivate(user=user, by=request.user)
            count += 1
        self.message_user(request, f"{count} user(s) deactivated.", messages.SUCCESS)


# API tokens: listed for the clinic (only a digest is stored), revocable, never created here.
# knox's own admin (registered when "knox" is installed, before this app) picks users with an
# unscoped raw-id widget.
if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class AuthTokenAdmin(ClinicScopedAdmin):
    list_display = ("token_key", "user", "created", "expiry")
    list_select_related = ("user",)
    fields = readonly_fields = ("token_key", "user", "created", "expiry")
    search_fields = ("token_key", "user__username")
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user__is_superuser=False)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke the selected API tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not (request.user.is_superuser or is_clinic_admin(request)):
            return
        count, _ = queryset.delete()
        self.message_user(request, f"{count} token(s) revoked.", messages.SUCCESS)

    revoke.allowed_permissions = ("view",)
