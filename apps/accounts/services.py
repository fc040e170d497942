"""Writes for clinics and users, and API tokens."""

import datetime

from axes.helpers import get_cool_off
from django.db import transaction
from django.http import HttpRequest
from knox.models import AuthToken

from .models import Clinic, Role, User


def clinic_create(*, name: str, time_zone: str = "UTC") -> Clinic:
    clinic = Clinic(name=name, time_zone=time_zone)
    clinic.full_clean()
    clinic.save()
    return clinic


def staff_status(*, role: str, is_superuser: bool = False) -> bool:
    """Whether a user gets into the Django admin: clinic admins and superusers."""
    return is_superuser or role == Role.CLINIC_ADMIN


@transaction.atomic
def user_create(
    *,
    clinic: Clinic | None,
    username: str,
    password: str | None,
    role: str = Role.CLINIC_STAFF,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    """Create a user in a clinic. A clinic admin gets Django admin access (is_staff)."""
    user = User(
        clinic=clinic,
        username=username,
        role=role,
        email=email,
        first_name=first_name,
        last_name=last_name,
        is_staff=is_staff or role == Role.CLINIC_ADMIN,
        is_superuser=is_superuser,
    )
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


@transaction.atomic
def user_deactivate(*, user: User, by: User | None = None) -> User:
    """Users are deactivated, never deleted: the rows naming who created, uploaded or reviewed
    keep pointing at them (PROTECT). Signing in stops, and their API tokens are revoked (the
    is_active change does it, apps/accounts/signals.py); the event is audited."""
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record

    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
        audit_record(actor=by, action=AuditAction.DEACTIVATE, obj=user)
    return user


def tokens_revoke(*, user: User) -> int:
    """Delete every API token of a user; returns how many."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


def token_create(*, user: User, request: HttpRequest | None = None) -> tuple[str, datetime.datetime | None]:
    """A new API token for `user` (only its digest is stored), audited. Returns (token, expiry)."""
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record

    instance, token = AuthToken.objects.create(user=user)
    audit_record(actor=user, action=AuditAction.TOKEN_CREATE, request=request, object_type="token",
                 object_id=instance.token_key)
    return token, instance.expiry


def login_is_locked_out(*, request: HttpRequest) -> bool:
    """django-axes refused (or just locked) the sign-in attempt made with `request`."""
    return bool(getattr(request, "axes_locked_out", False))


def login_retry_after_seconds(*, request: HttpRequest | None = None) -> int | None:
    """How long a lockout lasts (AXES_COOLOFF_TIME; each refused try starts it again), or
    what is left of an address's back-off (apps/accounts/signin_guard.py)."""
    if request is not None and getattr(request, "signin_retry_after", None):
        return int(request.signin_retry_after)
    cool_off = get_cool_off(request)
    return int(cool_off.total_seconds()) if cool_off else None
