"""The radiologist's desk as pages: worklist, reading form, sign-off, addenda, timeline,
"unverified" until signed, and one label vocabulary on every page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.cases.models import Case, CaseAddendum
from apps.cases.services import case_create, case_sign
from apps.scans.models import Scan, ScanReview
from apps.scans.services import scan_review, scans_upload
from tests.testkit.data import finish_scan, png_upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def rad_client(client, world):
    finish_scan(world.scan, "notumor", 0.6)
    client.force_login(world.radiologist)
    return client


@pytest.fixture
def staff_client(client, world):
    finish_scan(world.scan, "notumor", 0.6)
    client.force_login(world.staff)
    return client


@pytest.mark.parametrize("name", ["worklist", "agreement"])
def test_new_pages_need_login(client, name) -> None:
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_worklist_page_lists_the_case_and_counts(rad_client, world, other) -> None:
    finish_scan(other.scan, "glioma", 0.5)  # another clinic's: never listed
    html = rad_client.get(reverse("worklist")).content.decode()
    assert reverse("case_detail", args=[world.case.pk]) in html
    assert reverse("case_detail", args=[other.case.pk]) not in html
    assert "No tumour" in html
    assert "low confidence" in html
    assert "unverified" in html
    assert "Started by me" in html  # a radiologist's own count
    filtered = rad_client.get(reverse("worklist"), {"label": "glioma"}).content.decode()
    assert reverse("case_detail", args=[world.case.pk]) not in filtered
    assert "Nothing waits for sign-off with these filters" in filtered


def test_dashboard_shows_the_worklist_counts(rad_client) -> None:
    html = rad_client.get(reverse("dashboard")).content.decode()
    assert "Waiting for sign-off" in html
    assert reverse("worklist") in html


def test_case_page_reading_form_offers_corrections_not_the_models_own_label(rad_client, world) -> None:
    html = rad_client.get(reverse("case_detail", args=[world.case.pk])).content.decode()
    assert "Agree: No tumour" in html
    for value in ("glioma", "meningioma", "pituitary", "other"):
        assert f'name="reading" value="{value}"' in html
    assert 'name="reading" value="notumor"' not in html
    assert "Unverified." in html  # the banner
    assert reverse("case_sign", args=[world.case.pk]) in html
    assert reverse("patient_timeline", args=[world.patient.pk]) in html
    assert "Notumor" not in html


def test_correcting_then_signing_from_the_page(rad_client, world) -> None:
    response = rad_client.post(
        reverse("scan_review", args=[world.scan.pk]), {"reading": "pituitary", "note": "microadenoma"}
    )
    assert response.status_code == 302
    review = Scan.objects.get(pk=world.scan.pk).review
    assert (review.label, review.agrees, review.note) == ("pituitary", False, "microadenoma")

    # The sign form comes pre-filled with the reading.
    html = rad_client.get(reverse("case_detail", args=[world.case.pk])).content.decode()
    reading = "Pituitary tumour, corrects the model (model No tumour 60.0 %). Note: microadenoma"
    assert f"{world.scan.original_filename}: {reading}" in html

    response = rad_client.post(reverse("case_sign", args=[world.case.pk]), {"conclusion": "Pituitary microadenoma."})
    assert response.status_code == 302
    case = Case.objects.get(pk=world.case.pk)
    assert case.signed_by == world.radiologist
    html = rad_client.get(reverse("case_detail", args=[world.case.pk])).content.decode()
    assert "Signed by" in html
    assert "Pituitary microadenoma." in html
    assert reverse("case_sign", args=[world.case.pk]) not in html  # signed once
    assert reverse("case_addendum", args=[world.case.pk]) in html
    assert 'name="addendum"' in html  # a new reading or new scans need one
    assert "verified" in html
    assert "Unverified." not in html
    worklist = rad_client.get(reverse("worklist")).content.decode()
    assert reverse("case_detail", args=[world.case.pk]) not in worklist


def test_sign_errors_come_back_on_the_form(rad_client, world) -> None:
    response = rad_client.post(reverse("case_sign", args=[world.case.pk]), {"conclusion": "No tumour."})
    assert response.status_code == 400
    assert "Review every analysed scan before signing" in response.content.decode()
    response = rad_client.post(reverse("case_sign", args=[world.case.pk]), {"conclusion": ""})
    assert response.status_code == 400
    assert not Case.objects.get(pk=world.case.pk).is_signed


def test_staff_get_no_reading_or_sign_controls_and_cannot_post_them(staff_client, world) -> None:
    html = staff_client.get(reverse("case_detail", args=[world.case.pk])).content.decode()
    assert 'name="reading"' not in html
    assert reverse("case_sign", args=[world.case.pk]) not in html
    assert "Not read by a radiologist yet." in html
    staff_client.post(reverse("scan_review", args=[world.scan.pk]), {"reading": "agree"})
    staff_client.post(reverse("case_sign", args=[world.case.pk]), {"conclusion": "x"})
    assert not ScanReview.objects.exists()
    assert not Case.objects.get(pk=world.case.pk).is_signed


def test_addendum_and_late_scans_on_a_signed_case(rad_client, world, django_capture_on_commit_callbacks) -> None:
    scan_review(scan=Scan.objects.get(pk=world.scan.pk), reviewer=world.radiologist, agrees=True)
    case_sign(case=world.case, signer=world.radiologist, conclusion="No tumour.")
    response = rad_client.post(reverse("case_addendum", args=[world.case.pk]), {"text": "Follow-up in 6 months."})
    assert response.status_code == 302
    # Upload without an addendum: refused, with the reason on the form.
    response = rad_client.post(reverse("case_add_scans", args=[world.case.pk]), {"files": [png_upload("late.png")]})
    assert response.status_code == 400
    assert world.case.scans.count() == 1
    with django_capture_on_commit_callbacks(execute=False):
        response = rad_client.post(
            reverse("case_add_scans", args=[world.case.pk]),
            {"files": [png_upload("late.png")], "addendum": "Contrast series arrived."},
        )
    assert response.status_code == 302
    texts = list(CaseAddendum.objects.filter(case=world.case).values_list("text", flat=True))
    assert texts == ["Follow-up in 6 months.", "Contrast series arrived."]
    html = rad_client.get(reverse("case_detail", args=[world.case.pk])).content.decode()
    assert "Follow-up in 6 months." in html
    assert "Contrast series arrived." in html


def test_review_history_is_shown(rad_client, world) -> None:
    scan_review(scan=Scan.objects.get(pk=world.scan.pk), reviewer=world.radiologist, agrees=True, note="first look")
    scan_review(
        scan=Scan.objects.get(pk=world.scan.pk), reviewer=world.radiologist, agrees=False, label="other", note="motion"
    )
    html = rad_client.get(reverse("scan_card", args=[world.scan.pk])).content.decode()
    assert "Other / non-diagnostic" in html
    assert "Earlier readings (1)" in html
    assert "first look" in html


def test_patient_timeline(rad_client, world, django_capture_on_commit_callbacks) -> None:
    scan_review(scan=Scan.objects.get(pk=world.scan.pk), reviewer=world.radiologist, agrees=True)
    case_sign(case=world.case, signer=world.radiologist, conclusion="No tumour seen.")
    later = case_create(created_by=world.staff, patient=world.patient, title="follow-up")
    with django_capture_on_commit_callbacks(execute=False):
        scans_upload(case=later, uploaded_by=world.staff, uploads=[png_upload("f.png")])
    html = rad_client.get(reverse("patient_timeline", args=[world.patient.pk])).content.decode()
    assert html.index("follow-up") < html.index("No tumour seen.")  # newest first
    assert "No conclusion yet: not signed." in html
    assert reverse("case_detail", args=[later.pk]) in html


def test_one_vocabulary_on_the_history_filter(rad_client) -> None:
    html = rad_client.get(reverse("history")).content.decode()
    assert '<option value="notumor">No tumour</option>' in html
    assert '<option value="pituitary">Pituitary tumour</option>' in html
    assert "Notumor" not in html


def test_history_and_dashboard_mark_unsigned_results_unverified(rad_client, world) -> None:
    for name in ("history", "dashboard"):
        html = rad_client.get(reverse(name)).content.decode()
        assert '<span class="unverified-tag">unverified</span>' in html, name
    scan_review(scan=Scan.objects.get(pk=world.scan.pk), reviewer=world.radiologist, agrees=True)
    case_sign(case=world.case, signer=world.radiologist, conclusion="No tumour.")
    html = rad_client.get(reverse("history")).content.decode()
    assert '<span class="unverified-tag">unverified</span>' not in html
    assert '<span class="verified-tag">signed</span>' in html
