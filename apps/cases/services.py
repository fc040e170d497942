"""Writes for cases."""

from django.core.exceptions import ValidationError

from apps.accounts.models import User
from apps.patients.models import Patient

from .models import Case


def case_create(*, created_by: User, patient: Patient, title: str = "", clinical_notes: str = "") -> Case:
    """Open a case for a patient of the creator's clinic."""
    if created_by.clinic_id is None or patient.clinic_id != created_by.clinic_id:
        # Same wording as a missing patient: another clinic's patient must look absent.
        raise ValidationError({"patient": "No such patient."})
    case = Case(
        clinic_id=created_by.clinic_id,
        patient=patient,
        created_by=created_by,
        title=title.strip(),
        clinical_notes=clinical_notes.strip(),
    )
    case.full_clean(exclude=["clinic", "patient", "created_by"])
    case.save()
    return case
