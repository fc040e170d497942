"""The one path from each model to its clinic (apps/accounts/clinics.py): `for_clinic` on every
clinic-owned model's manager, the same-clinic check and its one exception."""

from collections.abc import Callable

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import PermissionDenied

from apps.accounts.clinics import (
    CLINIC_PATHS,
    OtherClinicError,
    clinic_id_of,
    owned_by,
    require_same_clinic,
    same_clinic,
)
from apps.audit.models import AuditAction, AuditEvent
from apps.audit.services import audit_record
from apps.cases.models import Case, CaseAddendum
from apps.patients.models import Patient
from apps.scans.models import ClassHeatmap, Prediction, Scan, ScanReview, StudyUpload
from apps.scans.services import scan_review, scans_upload
from tests.testkit.data import ClinicWorld, upload
from tests.testkit.scans import png_bytes

# The relations through which a row belongs to a clinic: a model with one of them must have a path.
_OWNING_FIELDS = {"clinic", "case", "scan", "prediction", "study", "user"}


def test_every_model_related_to_a_clinic_has_a_path_to_it():
    missing = [
        model._meta.label_lower
        for model in django_apps.get_models()
        if model._meta.app_label in {"accounts", "patients", "cases", "scans", "audit", "dicomnet", "knox"}
        and {f.name for f in model._meta.get_fields() if f.is_relation and f.concrete} & _OWNING_FIELDS
        and model._meta.label_lower not in CLINIC_PATHS
    ]
    assert missing == []


def test_every_path_resolves_to_a_clinic_id():
    from django.db.models.constants import LOOKUP_SEP

    for label, path in CLINIC_PATHS.items():
        model = django_apps.get_model(label)
        # The path is a valid query (compiling it raises on a wrong field name).
        str(model._default_manager.filter(**{path: 1}).query)
        assert path == "pk" or path.split(LOOKUP_SEP)[-1] == "clinic_id", label


def _rows(world: ClinicWorld) -> dict[type, object]:
    """One row of each clinic-owned model, in `world`'s clinic."""
    prediction = world.scan.prediction
    return {
        Patient: world.patient,
        Case: world.case,
        Scan: world.scan,
        Prediction: prediction,
        ScanReview: scan_review(scan=world.scan, reviewer=world.radiologist, agrees=True),
        ClassHeatmap: ClassHeatmap.objects.create(prediction=prediction, label="notumor"),
        CaseAddendum: CaseAddendum.objects.create(case=world.case, author=world.radiologist, text="later"),
        StudyUpload: StudyUpload.objects.create(case=world.case, uploaded_by=world.staff),
        AuditEvent: audit_record(actor=world.staff, action=AuditAction.VIEW, obj=world.case),
    }


@pytest.fixture
def rows(north, south) -> Callable[[ClinicWorld], dict[type, object]]:
    built = {north.clinic.pk: _rows(north), south.clinic.pk: _rows(south)}
    return lambda world: built[world.clinic.pk]


@pytest.mark.parametrize(
    "model", [Patient, Case, Scan, Prediction, ScanReview, ClassHeatmap, CaseAddendum, StudyUpload, AuditEvent]
)
def test_for_clinic_gives_the_clinics_rows_and_none_of_anothers(model, north, south, rows):
    mine, theirs = rows(north)[model], rows(south)[model]
    for clinic in (north.clinic, north.clinic.pk):  # a Clinic or its id
        owned = model.objects.for_clinic(clinic)
        assert owned.filter(pk=mine.pk).exists()
        assert not owned.filter(pk=theirs.pk).exists()
    assert not model.objects.for_clinic(None).exists()
    assert clinic_id_of(mine) == north.clinic.pk
    assert clinic_id_of(theirs) == south.clinic.pk


def test_the_live_and_all_managers_both_scope(north, south):
    assert set(Case.all_objects.for_clinic(south.clinic)) == {south.case}
    assert set(Scan.all_objects.for_clinic(south.clinic)) == {south.scan}


def test_owned_by_scopes_any_queryset_and_gives_nothing_for_an_unowned_model(north, south):
    from django.contrib.auth.models import Group

    assert set(owned_by(Patient.objects.all(), north.clinic)) == {north.patient}
    Group.objects.create(name="g")
    assert not owned_by(Group.objects.all(), north.clinic).exists()


def test_the_check_passes_in_the_users_clinic(north):
    for obj in (north.patient, north.case, north.scan, north.scan.prediction, north.clinic, north.staff):
        assert same_clinic(north.staff, obj)
        require_same_clinic(north.staff, obj)


def test_the_check_raises_one_exception_for_another_clinics_object(north, south):
    for obj in (south.patient, south.case, south.scan, south.scan.prediction, south.clinic):
        assert not same_clinic(north.radiologist, obj)
        with pytest.raises(OtherClinicError, match="belongs to another clinic"):
            require_same_clinic(north.radiologist, obj)
    assert issubclass(OtherClinicError, PermissionDenied)  # a 403, as before


def test_a_user_without_a_clinic_owns_nothing(north):
    north.staff.clinic = None
    assert not same_clinic(north.staff, north.case)
    with pytest.raises(OtherClinicError):
        require_same_clinic(north.staff, north.case)


def test_the_services_raise_it(north, south, django_capture_on_commit_callbacks):
    with pytest.raises(OtherClinicError, match=r"This case belongs to another clinic\."):
        scans_upload(case=south.case, uploaded_by=north.staff, uploads=[upload(png_bytes(), "a.png")])
    with pytest.raises(OtherClinicError, match=r"This scan belongs to another clinic\."):
        scan_review(scan=south.scan, reviewer=north.radiologist, agrees=True)
