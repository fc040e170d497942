"""Writing the audit trail: `audit_record` is the one way in.

    from apps.audit.services import audit_record
    from apps.audit.models import AuditAction

    audit_record(actor=request.user, action=AuditAction.DOWNLOAD, obj=scan, request=request, detail="dicom")

- `obj`: a model instance (its type and id are recorded, and its clinic when it has one), or
  pass `object_type`/`object_id` for something that is not a row.
- `request`: where the client address comes from (clinic_platform.client_ip); when omitted,
  the request being served (AuditRequestMiddleware), or none (Celery tasks).
- The clinic is the object's, else the actor's.
- Written inside the caller's transaction: an action that rolls back leaves no event.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.http import HttpRequest

from apps.accounts.clinics import clinic_id_of
from clinic_platform.client_ip import client_ip

from .models import AuditAction, AuditEvent, AuditOutcome
from .request import current_request

# Model label → the object type written in events (and accepted by the API's filter).
_OBJECT_TYPES = {
    "patients.patient": "patient",
    "cases.case": "case",
    "scans.scan": "scan",
    "scans.prediction": "prediction",
    "scans.scanreview": "review",
    "accounts.user": "user",
    "accounts.clinic": "clinic",
    "dicomnet.dicomnode": "dicom_node",
}


def object_type_of(obj: models.Model) -> str:
    return object_type_of_label(obj._meta.label_lower)


def object_type_of_label(label: str) -> str:
    """"cases.case" → "case"; a model without a short name keeps its label."""
    return _OBJECT_TYPES.get(label, label)


def audit_record(
    *,
    actor: Any,
    action: AuditAction | str,
    obj: models.Model | None = None,
    request: HttpRequest | None = None,
    outcome: AuditOutcome | str = AuditOutcome.SUCCESS,
    object_type: str = "",
    object_id: str | int = "",
    detail: str = "",
    actor_username: str = "",
    clinic_id: int | None = None,
) -> AuditEvent:
    """Append one event. `actor` is a User, or None/AnonymousUser for an anonymous client."""
    if action not in AuditAction.values:
        raise ValueError(f"unknown audit action {action!r}")
    user = actor if getattr(actor, "is_authenticated", False) else None
    request = request if request is not None else current_request()
    if obj is not None:
        object_type = object_type or object_type_of(obj)
        object_id = object_id or obj.pk
    if clinic_id is None:
        clinic_id = clinic_id_of(obj)
    if clinic_id is None and user is not None:
        clinic_id = user.clinic_id
    if request is not None and outcome == AuditOutcome.FAILURE:
        # The refusal is recorded: the middleware writes no second "denied" event for it.
        getattr(request, "_request", request).audit_failure_recorded = True
    return AuditEvent.objects.create(
        actor=user,
        actor_username=(user.get_username() if user is not None else actor_username)[:150],
        clinic_id=clinic_id,
        action=action,
        object_type=object_type[:40],
        object_id=str(object_id)[:64],
        ip=client_ip(request) if request is not None else None,
        outcome=outcome,
        detail=detail[:255],
    )
