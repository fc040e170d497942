"""The worklist: which cases, in which order, the filters, the counts, and the API."""

import importlib
from datetime import datetime, time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.cases.models import Case
from apps.cases.selectors import case_list
from apps.cases.services import case_sign
from apps.cases.worklist import (
    Priority,
    WorklistFilters,
    case_worklist,
    case_worklist_counts,
    case_worklist_ids,
    worklist_priority_refresh,
)
from apps.patients.services import patient_create
from apps.scans.services import scan_claim, scan_fail, scan_review
from tests.testkit.data import finish_scan, make_case


@pytest.fixture
def desk(north, django_capture_on_commit_callbacks):
    """Fixed cases of clinic north, named by what they test; `order` is the worklist's."""
    now = timezone.now()

    def case(results, days_ago, title, **kwargs):
        return make_case(
            north, django_capture_on_commit_callbacks, results, created_at=now - timedelta(days=days_ago), title=title,
            **kwargs,
        )  # fmt: skip

    other_patient = patient_create(created_by=north.staff, mrn="NORTH-002", name="Second Patient")
    cases = {
        "notumor_old": case([("notumor", 0.5)], 6, "no tumour, unsure"),  # low confidence, but no tumour
        "notumor": case([("notumor", 0.95)], 5, "no tumour"),
        "tumour": case([("glioma", 0.9)], 4, "glioma, sure", patient=other_patient),
        "unsure_meningioma": case([("meningioma", 0.55)], 3, "meningioma, unsure"),
        "mixed": case([("glioma", 0.6), ("notumor", 0.9)], 2, "glioma unsure + no tumour"),
        "pending": case([("glioma", 0.5), None], 1, "still analysing"),
        "signed": case([("pituitary", 0.9)], 7, "signed"),
        "empty": case([], 8, "no scans"),
        "failed": case([None], 9, "failed only"),
    }
    failed = cases["failed"].scans.get()
    scan_fail(scan=scan_claim(scan_id=failed.pk), error="unreadable")
    signed = cases["signed"]
    scan_review(scan=signed.scans.get(), reviewer=north.radiologist, agrees=True)
    case_sign(case=signed, signer=north.radiologist, conclusion="Pituitary adenoma.")
    # north.case (opened now, glioma at exactly 0.70: not low confidence) is a tumour case.
    cases["world"] = north.case
    order = ["unsure_meningioma", "mixed", "tumour", "world", "notumor_old", "notumor"]
    return cases, order


def _titles(cases, queryset):
    by_pk = {case.pk: name for name, case in cases.items()}
    return [by_pk[case.pk] for case in queryset]


def test_order_low_confidence_tumour_then_tumour_then_rest_oldest_first(north, desk):
    cases, order = desk
    worklist = list(case_worklist(user=north.radiologist))
    assert _titles(cases, worklist) == order
    assert [c.priority for c in worklist] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"label": "meningioma"}, ["unsure_meningioma"]),
        ({"label": "notumor"}, ["mixed", "notumor_old", "notumor"]),
        ({"confidence": "low"}, ["unsure_meningioma", "mixed", "notumor_old"]),
        ({"confidence": "confident"}, ["tumour", "world", "notumor"]),
        ({"q": "second"}, ["tumour"]),
        ({"confidence": "bogus", "label": ""}, None),  # an unknown value is ignored
    ],
)
def test_filters(north, desk, query, expected):
    cases, order = desk
    result = _titles(cases, case_worklist(user=north.radiologist, filters=WorklistFilters.from_query(query)))
    assert result == (order if expected is None else expected)


def test_date_and_patient_filters(north, desk):
    cases, _ = desk
    day = (timezone.now() - timedelta(days=4)).date().isoformat()
    dated = case_worklist(
        user=north.radiologist, filters=WorklistFilters.from_query({"date_from": day, "date_to": day})
    )
    assert _titles(cases, dated) == ["tumour"]
    patient = cases["tumour"].patient_id
    mine = case_worklist(user=north.radiologist, filters=WorklistFilters.from_query({"patient": str(patient)}))
    assert _titles(cases, mine) == ["tumour"]


def test_mine_is_the_cases_i_started_reading(north, desk):
    cases, _ = desk
    scan_review(scan=cases["mixed"].scans.order_by("id").first(), reviewer=north.radiologist, agrees=True)
    result = case_worklist(user=north.radiologist, filters=WorklistFilters.from_query({"mine": "1"}))
    assert _titles(cases, result) == ["mixed"]


