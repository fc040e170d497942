"""Writes for patients."""

import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

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
    return Patient.objects.filter(clinic_id=clinic_id, mrn=mrn).exists()


def _mrn_exists(mrn: str) -> ValidationError:
    return ValidationError({"mrn": f"A patient with MRN {mrn} already exists in this clinic."})
