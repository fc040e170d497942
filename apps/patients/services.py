"""Writes for patients."""

import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User

from .models import Patient


def patient_create(
    *,
    created_by: User,
    mrn: str,
    name: str,
    date_of_birth: datetime.date | None = None,
    sex: str = "",
) -> Patient:
    """Create a patient in the creator's clinic. The MRN is unique within a clinic."""
    if created_by.clinic_id is None:
        raise ValidationError("Your account is not a member of a clinic.")
    _check_birth_date(date_of_birth)
    mrn, name = mrn.strip(), name.strip()
    if _mrn_taken(clinic_id=created_by.clinic_id, mrn=mrn):
        raise _mrn_exists(mrn)
    patient = Patient(
        clinic_id=created_by.clinic_id,
        mrn=mrn,
        name=name,
        date_of_birth=date_of_birth,
        sex=sex or "",
        created_by=created_by,
    )
    patient.full_clean(exclude=["clinic", "created_by"], validate_constraints=False)
    try:
        # A savepoint: the caller's transaction stays usable (PostgreSQL) after the error.
        with transaction.atomic():
            patient.save()
    except IntegrityError:
        # Two requests with the same MRN passed the check together; the constraint caught one.
        if _mrn_taken(clinic_id=created_by.clinic_id, mrn=mrn):
            raise _mrn_exists(mrn) from None
        raise
    return patient


def _mrn_taken(*, clinic_id: int, mrn: str) -> bool:
    return Patient.objects.for_clinic(clinic_id).filter(mrn=mrn).exists()


def _mrn_exists(mrn: str) -> ValidationError:
    return ValidationError({"mrn": f"A patient with MRN {mrn} already exists in this clinic."})


def _check_birth_date(date_of_birth: datetime.date | None) -> None:
    # A typing slip (2052 for 1952) must not become a patient's age: no birth in the future.
    if date_of_birth is not None and date_of_birth > timezone.localdate():
        raise ValidationError({"date_of_birth": "The date of birth is in the future."})


def patient_update(
    *,
    patient: Patient,
    updated_by: User,
    mrn: str,
    name: str,
    date_of_birth: datetime.date | None = None,
    sex: str = "",
) -> Patient:
    """Correct a patient's details (`patient` comes from a clinic-scoped selector). The MRN
    stays unique within the clinic; the change is audited with the fields that changed."""
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record

    _check_birth_date(date_of_birth)
    mrn, name = mrn.strip(), name.strip()
    if mrn != patient.mrn and _mrn_taken(clinic_id=patient.clinic_id, mrn=mrn):
        raise _mrn_exists(mrn)
    before = {"mrn": patient.mrn, "name": patient.name, "date_of_birth": patient.date_of_birth, "sex": patient.sex}
    patient.mrn, patient.name, patient.date_of_birth, patient.sex = mrn, name, date_of_birth, sex or ""
    patient.full_clean(exclude=["clinic", "created_by"], validate_constraints=False)
    changed = sorted(field for field, value in before.items() if getattr(patient, field) != value)
    if not changed:
        return patient
    try:
        with transaction.atomic():
            patient.save(update_fields=changed)
            audit_record(
                actor=updated_by, action=AuditAction.ADMIN_CHANGE, obj=patient, detail="edited: " + ", ".join(changed)
            )
    except IntegrityError:
        raise _mrn_exists(mrn) from None
    return patient
