"""Issue 15 item 4 / issue 14 item 10: every read of patient data is ONE audit event naming what
it showed (a page of a list: its ids; a case view: its scans), the files and fragments a case
page loads are part of that view, and every refused access is one "denied" event with the
actor, the address and the outcome."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.audit.reads import ids_text
from apps.scans.services import scan_review
from tests.testkit.data import PASSWORD, api_token, make_case

ADDRESS = "10.7.7.7"


def _mark() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _events_after(mark: int) -> list[tuple]:
    return list(
        AuditEvent.objects.filter(id__gt=mark)
        .order_by("id")
        .values_list("action", "object_type", "object_id", "actor_username", "outcome", "detail")
    )


def _api(user) -> APIClient:
    client = APIClient(REMOTE_ADDR=ADDRESS)
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


@pytest.fixture
def page(north, client):
    client.defaults["REMOTE_ADDR"] = ADDRESS
    return client


def test_ids_text_is_compact_and_fits_an_event():
    assert ids_text([9, 3, 4, 5, 12, 11]) == "3-5,9,11-12"
    long = ids_text(range(1, 2000, 2))
    assert len(long) <= 255
    assert long.endswith("of 1000 ids")


def test_a_case_view_is_one_event_and_its_images_and_fragments_are_part_of_it(north, page):
    page.force_login(north.staff)
    mark = _mark()
    assert page.get(reverse("case_detail", args=[north.case.pk])).status_code == 200
    for name in ("scans:image", "scans:overlay", "scans:heatmap", "scan_card"):
        assert page.get(reverse(name, args=[north.scan.pk])).status_code == 200, name
    assert page.get(reverse("case_summary", args=[north.case.pk])).status_code == 200
    label = north.scan.prediction.label
    assert page.get(reverse("api:scan-heatmap", args=[north.scan.pk, label])).status_code == 200
    events = _events_after(mark)
    assert events == [("view", "case", str(north.case.pk), "north-staff", "success", f"scans {north.scan.pk}")]
    assert AuditEvent.objects.get(id__gt=mark).ip == ADDRESS
    # The DICOM file is a download of its own, page view or not (tests/apps/test_audit.py).


def test_each_page_read_on_its_own_is_one_event_with_the_ids_it_showed(
    north, page, django_capture_on_commit_callbacks
):
    second = make_case(north, django_capture_on_commit_callbacks, [("glioma", 0.95)], patient=north.patient)
    page.force_login(north.radiologist)
    scan_id = str(north.scan.pk)
    reads = [
        (reverse("scan_card", args=[north.scan.pk]), ("view", "scan", scan_id, "card")),
        (reverse("case_summary", args=[north.case.pk]),
         ("view", "case", str(north.case.pk), f"summary of scans {scan_id}")),
        (reverse("patient_timeline", args=[north.patient.pk]),
         ("view", "patient", str(north.patient.pk), f"timeline of cases {ids_text([north.case.pk, second.pk])}")),
        (reverse("history"), ("view", "case", "", f"history p1: {ids_text([north.case.pk, second.pk])}")),
        (reverse("worklist"), ("view", "case", "", f"worklist p1: {ids_text([north.case.pk, second.pk])}")),
        (reverse("agreement"), ("view", "agreement", "", "model all")),
        (reverse("dashboard"), ("view", "case", "", f"dashboard p1: {ids_text([north.case.pk, second.pk])}")),
    ]  # fmt: skip
    for url, (action, object_type, object_id, detail) in reads:
        mark = _mark()
        assert page.get(url).status_code == 200, url
        assert _events_after(mark) == [(action, object_type, object_id, "north-rad", "success", detail)], url


def test_each_api_read_is_one_event_per_page_with_its_ids(north, django_capture_on_commit_callbacks, monkeypatch):
    from rest_framework.pagination import PageNumberPagination

    monkeypatch.setattr(PageNumberPagination, "page_size", 1)  # two pages of one case
    second = make_case(north, django_capture_on_commit_callbacks, [("glioma", 0.95)])
    scan_review(scan=north.scan, reviewer=north.radiologist, agrees=True)
    api = _api(north.radiologist)
    newest, oldest = second.pk, north.case.pk  # newest first
    review_id = north.scan.reviews.get().pk
    reads = [
        (reverse("api:case-list"), ("case", "", f"cases api p1: {newest}")),
        (reverse("api:case-list") + "?page=2", ("case", "", f"cases api p2: {oldest}")),
        (reverse("api:worklist"), ("case", "", "worklist api p1: ")),
        (reverse("api:scan-reviews", args=[north.scan.pk]), ("scan", str(north.scan.pk), f"reviews {review_id}")),
        (reverse("api:agreement"), ("agreement", "", "model all")),
    ]
    for url, (object_type, object_id, detail) in reads:
        mark = _mark()
        assert api.get(url).status_code == 200, url
        ((action, kind, oid, actor, outcome, text),) = _events_after(mark)
        assert (action, kind, oid, actor, outcome) == ("view", object_type, object_id, "north-rad", "success"), url
        assert text.startswith(detail), (url, text)


def test_admin_change_page_and_changelist_are_reads(north, page):
    page.force_login(north.admin)
    mark = _mark()
    assert page.get(reverse("admin:patients_patient_change", args=[north.patient.pk])).status_code == 200
    assert _events_after(mark) == [("view", "patient", str(north.patient.pk), "north-admin", "success", "admin")]
    mark = _mark()
    assert page.get(reverse("admin:cases_case_changelist")).status_code == 200
    assert _events_after(mark) == [("view", "case", "", "north-admin", "success", f"admin list p1: {north.case.pk}")]
    mark = _mark()
    assert page.get(reverse("admin:audit_auditevent_changelist")).status_code == 200
    assert _events_after(mark) == []  # reading the trail is not a read of patient data


def test_every_refused_access_is_one_denied_event(north, south, page):
    page.force_login(south.staff)
    case, scan, patient = str(north.case.pk), str(north.scan.pk), str(north.patient.pk)
    refused = [
        (reverse("case_detail", args=[north.case.pk]), "case", case, "404 GET case_detail"),
        (reverse("scan_card", args=[north.scan.pk]), "scan", scan, "404 GET scan_card"),
        (reverse("case_summary", args=[north.case.pk]), "case", case, "404 GET case_summary"),
        (reverse("patient_timeline", args=[north.patient.pk]), "patient", patient, "404 GET patient_timeline"),
        (reverse("scans:dicom", args=[north.scan.pk]), "scan", scan, "404 GET scans:dicom"),
        (reverse("agreement"), "", "", "403 GET agreement"),  # a role's limit
    ]
    for url, object_type, object_id, detail in refused:
        mark = _mark()
        assert page.get(url).status_code in (403, 404), url
        assert _events_after(mark) == [("denied", object_type, object_id, "south-staff", "failure", detail)], url
        event = AuditEvent.objects.get(id__gt=mark)
        assert (event.ip, event.clinic_id, event.actor_id) == (ADDRESS, south.clinic.pk, south.staff.pk)
    api = _api(south.staff)
    for url, object_type, object_id, status in [
        (reverse("api:case-detail", args=[north.case.pk]), "case", case, 404),
        (reverse("api:scan-reviews", args=[north.scan.pk]), "scan", scan, 404),
        (reverse("api:agreement"), "", "", 403),
    ]:
        mark = _mark()
        assert api.get(url).status_code == status, url
        ((action, kind, oid, actor, outcome, _),) = _events_after(mark)
        assert (action, kind, oid, actor, outcome) == ("denied", object_type, object_id, "south-staff", "failure")
    # A sign by clinic staff is refused by its role: one event.
    mark = _mark()
    signed = _api(north.staff).post(reverse("api:case-sign", args=[north.case.pk]), {"conclusion": "x"})
    assert signed.status_code == 403
    assert [e[:5] for e in _events_after(mark)] == [("denied", "case", case, "north-staff", "failure")]
    # Anonymous: no actor, still one event with the address.
    mark = _mark()
    assert APIClient(REMOTE_ADDR=ADDRESS).get(reverse("api:case-detail", args=[north.case.pk])).status_code == 401
    assert [e[:5] for e in _events_after(mark)] == [("denied", "case", case, "", "failure")]


def test_admin_refusal_of_another_clinics_object_is_recorded(north, south, page):
    page.force_login(south.admin)
    mark = _mark()
    assert page.get(reverse("admin:cases_case_change", args=[north.case.pk])).status_code == 302
    # The admin redirects an unknown id to its index (no 404): one refusal, nothing read.
    assert _events_after(mark) == [
        ("denied", "case", str(north.case.pk), "south-admin", "failure", "admin: no such object in this clinic")
    ]
    assert AuditEvent.objects.get(id__gt=mark).clinic_id == south.clinic.pk


def test_one_sign_in_logs_once_even_when_the_form_is_sent_twice(north, page):
    mark = _mark()
    for _ in range(2):
        page.post(reverse("login"), {"username": north.staff.username, "password": PASSWORD})
    assert [e for e in _events_after(mark) if e[0] == "login"] == [
        ("login", "user", str(north.staff.pk), "north-staff", "success", "")
    ]


def test_a_role_refusal_a_page_answers_with_a_message_is_one_denied_event(north, page):
    page.force_login(north.staff)
    mark = _mark()
    response = page.post(reverse("case_sign", args=[north.case.pk]), {"conclusion": "Glioma."})
    assert response.status_code == 302
    assert [e[:5] for e in _events_after(mark)] == [("denied", "case", str(north.case.pk), "north-staff", "failure")]
    mark = _mark()
    page.post(reverse("scan_review", args=[north.scan.pk]), {"reading": "agree"})
    assert [e[:5] for e in _events_after(mark)] == [("denied", "scan", str(north.scan.pk), "north-staff", "failure")]


def test_sign_out_then_in_again_at_once_is_two_sign_ins(north, page):
    mark = _mark()
    page.post(reverse("login"), {"username": north.staff.username, "password": PASSWORD})
    page.post(reverse("logout"))
    page.post(reverse("login"), {"username": north.staff.username, "password": PASSWORD})
    assert [e[0] for e in _events_after(mark) if e[0] in ("login", "logout")] == ["login", "logout", "login"]


def test_a_scan_card_fetched_on_its_own_covers_its_images(north, page):
    page.force_login(north.staff)
    mark = _mark()
    assert page.get(reverse("scan_card", args=[north.scan.pk])).status_code == 200
    for name in ("scans:image", "scans:overlay", "scans:heatmap"):
        assert page.get(reverse(name, args=[north.scan.pk])).status_code == 200
    assert [e[:3] for e in _events_after(mark)] == [("view", "scan", str(north.scan.pk))]
