"""Which clinic owns a row, written once for every model: patient data never crosses clinics.

- `CLINIC_PATHS`: each clinic-owned model's lookup to its clinic id (a query path); the
  admin's scoping (clinic_platform/admin_scoping.py), the audit trail's clinic of an object,
  `ClinicQuerySet.for_clinic` and the checks below all read it.
- `ClinicQuerySet.for_clinic(clinic)`: the rows one clinic owns (`Case.objects.for_clinic(...)`).
- `same_clinic(user, obj)` / `require_same_clinic(user, obj)`: the one same-clinic check and its
  one exception, `OtherClinicError` (a PermissionDenied: 403 through DRF and Django). A service
  that deliberately makes another clinic's row look absent (case_create: "No such patient.";
  case_soft_delete / case_restore: "No such case.") asks `same_clinic` and raises its own
  ValidationError, and selectors answer Http404 (their queries use `for_clinic`).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import models

# Model label (lower case) → the lookup from the model to its clinic's id.
CLINIC_PATHS: dict[str, str] = {
    "accounts.clinic": "pk",
    "accounts.user": "clinic_id",
    "knox.authtoken": "user__clinic_id",
    "patients.patient": "clinic_id",
    "cases.case": "clinic_id",
    "cases.caseaddendum": "case__clinic_id",
    "scans.scan": "case__clinic_id",
    "scans.studyupload": "case__clinic_id",
    "scans.prediction": "scan__case__clinic_id",
    "scans.scanreview": "scan__case__clinic_id",
    "scans.classheatmap": "prediction__scan__case__clinic_id",
    "audit.auditevent": "clinic_id",
    "dicomnet.dicomnode": "clinic_id",
    "dicomnet.dicomstudy": "clinic_id",
    "dicomnet.dicominstance": "study__clinic_id",
    "dicomnet.outboxitem": "study__clinic_id",
}


class OtherClinicError(PermissionDenied):
    """The object belongs to another clinic than the user's (or the user has no clinic)."""


def clinic_path(model: type[models.Model]) -> str | None:
    """`model`'s lookup to its clinic id; None for a model no clinic owns."""
    return CLINIC_PATHS.get(model._meta.label_lower)


def clinic_id_of(obj: models.Model | None) -> int | None:
    """The id of the clinic that owns `obj` (None: no object, or nothing owns it)."""
    path = clinic_path(type(obj)) if obj is not None else None
    if path is None:
        return None
    value: Any = obj
    for part in path.split("__"):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def same_clinic(user: Any, obj: models.Model) -> bool:
    """Whether `user` belongs to a clinic and `obj` belongs to the same one."""
    return user.clinic_id is not None and clinic_id_of(obj) == user.clinic_id


def require_same_clinic(user: Any, obj: models.Model, *, what: str = "") -> None:
    """Raise OtherClinicError unless `obj` is in `user`'s clinic. `what` names the object in the
    message ("This case belongs to another clinic."), by default its model's name."""
    if not same_clinic(user, obj):
        raise OtherClinicError(f"This {what or obj._meta.verbose_name} belongs to another clinic.")


def owned_by(queryset: models.QuerySet, clinic: Any) -> models.QuerySet:
    """The rows of `queryset` that `clinic` (a Clinic or its id) owns; none for no clinic, or
    for a model no clinic owns. Any queryset (the admin's, a third-party model's)."""
    clinic_id = getattr(clinic, "pk", clinic)
    path = clinic_path(queryset.model)
    if clinic_id is None or path is None:
        return queryset.none()
    return queryset.filter(**{path: clinic_id})


class ClinicQuerySet(models.QuerySet):
    """A queryset of a clinic-owned model (its lookup is in CLINIC_PATHS)."""

    def for_clinic(self, clinic: Any) -> models.QuerySet:
        """The rows `clinic` (a Clinic or its id) owns; none for no clinic."""
        return owned_by(self, clinic)


ClinicManager = models.Manager.from_queryset(ClinicQuerySet)
