import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.cases.models import Case, CaseStatus
from apps.cases.selectors import CaseFilters, case_get, case_history, case_list
from apps.cases.services import case_create
from apps.patients.services import patient_create
from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_upload
from tests.testkit.data import finish_scan, upload
from tests.testkit.scans import png_bytes


def test_case_for_another_clinics_patient_is_refused(north, south):
    with pytest.raises(ValidationError, match="No such patient"):
        case_create(created_by=north.staff, patient=south.patient)


def _case_with_scans(world, capture, *, name, mrn, statuses):
    patient = patient_create(created_by=world.staff, mrn=mrn, name=name)
    case = case_create(created_by=world.staff, patient=patient, title=f"{name} case")
    for label in statuses:
        with capture(execute=False):
            (scan,) = scans_upload(case=case, uploaded_by=world.staff, uploads=[upload(png_bytes(), "a.png")]).scans
        if label == "failed":
            Scan.objects.filter(pk=scan.pk).update(status=ScanStatus.FAILED, error="boom")
        elif label != "queued":
            finish_scan(scan, label=label)
    return case


def test_case_status_is_derived_from_its_scans(north, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    empty = _case_with_scans(north, capture, name="E", mrn="E1", statuses=[])
    pending = _case_with_scans(north, capture, name="P", mrn="P1", statuses=["glioma", "queued"])
    failed = _case_with_scans(north, capture, name="F", mrn="F1", statuses=["glioma", "failed"])
    statuses = {c.pk: c.status for c in case_list(user=north.staff)}
    assert statuses[empty.pk] == CaseStatus.EMPTY
    assert statuses[pending.pk] == CaseStatus.PENDING
    assert statuses[failed.pk] == CaseStatus.FAILED
    assert statuses[north.case.pk] == CaseStatus.DONE
    # The status filter (EXISTS tests) agrees with the annotation (counts) for every status.
    for status in CaseStatus:
        filtered = {c.pk for c in case_list(user=north.staff, filters=CaseFilters(status=status))}
        assert filtered == {pk for pk, value in statuses.items() if value == status}, status


def test_history_filters(north, south, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    pit = _case_with_scans(north, capture, name="Grace Hopper", mrn="GH-9", statuses=["pituitary"])
    queued = _case_with_scans(north, capture, name="Alan Turing", mrn="AT-1", statuses=["queued"])
    old = _case_with_scans(north, capture, name="Old Timer", mrn="OT-1", statuses=[])
    Case.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=40))

    def ids(**filters):
        return {c.pk for c in case_list(user=north.staff, filters=CaseFilters(**filters))}

    assert ids() == {north.case.pk, pit.pk, queued.pk, old.pk}  # never south's
    assert ids(search="hopper") == {pit.pk}
    assert ids(search="at-1") == {queued.pk}
    assert ids(patient_id=queued.patient_id) == {queued.pk}
    assert ids(label="pituitary") == {pit.pk}
    assert ids(label="glioma") == {north.case.pk}
    assert ids(status="pending") == {queued.pk}
    assert ids(status="done") == {north.case.pk, pit.pk}
    today = timezone.localdate()
    assert ids(date_to=today - datetime.timedelta(days=30)) == {old.pk}
    assert old.pk not in ids(date_from=today - datetime.timedelta(days=1))


def test_filters_parse_leniently_from_a_query_string():
    filters = CaseFilters.from_query(
        {"q": " ada ", "patient": "7", "date_from": "2025-01-02", "date_to": "nonsense", "status": "bogus"}
    )
    assert filters == CaseFilters(search="ada", patient_id=7, date_from=datetime.date(2025, 1, 2))


def test_history_page_costs_the_same_queries_for_any_page_size(north, django_capture_on_commit_callbacks):
    for i in range(12):
        _case_with_scans(
            north, django_capture_on_commit_callbacks, name=f"P{i}", mrn=f"M{i}", statuses=["glioma", "queued"]
        )

    def render(per_page):
        with CaptureQueriesContext(connection) as queries:
            page = case_history(user=north.staff, filters=CaseFilters(search="p"), page=1, per_page=per_page)
            rows = [
                (
                    c.patient.name,
                    c.status,
                    c.created_by.username,
                    [(s.status, getattr(s, "prediction", None)) for s in c.scans.all()],
                )
                for c in page
            ]
        return len(queries), rows

    small_queries, small_rows = render(2)
    large_queries, large_rows = render(10)
    assert len(small_rows) == 2
    assert len(large_rows) == 10
    assert small_queries == large_queries <= 4  # count, page ids, cases, their scans


def test_case_get_scoped(north, south):
    assert case_get(user=north.staff, case_id=north.case.pk).scans_total == 1
    with pytest.raises(Http404):
        case_get(user=north.staff, case_id=south.case.pk)
