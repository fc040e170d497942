"""The server-rendered pages: each renders, writes go through the services, another clinic's
objects are a 404, the scan card polls until the scan is finished, history has a flat query count."""
from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.cases.models import Case
from apps.cases.services import case_create
from apps.patients.models import Patient
from apps.patients.services import patient_create
from apps.scans.models import Scan, ScanReview, StudyUpload
from apps.scans.services import scans_upload
from tests.testkit.data import PASSWORD, finish_scan, png_upload, reject_scan, unpack_study

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["dashboard", "patients", "case_new", "history"])
def test_pages_need_login(client, name: str) -> None:
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_and_logout(client, world) -> None:
    response = client.post(reverse("login"), {"username": world.staff.username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


def test_login_page_renders_and_rejects_bad_password(client, world) -> None:
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": world.staff.username, "password": "wrong"})
    assert response.status_code == 200
    assert b"errorlist" in response.content


def test_dashboard_shows_recent_cases_and_queue(staff_client, world, other) -> None:
    response = staff_client.get(reverse("dashboard"))
    html = response.content.decode()
    assert world.case.title in html
    assert other.case.title not in html  # another clinic's case is not listed
    assert response.context["queue"] == {
        "queued": 1, "processing": 0, "done": 0, "failed": 0, "rejected": 0, "held": 0,
    }  # fmt: skip


def test_assets_are_local(staff_client) -> None:
    html = staff_client.get(reverse("dashboard")).content.decode()
    assert "/static/vendor/htmx.min.js" in html
    # Pages must work offline: no script or stylesheet from another host.
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_patient_create_and_duplicate_mrn(staff_client, world) -> None:
    response = staff_client.post(reverse("patients"), {"mrn": "N-42", "name": "Ada Lovelace"})
    assert response.status_code == 302
    assert Patient.objects.filter(clinic=world.staff.clinic, mrn="N-42").exists()
    response = staff_client.post(reverse("patients"), {"mrn": "N-42", "name": "Someone Else"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    listing = staff_client.get(reverse("patients"), {"q": "lovelace"}).content.decode()
    assert "Ada Lovelace" in listing


def test_new_case_with_several_scans(staff_client, world, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_client.post(
            reverse("case_new"),
            {"patient": world.patient.pk, "title": "Headache", "files": [png_upload("a.png"), png_upload("b.png")]},
        )
    assert response.status_code == 302
    case = Case.objects.get(title="Headache")
    assert response["Location"] == reverse("case_detail", args=[case.pk])
    assert sorted(case.scans.values_list("original_filename", flat=True)) == ["a.png", "b.png"]
    assert len(callbacks) == 1  # one enqueue after commit for the batch


def test_new_case_with_a_bad_file_saves_nothing(staff_client, world) -> None:
    # Only bad files: nothing is saved, not even an empty case. (Issue 14 changed the mixed
    # batch this test used to send: the good file is now kept and the bad one named.)
    cases_before, scans_before = Case.objects.count(), Scan.objects.count()
    bad = SimpleUploadedFile("notes.png", b"%PDF-1.4 not an image", content_type="image/png")
    response = staff_client.post(reverse("case_new"), {"patient": world.patient.pk, "title": "Bad", "files": [bad]})
    assert response.status_code == 400
    assert "notes.png" in response.content.decode()  # the message names the file
    assert (Case.objects.count(), Scan.objects.count()) == (cases_before, scans_before)


def test_new_case_with_one_bad_file_keeps_the_good_ones_and_names_the_bad(staff_client, world) -> None:
    bad = SimpleUploadedFile("notes.png", b"%PDF-1.4 not an image", content_type="image/png")
    response = staff_client.post(
        reverse("case_new"), {"patient": world.patient.pk, "title": "Mixed", "files": [png_upload(), bad]}, follow=True
    )
    shown = response.content.decode()
    assert "Case opened. 1 scan(s) added" in shown
    assert "Not stored (1): notes.png" in shown
    assert Scan.objects.filter(case__title="Mixed").count() == 1


def test_new_case_cannot_name_another_clinics_patient(staff_client, other) -> None:
    response = staff_client.post(reverse("case_new"), {"patient": other.patient.pk, "files": [png_upload()]})
    assert response.status_code == 400
    assert not Case.objects.filter(patient=other.patient).exclude(pk=other.case.pk).exists()


def test_case_detail_polls_until_done(staff_client, world) -> None:
    url = reverse("case_detail", args=[world.case.pk])
    card_url = reverse("scan_card", args=[world.scan.pk])
    html = staff_client.get(url).content.decode()
    assert f'hx-get="{card_url}"' in html
    assert 'hx-trigger="every 2s"' in html

    finish_scan(world.scan, label="meningioma")
    card = staff_client.get(card_url).content.decode()
    assert "hx-trigger" not in card  # finished: polling stops
    assert world.scan.get_image_url() in card
    assert world.scan.get_overlay_url() in card
    assert 'type="range"' in card
    assert "Meningioma" in card
    assert "70.0%" in card
    assert "Low confidence" not in card
    assert "pixel-test-1" in card


def test_an_unsure_prediction_is_flagged(staff_client, world) -> None:
    finish_scan(world.scan, label="glioma", top=0.55)
    card = staff_client.get(reverse("scan_card", args=[world.scan.pk])).content.decode()
    assert "Low confidence" in card
    assert "55.0%" in card


def test_a_near_certain_prediction_is_not_shown_as_certain(staff_client, world) -> None:
    finish_scan(world.scan, label="notumor", top=0.999996)
    card = staff_client.get(reverse("scan_card", args=[world.scan.pk])).content.decode()
    assert "No tumour" in card
    assert "&gt;99.9%" in card
    assert "&lt;0.1%" in card
    assert "(100.0%)" not in card
    assert ">100.0%<" not in card
    assert "Low confidence" not in card


def test_scan_card_shows_failure(staff_client, world) -> None:
    Scan.objects.filter(pk=world.scan.pk).update(status="failed", error="The file is not a scan.")
    card = staff_client.get(reverse("scan_card", args=[world.scan.pk])).content.decode()
    assert "The file is not a scan." in card
    assert "hx-trigger" not in card


def test_a_rejected_scan_shows_why_and_no_label(staff_client, world) -> None:
    message = "This does not look like a brain MRI slice (its out-of-distribution score is 41.5, beyond …)"
    Scan.objects.filter(pk=world.scan.pk).update(status="rejected", error=message, ood_score=41.5)
    card = staff_client.get(reverse("scan_card", args=[world.scan.pk])).content.decode()
    assert message in card
    assert "Not a brain MRI" in card  # the badge
    assert "Prediction:" not in card
    assert "Radiologist review" not in card
    assert reverse("scans:image", args=[world.scan.pk]) in card  # what was uploaded, to see why
    assert "hx-trigger" not in card  # finished: no more polling
    page = staff_client.get(reverse("case_detail", args=[world.case.pk])).content.decode()
    assert "1 not brain MRI" in page
    history = staff_client.get(reverse("history"), {"status": "rejected"}).context["page"]
    assert [case.pk for case in history.object_list] == [world.case.pk]


def test_add_scans_to_case(staff_client, world, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        response = staff_client.post(reverse("case_add_scans", args=[world.case.pk]), {"files": [png_upload("c.png")]})
    assert response.status_code == 302
    assert world.case.scans.count() == 2


def test_radiologist_review(rad_client, world) -> None:
    finish_scan(world.scan)
    card = rad_client.get(reverse("scan_card", args=[world.scan.pk])).content.decode()
    assert reverse("scan_review", args=[world.scan.pk]) in card
    response = rad_client.post(
        reverse("scan_review", args=[world.scan.pk]), {"reading": "meningioma", "note": "Looks like a cyst"}
    )
    assert response.status_code == 302
    review = ScanReview.objects.get(scan=world.scan)
    assert (review.agrees, review.note) == (False, "Looks like a cyst")


def test_staff_cannot_review(staff_client, world) -> None:
    finish_scan(world.scan)
    card = staff_client.get(reverse("scan_card", args=[world.scan.pk])).content.decode()
    assert reverse("scan_review", args=[world.scan.pk]) not in card
    staff_client.post(reverse("scan_review", args=[world.scan.pk]), {"reading": "agree"})
    assert not ScanReview.objects.filter(scan=world.scan).exists()


@pytest.mark.parametrize(
    ("name", "method", "key"),
    [
        ("case_detail", "get", "case"),
        ("case_add_scans", "post", "case"),
        ("case_summary", "get", "case"),
        ("scan_card", "get", "scan"),
        ("scan_review", "post", "scan"),
    ],
)
def test_another_clinics_objects_are_404(staff_client, other, name: str, method: str, key: str) -> None:
    target = getattr(other, key)
    response = getattr(staff_client, method)(reverse(name, args=[target.pk]))
    assert response.status_code == 404


def test_history_filters_for_another_clinics_patient_is_404(staff_client, other) -> None:
    assert staff_client.get(reverse("history"), {"patient": other.patient.pk}).status_code == 404


def test_history_filters(staff_client, world, other) -> None:
    second = patient_create(created_by=world.staff, mrn="N-777", name="Grace Hopper")
    case_create(created_by=world.staff, patient=second, title="Grace's case")
    finish_scan(world.scan, label="pituitary")

    def titles(**params: str) -> set[str]:
        page = staff_client.get(reverse("history"), params).context["page"]
        return {case.title for case in page.object_list}

    assert titles() == {"north case", "Grace's case"}
    assert titles(q="hopper") == {"Grace's case"}
    assert titles(patient=str(world.patient.pk)) == {"north case"}
    assert titles(label="pituitary") == {"north case"}
    assert titles(label="glioma") == set()
    assert titles(status="empty") == {"Grace's case"}
    assert titles(status="done") == {"north case"}
    assert titles(date_from="2000-01-01", date_to="2999-12-31") == {"north case", "Grace's case"}
    assert titles(date_to="2000-01-01") == set()


def test_history_query_count_is_flat(staff_client, world, django_capture_on_commit_callbacks) -> None:
    def queries_for(page_size_cases: int) -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = staff_client.get(reverse("history"))
        assert len(response.context["page"].object_list) == page_size_cases
        return len(ctx.captured_queries)

    small = queries_for(1)
    for i in range(30):
        case = case_create(created_by=world.staff, patient=world.patient, title=f"more {i}")
        with django_capture_on_commit_callbacks(execute=False):
            (scan,) = scans_upload(case=case, uploaded_by=world.staff, uploads=[png_upload()]).scans
        if i % 2:
            finish_scan(scan)
    assert queries_for(25) == small


def test_healthz(client, db) -> None:
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.content == b"ok"


def test_finished_card_tells_the_page_to_refresh_the_case_summary(staff_client, world) -> None:
    card_url = reverse("scan_card", args=[world.scan.pk])
    assert "HX-Trigger" not in staff_client.get(card_url, headers={"HX-Request": "true"})
    finish_scan(world.scan)
    assert staff_client.get(card_url, headers={"HX-Request": "true"})["HX-Trigger"] == "scanFinished"
    summary = staff_client.get(reverse("case_summary", args=[world.case.pk])).content.decode()
    assert "1 analysed" in summary  # issue 14: "done" reads "analysed"
    assert 'hx-trigger="scanFinished from:body"' in summary


def test_zipped_study_gets_a_study_summary_ranked_by_tumour_probability(staff_client, world) -> None:
    from tests.testkit import dicom as dicomdata

    case = case_create(created_by=world.staff, patient=world.patient, title="MRI head")
    archive = dicomdata.series_zip(dicomdata.training_series(4, patient_id="OTHER-PATIENT-9"))
    response = staff_client.post(
        reverse("case_add_scans", args=[case.pk]),
        {"files": [SimpleUploadedFile("study.zip", archive, content_type="application/zip")]},
        follow=True,
    )
    assert response.status_code == 200
    shown = response.content.decode()
    assert "DICOM study of 4 slice(s) received" in shown  # unpacked by a worker job, not the request
    assert "Skipped 1 file(s): study.zip/DICOMDIR (DICOMDIR (the study&#x27;s index), ignored)" in shown
    assert "Study of 4 slice(s) waiting to be unpacked." in shown
    unpack_study(StudyUpload.objects.get(case=case))
    scans = list(Scan.objects.filter(case=case).order_by("slice_order"))
    assert [s.instance_number for s in scans] == [1, 2, 3, 4]
    # Slice 1: glioma 0.95, 2: no tumour 0.9, 3: glioma 0.75, 4 not analysed yet.
    finish_scan(scans[0], "glioma", 0.95)
    finish_scan(scans[1], "notumor", 0.9)
    finish_scan(scans[2], "glioma", 0.75)
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    summary = page[page.index('id="study-summary"') :]
    assert "3 of 4 slices analysed" in summary
    assert re.search(r'id="study-finding">Glioma', summary)
    ranked = re.findall(r'data-scan="(\d+)"', summary)
    assert ranked == [str(scans[0].pk), str(scans[2].pk), str(scans[1].pk)]
    first, third = scans[0].pk, scans[2].pk
    supporting = f'<a href="#scan-{first}">slice 1</a> (95.0%), <a href="#scan-{third}">slice 3</a>'
    assert f"Supporting slices: {supporting}" in summary
    # The file named another patient: the page says so, and the case still took the scans.
    assert 'id="mrn-mismatch"' in page
    assert "OTHER-PATIENT-9" in page
    assert world.patient.mrn in page
    assert page.index('id="study-summary"') < page.index(f'id="scan-{scans[0].pk}"')
    # The live partial (refreshed when a scan finishes) carries the same summary.
    partial = staff_client.get(reverse("case_summary", args=[case.pk])).content.decode()
    assert 'id="study-summary"' in partial


def test_study_summary_counts_rejected_slices_as_finished_and_says_how_many(staff_client, world) -> None:
    from tests.testkit import dicom as dicomdata

    case = case_create(created_by=world.staff, patient=world.patient, title="MRI head")
    archive = dicomdata.series_zip(dicomdata.training_series(4))
    staff_client.post(
        reverse("case_add_scans", args=[case.pk]),
        {"files": [SimpleUploadedFile("study.zip", archive, content_type="application/zip")]},
    )
    unpack_study(StudyUpload.objects.get(case=case))
    scans = list(Scan.objects.filter(case=case).order_by("slice_order"))
    reject_scan(scans[0])  # e.g. a skull-base slice the gate does not take for a brain MRI slice
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    summary = page[page.index('id="study-summary"') :]
    assert "1 of 4 slices analysed" in summary  # the rejected slice is finished, with no label
    assert "No finding: no slice of this study has been analysed as a brain MRI slice yet." in summary
    finish_scan(scans[1], "glioma", 0.9)
    reject_scan(scans[3])
    summary = staff_client.get(reverse("case_summary", args=[case.pk])).content.decode()
    assert "3 of 4 slices analysed" in summary
    rejected = summary[summary.index('id="study-rejected"') :]
    assert rejected.startswith('id="study-rejected" role="note">2 rejected as not a brain MRI slice')
    assert f'<a href="#scan-{scans[0].pk}">slice 1</a>, <a href="#scan-{scans[3].pk}">slice 4</a>.' in rejected
    assert re.findall(r'data-scan="(\d+)"', summary) == [str(scans[1].pk)]  # only analysed slices are ranked
    assert re.search(r'id="study-finding">Glioma', summary)


def test_single_scan_case_has_no_study_summary(staff_client, world) -> None:
    finish_scan(world.scan)
    page = staff_client.get(reverse("case_detail", args=[world.case.pk])).content.decode()
    assert 'id="study-summary"' not in page
    assert 'id="mrn-mismatch"' not in page


def test_study_of_no_tumour_slices_reads_no_tumour(staff_client, world) -> None:
    from tests.testkit import dicom as dicomdata

    case = case_create(created_by=world.staff, patient=world.patient, title="MRI head")
    uploads = [SimpleUploadedFile(f"{i}.dcm", data) for i, data in
               enumerate(dicomdata.training_series(2, patient_id=world.patient.mrn))]
    assert staff_client.post(reverse("case_add_scans", args=[case.pk]), {"files": uploads}).status_code == 302
    unpack_study(StudyUpload.objects.get(case=case))
    for scan in Scan.objects.filter(case=case):
        finish_scan(scan, "notumor", 0.8)
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert re.search(r'id="study-finding">No tumour', page)
    assert 'id="mrn-mismatch"' not in page
