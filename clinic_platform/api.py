"""What every API view shares: the clinic-member permission and reading an input serializer
(errors: clinic_platform/errors.py)."""

from typing import TYPE_CHECKING, Any

from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from .client_ip import client_ip

if TYPE_CHECKING:  # rest_framework.views imports this module through DEFAULT_PERMISSION_CLASSES
    from rest_framework.serializers import Serializer
    from rest_framework.views import APIView


def validated_input(serializer_class: "type[Serializer]", request: Request, **kwargs: Any) -> dict[str, Any]:
    """The request body through an input serializer (kwargs: partial=True…); invalid: a 400."""
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class IsClinicMember(permissions.BasePermission):
    """Signed in and a member of a clinic: every API resource belongs to a clinic."""

    message = "Your account is not a member of a clinic."

    def has_permission(self, request: Request, view: "APIView") -> bool:
        user = request.user
        return bool(user and user.is_authenticated and getattr(user, "clinic_id", None))


class IsClinicAdmin(IsClinicMember):
    """A clinic admin of a clinic (the audit trail)."""

    message = "Only clinic admins can read the audit trail."

    def has_permission(self, request: Request, view: "APIView") -> bool:
        return super().has_permission(request, view) and bool(getattr(request.user, "is_clinic_admin", False))


class ClientScopedRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle counting per client address by the project's one rule
    (clinic_platform/client_ip.py: X-Forwarded-For only behind TRUSTED_PROXY_COUNT proxies)."""

    def get_ident(self, request: Request) -> str:
        return client_ip(request) or ""

    def allow_request(self, request: Request, view: "APIView") -> bool:
        # The cache down must not stop sign-in: the throttle steps aside (logged and counted);
        # the lockout still holds, counted in the database (apps/accounts/signin_guard.py).
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            from apps.accounts.signin_guard import cache_fallback, is_cache_outage

            if not is_cache_outage(exc):
                raise
            cache_fallback("throttle", exc)
            return True