def test_counts(north, desk):
    cases, _ = desk
    scan_review(scan=cases["notumor"].scans.get(), reviewer=north.radiologist, agrees=True)
    assert case_worklist_counts(user=north.radiologist) == {
        "total": 6, "low_confidence_tumour": 2, "tumour": 2, "other": 2, "mine": 1,
    }  # fmt: skip
    assert case_worklist_counts(user=north.staff)["mine"] == 0


def test_a_signed_case_leaves_the_worklist(north, desk):
    cases, _ = desk
    case = cases["unsure_meningioma"]
    scan_review(scan=case.scans.get(), reviewer=north.radiologist, agrees=True)
    case_sign(case=case, signer=north.radiologist, conclusion="Meningioma.")
    assert "unsure_meningioma" not in _titles(cases, case_worklist(user=north.radiologist))


def test_a_finished_pending_case_joins(north, desk):
    cases, _ = desk
    from tests.testkit.data import finish_scan

    finish_scan(cases["pending"].scans.get(status="queued"), "notumor", 0.9)
    # It holds a low-confidence glioma and was opened a day ago: last of priority 0.
    assert _titles(cases, case_worklist(user=north.radiologist))[:3] == ["unsure_meningioma", "mixed", "pending"]


def test_another_clinic_sees_none_of_it(north, south, desk):
    assert [c.pk for c in case_worklist(user=south.radiologist)] == [south.case.pk]
    assert case_worklist_counts(user=south.radiologist)["total"] == 1


def test_api_same_order_paginated_with_priority(north, desk):
    cases, order = desk
    client = APIClient()
    client.force_authenticate(north.radiologist)
    body = client.get(reverse("api:worklist")).json()
    assert body["count"] == len(order)
    assert body["next"] is None
    assert [row["id"] for row in body["results"]] == [cases[name].pk for name in order]
    first = body["results"][0]
    assert (first["priority"], first["priority_name"]) == (Priority.LOW_CONFIDENCE_TUMOUR, "Tumour, low confidence")
    assert first["verified"] is False
    assert first["signed_at"] is None
    assert first["scans"][0]["prediction"]["label_name"] == "Meningioma"
    filtered = client.get(reverse("api:worklist"), {"confidence": "low", "label": "glioma"}).json()
    assert [row["id"] for row in filtered["results"]] == [cases["mixed"].pk]
    # Malformed filters are ignored, never a 500.
    assert (
        client.get(reverse("api:worklist"), {"date_from": "yesterday", "patient": "x", "page": "1"}).status_code == 200
    )


def test_api_requires_a_clinic_member(north, desk):
    assert APIClient().get(reverse("api:worklist")).status_code in (401, 403)


def test_worklist_scans_come_prefetched(north, desk, django_assert_max_num_queries):
    with django_assert_max_num_queries(5):  # candidates, priorities, page priorities, cases, scans
        cases = list(case_worklist(user=north.radiologist))
        for case in cases:
            [s.prediction.label for s in case.scans.all() if s.status == "done"]


def test_pages_follow_the_worklist_order(north, desk):
    from apps.cases.worklist import case_worklist_page

    cases, order = desk
    first = case_worklist_page(user=north.radiologist, page=1, per_page=4)
    second = case_worklist_page(user=north.radiologist, page="2", per_page=4)
    beyond = case_worklist_page(user=north.radiologist, page="x", per_page=4)  # malformed: the first page
    assert _titles(cases, first.object_list) + _titles(cases, second.object_list) == order
    assert [c.pk for c in beyond.object_list] == [c.pk for c in first.object_list]
    assert first.paginator.count == len(order)
    assert all(hasattr(c, "scans_done") and hasattr(c, "priority") for c in second.object_list)


# The stored priority (Case.worklist_priority): kept current by signals, backfilled by the
# migration, and the date filter as a range the created_at index serves.


def _stored(case):
    case.refresh_from_db()
    return case.worklist_priority


