import pytest
from django.core.exceptions import ValidationError
from django.http import Http404

from apps.patients.selectors import patient_get, patient_list
from apps.patients.services import patient_create


def test_mrn_is_unique_per_clinic_not_across_clinics(north, south):
    with pytest.raises(ValidationError, match="already exists"):
        patient_create(created_by=north.staff, mrn=north.patient.mrn, name="Someone Else")
    twin = patient_create(created_by=south.staff, mrn=north.patient.mrn, name="Same MRN elsewhere")
    assert twin.clinic_id == south.clinic.pk


def test_mrn_race_lost_at_the_database_gives_the_same_validation_error(north, monkeypatch):
    """Two requests with one MRN both pass the check; the unique constraint stops the second."""
    from django.db.models import QuerySet

    from apps.patients.models import Patient

    real_exists, calls = QuerySet.exists, []

    def first_check_runs_before_the_other_request_commits(queryset):
        calls.append(queryset.model)
        return False if len(calls) == 1 else real_exists(queryset)

    monkeypatch.setattr(QuerySet, "exists", first_check_runs_before_the_other_request_commits)
    with pytest.raises(ValidationError) as raised:
        patient_create(created_by=north.staff, mrn=north.patient.mrn, name="Raced")
    message = f"A patient with MRN {north.patient.mrn} already exists in this clinic."
    assert raised.value.message_dict == {"mrn": [message]}
    # The caller's transaction is still usable.
    assert Patient.objects.filter(clinic=north.clinic, mrn=north.patient.mrn).count() == 1


def test_patient_list_searches_name_and_mrn_within_the_clinic(north, south):
    patient_create(created_by=north.staff, mrn="X-77", name="Ada Lovelace")
    patient_create(created_by=south.staff, mrn="X-78", name="Ada Byron")
    assert [p.name for p in patient_list(user=north.staff, search="ada")] == ["Ada Lovelace"]
    assert [p.mrn for p in patient_list(user=north.staff, search="x-7")] == ["X-77"]
    assert {p.clinic_id for p in patient_list(user=north.staff)} == {north.clinic.pk}
    assert patient_list(user=north.staff).get(pk=north.patient.pk).case_count == 1


def test_patient_get_hides_other_clinics(north, south):
    assert patient_get(user=north.staff, patient_id=north.patient.pk) == north.patient
    with pytest.raises(Http404):
        patient_get(user=north.staff, patient_id=south.patient.pk)


def test_user_without_clinic_cannot_create_or_see_patients(north, django_user_model):
    loner = django_user_model.objects.create_user(username="loner", password="x")
    with pytest.raises(ValidationError):
        patient_create(created_by=loner, mrn="1", name="Nobody")
    assert not patient_list(user=loner).exists()
