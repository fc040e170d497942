"""Audit events that come from Django's and django-axes' own signals, for what no service of
ours does: sign-in, sign-out, failed sign-in, lockout. Every business event (upload, review,
sign-off, addendum, deletion, ...) is written by the service that does it, calling
`audit_record` once: no event comes two ways."""

import datetime
from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.utils import timezone

from clinic_platform.client_ip import client_ip

from .models import AuditAction, AuditEvent, AuditOutcome
from .services import audit_record


def _http_request(request: Any) -> Any:
    return getattr(request, "_request", request)  # a DRF Request wraps Django's


def _clinic_of_username(username: str) -> int | None:
    if not username:
        return None
    return get_user_model().objects.filter(username=username).values_list("clinic_id", flat=True).first()


# A double-submitted sign-in form signs in twice within a moment: one sign-in, one event.
SAME_SIGN_IN = datetime.timedelta(seconds=10)


@receiver(user_logged_in, dispatch_uid="audit.login")
def _login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    ip = client_ip(_http_request(request)) if request is not None else None
    last = (
        AuditEvent.objects.filter(actor=user, action__in=[AuditAction.LOGIN, AuditAction.LOGOUT])
        .order_by("-id")
        .values_list("action", "ip", "at")
        .first()
    )
    # The same sign-in sent twice: the last event is a sign-in from this address moments ago
    # (a sign-out in between makes the next sign-in a new one).
    repeated = (
        last is not None and last[0] == AuditAction.LOGIN and last[1] == ip and last[2] >= timezone.now() - SAME_SIGN_IN
    )
    if not repeated:
        audit_record(actor=user, action=AuditAction.LOGIN, request=request, object_type="user", object_id=user.pk)


@receiver(user_logged_out, dispatch_uid="audit.logout")
def _logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None and user.is_authenticated:
        audit_record(actor=user, action=AuditAction.LOGOUT, request=request, object_type="user", object_id=user.pk)


@receiver(user_login_failed, dispatch_uid="audit.login_failed")
def _login_failed(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    from apps.accounts.signin_guard import BACKOFF_DETAIL

    username = str(credentials.get("username") or "")[:150]
    http_request = _http_request(request) if request is not None else None
    audit_record(
        actor=None,
        actor_username=username,
        action=AuditAction.LOGIN_FAILED,
        request=http_request,
        outcome=AuditOutcome.FAILURE,
        clinic_id=_clinic_of_username(username),
        # Refused without checking the password: not counted again by the back-off.
        detail=BACKOFF_DETAIL if getattr(http_request, "signin_backoff", False) else "",
    )


@receiver(user_locked_out, dispatch_uid="audit.lockout")
def _locked_out(sender: Any, request: Any, username: str | None, ip_address: str | None, **kwargs: Any) -> None:
    username = (username or "")[:150]
    audit_record(
        actor=None,
        actor_username=username,
        action=AuditAction.LOCKOUT,
        request=_http_request(request) if request is not None else None,
        outcome=AuditOutcome.FAILURE,
        clinic_id=_clinic_of_username(username),
    )