def test_stored_priority_follows_results_and_sign_off(north, desk):
    cases, _order = desk
    assert _stored(cases["unsure_meningioma"]) == Priority.LOW_CONFIDENCE_TUMOUR
    assert _stored(cases["mixed"]) == Priority.LOW_CONFIDENCE_TUMOUR  # its most urgent result
    assert _stored(cases["tumour"]) == Priority.TUMOUR
    assert _stored(cases["notumor"]) == Priority.OTHER
    assert _stored(cases["signed"]) is None
    assert _stored(cases["empty"]) is None
    assert _stored(cases["failed"]) is None
    assert _stored(cases["pending"]) == Priority.LOW_CONFIDENCE_TUMOUR  # its done scan; hidden while pending

    mixed = cases["mixed"]
    mixed.scans.get(prediction__label="glioma").delete()  # the unsure glioma goes: no tumour left
    assert _stored(mixed) == Priority.OTHER
    scan_review(scan=mixed.scans.get(), reviewer=north.radiologist, agrees=True)
    case_sign(case=mixed, signer=north.radiologist, conclusion="No tumour.")
    assert _stored(mixed) is None
    assert mixed.pk not in list(case_worklist_ids(user=north.radiologist))


def test_pending_scan_finishing_updates_the_stored_priority(north, desk):
    cases, _order = desk
    pending = cases["pending"]
    finish_scan(pending.scans.get(status="queued"), "notumor", 0.95)
    assert _stored(pending) == Priority.LOW_CONFIDENCE_TUMOUR
    assert pending.pk in list(case_worklist_ids(user=north.radiologist))


def test_migration_backfill_matches_the_live_rule(north, desk):
    from django.apps import apps

    backfill = importlib.import_module("apps.cases.migrations.0004_case_worklist_priority").backfill
    live = dict(Case.all_objects.values_list("pk", "worklist_priority"))
    assert any(value is not None for value in live.values())
    Case.all_objects.update(worklist_priority=None)
    backfill(apps, None)
    assert dict(Case.all_objects.values_list("pk", "worklist_priority")) == live
    Case.all_objects.update(worklist_priority=None)
    worklist_priority_refresh()
    assert dict(Case.all_objects.values_list("pk", "worklist_priority")) == live


def test_date_filter_is_a_timestamp_range_on_whole_days(north, desk):
    cases, _order = desk
    late = cases["tumour"]
    local_day = timezone.localdate(late.created_at)
    just_before_midnight = timezone.make_aware(datetime.combine(local_day, time(23, 59, 30)))
    Case.objects.filter(pk=late.pk).update(created_at=just_before_midnight)

    def titles(**query):
        filters = WorklistFilters.from_query({k: v.isoformat() for k, v in query.items()})
        return _titles(cases, case_worklist(user=north.radiologist, filters=filters))

    assert "tumour" in titles(date_from=local_day, date_to=local_day)
    assert "tumour" not in titles(date_from=local_day + timedelta(days=1))
    assert "tumour" not in titles(date_to=local_day - timedelta(days=1))
    # A range on the column itself, not the date of every row (which no index serves).
    filters = WorklistFilters.from_query({"date_from": local_day.isoformat(), "date_to": local_day.isoformat()})
    sql = str(case_list(user=north.radiologist, filters=filters).query).lower()
    assert "created_at\" >=" in sql
    assert "created_at\" <" in sql
    assert "date(" not in sql
    assert "cast_date" not in sql


def test_a_case_waiting_for_a_hold_decision_or_a_study_unpack_is_not_ready(
    north, desk, django_capture_on_commit_callbacks
):
    """case_sign refuses a case with a held scan or a study still to unpack: the worklist does
    not offer it (nor counts it) until then."""
    from apps.scans.holds import scan_hold
    from apps.scans.services import scans_upload
    from tests.testkit import dicom as dicomdata
    from tests.testkit.data import unpack_study, upload

    cases, order = desk
    held = make_case(north, django_capture_on_commit_callbacks, [("glioma", 0.5), None], title="held")
    waiting = held.scans.get(status="queued")
    assert scan_hold(scan=scan_claim(scan_id=waiting.pk))  # the worker found text burnt into it
    tumour = cases["tumour"]
    with django_capture_on_commit_callbacks(execute=False):
        (study,) = scans_upload(
            case=tumour, uploaded_by=north.staff,
            uploads=[upload(dicomdata.training_series(1, patient_id="NORTH-002")[0], "s.dcm", "application/dicom")],
        ).studies  # fmt: skip
    expected = [name for name in order if name != "tumour"]
    assert _titles(cases, case_worklist(user=north.radiologist)) == expected
    assert held.pk not in case_worklist_ids(user=north.radiologist)
    assert case_worklist_counts(user=north.radiologist)["total"] == len(expected)
    assert unpack_study(study).status == "unpacked"  # its slice now waits for the model, still not ready
    assert tumour.pk not in case_worklist_ids(user=north.radiologist)
