"""Reads for patients, always within the user's clinic."""

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from apps.accounts.models import User

from .models import Patient


def patient_list(*, user: User, search: str = "") -> QuerySet[Patient]:
    """The clinic's patients, with their case count, optionally searched by name or MRN."""
    queryset = Patient.objects.for_clinic(user.clinic_id).annotate(
        case_count=Count("cases", filter=Q(cases__deleted_at__isnull=True))  # deleted cases are gone
    )
    search = search.strip()
    if search:
        queryset = queryset.filter(Q(name__icontains=search) | Q(mrn__icontains=search))
    return queryset.order_by("name", "mrn")


def patient_get(*, user: User, patient_id: int) -> Patient:
    """A patient of the user's clinic; Http404 for any other (another clinic's looks absent)."""
    patient = Patient.objects.for_clinic(user.clinic_id).filter(pk=patient_id).first()
    if patient is None:
        raise Http404("No such patient.")
    return patient
