"""Pages as a radiologist and clinic staff meet them in a day (issue 14), through Django's test
client; the browser-side checks are in tests/e2e/test_daily_browser.py."""

from __future__ import annotations

import re

from django.urls import reverse

from apps.cases.models import CaseStatus
from apps.cases.selectors import case_get
from apps.cases.services import case_create
from apps.scans.models import Scan
from apps.scans.services import scans_upload
from tests.testkit.data import PixelAnalyzer, case_with_results, finish_scan, png_upload
from tests.testkit.documents import pdf_text


def _badge(html: str) -> str:
    head = html[html.index('id="case-summary"') :]
    return re.search(r'<span class="badge [a-z]+">([^<]+)</span>', head).group(1)


def test_rejected_images_do_not_relabel_a_case_with_analysed_slices(
    staff_client, world, django_capture_on_commit_callbacks
) -> None:
    results = [("glioma", 0.9), ("glioma", 0.8), ("glioma", 0.95), "rejected", "rejected"]
    case, _ = case_with_results(world, django_capture_on_commit_callbacks, results)
    assert case_get(user=world.staff, case_id=case.pk).status == CaseStatus.DONE
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert _badge(page) != "Not brain MRI"
    assert "2 not brain MRI" in page  # still counted
    history = staff_client.get(reverse("history"), {"status": "rejected"}).context["page"]
    assert case.pk not in [c.pk for c in history.object_list]
    # Only rejected images: that case is the one called "not brain MRI".
    only_rejected, _ = case_with_results(world, django_capture_on_commit_callbacks, ["rejected", "rejected"])
    page = staff_client.get(reverse("case_detail", args=[only_rejected.pk])).content.decode()
    assert _badge(page) == "Not brain MRI"


def test_study_summary_flags_slices_that_name_different_tumours(
    staff_client, world, django_capture_on_commit_callbacks
) -> None:
    results = [("glioma", 0.9993), ("meningioma", 0.9992), ("pituitary", 0.9991), ("notumor", 0.95)]
    case, scans = case_with_results(world, django_capture_on_commit_callbacks, results)
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    summary = page[page.index('id="study-summary"') :]
    assert 'id="study-discordant"' in summary
    assert "Most likely finding" not in summary
    assert 'id="study-finding"' not in summary
    assert "Supporting slices" not in summary
    for scan, name in zip(scans[:3], ("Glioma", "Meningioma", "Pituitary tumour"), strict=True):
        assert f'<a href="#scan-{scan.pk}">Slice' in summary
        assert f"{name} (99.9%)" in summary
    # Tumour slices that agree (beside a no-tumour one) still give the finding.
    results = [("glioma", 0.99), ("glioma", 0.9), ("notumor", 0.9)]
    agreeing, _ = case_with_results(world, django_capture_on_commit_callbacks, results)
    summary = staff_client.get(reverse("case_summary", args=[agreeing.pk])).content.decode()
    assert 'id="study-discordant"' not in summary
    assert re.search(r'id="study-finding">Glioma', summary)


def test_a_clinic_admin_added_in_the_admin_can_open_the_admin(client, world) -> None:
    """Issue 14, item 6: the role "Clinic admin" is what opens the admin; nobody ticks "Staff
    status" by hand (and a demoted admin loses it)."""
    from apps.accounts.models import Role, User
    from tests.testkit.data import PASSWORD

    client.force_login(world.admin)
    response = client.post(
        reverse("admin:accounts_user_add"),
        {"username": "new-admin", "password1": "A-long-pass-991", "password2": "A-long-pass-991",
         "usable_password": "true", "clinic": world.clinic.pk, "role": Role.CLINIC_ADMIN},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    created = User.objects.get(username="new-admin")
    assert created.is_staff
    client.logout()
    assert client.login(username="new-admin", password="A-long-pass-991")
    assert client.get(reverse("admin:index")).status_code == 200
    # Demoted to staff in the admin: no admin any more.
    client.logout()
    client.login(username=world.admin.username, password=PASSWORD)
    change = client.get(reverse("admin:accounts_user_change", args=[created.pk])).context["adminform"].form
    skipped = ("password", "groups", "user_permissions")
    data = {k: v for k, v in change.initial.items() if v is not None and k not in skipped}
    data.update(role=Role.CLINIC_STAFF, clinic=world.clinic.pk, last_login="", date_joined_0="2026-01-01",
                date_joined_1="10:00:00")  # fmt: skip
    data.pop("date_joined", None)
    response = client.post(reverse("admin:accounts_user_change", args=[created.pk]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    created.refresh_from_db()
    assert not created.is_staff


def test_a_deactivated_user_is_told_so_at_login(client, world) -> None:
    from tests.testkit.data import PASSWORD

    world.staff.is_active = False
    world.staff.save()
    response = client.post(reverse("login"), {"username": world.staff.username, "password": PASSWORD})
    assert response.status_code == 200
    assert "This account has been deactivated." in response.content.decode()
    # A wrong password for the same account says nothing about the account.
    response = client.post(reverse("login"), {"username": world.staff.username, "password": "wrong-one"})
    assert "deactivated" not in response.content.decode()
    assert "Please enter a correct username and password" in response.content.decode()


def test_a_birth_date_in_the_future_is_refused_and_a_patient_can_be_edited(staff_client, world, other) -> None:
    import datetime

    from django.utils import timezone

    from apps.audit.models import AuditEvent

    tomorrow = (timezone.localdate() + datetime.timedelta(days=1)).isoformat()
    response = staff_client.post(reverse("patients"), {"mrn": "F-1", "name": "Future Born", "date_of_birth": tomorrow})
    assert response.status_code == 400
    assert "The date of birth is in the future." in response.content.decode()
    assert not world.patient.__class__.objects.filter(mrn="F-1").exists()

    url = reverse("patient_edit", args=[world.patient.pk])
    page = staff_client.get(url).content.decode()
    assert f'value="{world.patient.mrn}"' in page
    assert f'max="{timezone.localdate().isoformat()}"' in page
    response = staff_client.post(url, {"mrn": world.patient.mrn, "name": "North Renamed", "date_of_birth": tomorrow})
    assert response.status_code == 400
    assert "The date of birth is in the future." in response.content.decode()
    edited = {"mrn": world.patient.mrn, "name": "North Renamed", "date_of_birth": "1960-02-03"}
    response = staff_client.post(url, edited)
    assert response.status_code == 302
    world.patient.refresh_from_db()
    assert (world.patient.name, str(world.patient.date_of_birth)) == ("North Renamed", "1960-02-03")
    event = AuditEvent.objects.filter(object_type="patient", object_id=str(world.patient.pk)).order_by("-pk").first()
    assert event.detail == "edited: date_of_birth, name"
    # Another clinic's MRN is not "taken"; this clinic's is.
    assert staff_client.post(url, {"mrn": other.patient.mrn, "name": "N"}).status_code == 302
    from apps.patients.services import patient_create

    patient_create(created_by=world.staff, mrn="TAKEN-1", name="Someone")
    response = staff_client.post(url, {"mrn": "TAKEN-1", "name": "N"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()


def test_an_upload_over_the_limit_gets_the_sites_page_with_the_way_back(staff_client, world) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mri.intake.limits import MAX_UPLOAD_BYTES

    form = reverse("case_detail", args=[world.case.pk])
    big = SimpleUploadedFile("huge.jpg", b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES + 1024), content_type="image/jpeg")
    response = staff_client.post(
        reverse("case_add_scans", args=[world.case.pk]), {"files": [big]}, HTTP_REFERER=f"http://testserver{form}"
    )
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "The upload is too large" in html
    assert "huge.jpg: the file is larger than 25 MB" in html
    assert f'href="http://testserver{form}"' in html
    assert 'class="topbar"' in html  # the site's own page, with its navigation


def test_a_staff_member_on_the_agreement_page_gets_the_sites_403(staff_client) -> None:
    response = staff_client.get(reverse("agreement"))
    assert response.status_code == 403
    html = response.content.decode()
    assert "Only radiologists and clinic admins see the model&#x27;s agreement." in html
    assert 'class="topbar"' in html


def test_cards_say_it_in_words_and_hide_the_engineering(
    staff_client, world, django_capture_on_commit_callbacks
) -> None:
    """Issue 14, item 11."""
    results = [("glioma", 0.9)] * 3 + [("notumor", 0.8)]
    case, scans = case_with_results(world, django_capture_on_commit_callbacks, results)
    html = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    card = html[html.index(f'id="scan-{scans[0].pk}"') :]
    card = card[: card.index("</article>")]
    assert '<span class="badge done">Analysed</span>' in card
    details = card[card.index('<details class="tech small">') :]
    assert "Running the model" in details  # the timings, in words, behind the toggle
    # The score beside the threshold it was held against, and which gate judged it.
    assert "0.800 (higher is less like them; rejected above 2.500)" in details
    assert PixelAnalyzer.ood_gate[:12] in details
    # A score just under its threshold never reads equal to it: as many decimals as tell them apart.
    Scan.objects.filter(pk=scans[0].pk).update(ood_score=2.26519, ood_threshold=2.26521)
    html = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert "2.26519 (higher is less like them; rejected above 2.26521)" in html
    assert "Gradcam" not in card
    assert "Inference" not in card
    rejected, _ = case_with_results(world, django_capture_on_commit_callbacks, ["rejected"])
    html = staff_client.get(reverse("case_detail", args=[rejected.pk])).content.decode()
    assert "This does not look like a brain MRI slice, so no tumour label is given." in html
    said = html[: html.index('<details class="tech small"><summary>Technical details</summary><p>')]
    assert "out-of-distribution score" not in said[said.index("case-summary") :]
    # Queued a moment ago: "just now", not "0 minutes ago".
    html = staff_client.get(reverse("scan_card", args=[world.scan.pk])).content.decode()
    assert "queued just now" in html
    assert "0 minutes" not in html
    # The dashboard's list names each prediction once, with how many.
    dashboard = staff_client.get(reverse("dashboard")).content.decode()
    assert "Glioma ×3, No tumour" in dashboard
    assert "Glioma, Glioma" not in dashboard


def test_favicon_and_skip_link(staff_client) -> None:
    html = staff_client.get(reverse("dashboard")).content.decode()
    assert 'rel="icon"' in html
    assert html.index('class="skip-link" href="#main"') < html.index('class="topbar"')
    assert '<main id="main"' in html
    response = staff_client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith(".svg")


def test_patient_search_for_the_case_form(staff_client, world, other) -> None:
    """Issue 14, item 9: the case form's patient is found by typing, within the clinic."""
    from apps.patients.models import Patient
    from apps.patients.services import patient_create

    for i in range(30):
        patient_create(created_by=world.staff, mrn=f"SMITH-{i:02d}", name=f"Sam Smith {i:02d}")
    html = staff_client.get(reverse("patient_search"), {"q": "smith"}).content.decode()
    assert html.count('class="patient-option"') == 20  # capped
    html = staff_client.get(reverse("patient_search"), {"q": "SMITH-07"}).content.decode()
    assert html.count('class="patient-option"') == 1
    assert "Sam Smith 07" in html
    from apps.audit.models import AuditEvent  # the read names the patient shown, as other lists do
    shown = Patient.objects.get(mrn="SMITH-07")
    event = AuditEvent.objects.filter(object_type="patient", action="view").latest("pk")
    assert event.detail == f"search p1: {shown.pk}"
    elsewhere = staff_client.get(reverse("patient_search"), {"q": other.patient.mrn}).content.decode()
    assert other.patient.name not in elsewhere
    form = staff_client.get(reverse("case_new"), {"patient": world.patient.pk}).content.decode()
    assert "<select" not in form
    assert f'value="{world.patient.name} ({world.patient.mrn})"' in form
    assert f'type="hidden" name="patient" value="{world.patient.pk}"' in form


def test_times_are_in_the_clinics_zone_named_everywhere(client, world) -> None:
    """Issue 14, item 8: a clinic in Berlin reads 13:00 CET for a case opened at 12:00 UTC, on
    the pages, in the PDF, in the CSV and in the admin."""
    import datetime

    from apps.cases.models import Case
    from apps.cases.reports import case_report_export
    from apps.scans.models import ScanReview
    from apps.scans.services import scan_review

    world.clinic.time_zone = "Europe/Berlin"
    world.clinic.save()
    opened = datetime.datetime(2026, 1, 15, 12, 0, tzinfo=datetime.UTC)
    Case.objects.filter(pk=world.case.pk).update(created_at=opened)
    scan = finish_scan(world.scan, "glioma", 0.9)
    scan_review(scan=scan, reviewer=world.radiologist, agrees=False, label="meningioma")
    ScanReview.objects.filter(scan=scan).update(reviewed_at=opened + datetime.timedelta(minutes=30))

    client.force_login(world.radiologist)
    page = client.get(reverse("case_detail", args=[world.case.pk])).content.decode()
    assert "2026-01-15 13:00 CET" in page  # opened
    assert "2026-01-15 13:30 CET" in page  # the reading
    assert "12:00" not in page
    history = client.get(reverse("history")).content.decode()
    assert "2026-01-15 13:00 CET" in history

    pdf = case_report_export(user=world.radiologist, case_id=world.case.pk).pdf
    text = pdf_text(pdf)
    assert "2026-01-15 13:00 CET" in text
    assert "2026-01-15 13:30 CET" in text

    csv_text = b"".join(client.get(reverse("api:agreement-readings")).streaming_content).decode()
    assert "2026-01-15T13:30:00+01:00" in csv_text

    client.force_login(world.admin)
    admin_list = client.get(reverse("admin:cases_case_changelist")).content.decode()
    assert "2026-01-15 13:00 CET" in admin_list


def test_staff_remove_a_wrong_upload_softly_with_a_reason(staff_client, world, django_capture_on_commit_callbacks):
    """Issue 14, item 9: a wrongly uploaded scan is removed (hidden everywhere, kept, audited)."""
    from apps.audit.models import AuditEvent
    from apps.scans.models import Scan

    case, scans = case_with_results(world, django_capture_on_commit_callbacks, [("glioma", 0.9), ("notumor", 0.8)])
    url = reverse("scan_remove", args=[scans[1].pk])
    response = staff_client.post(url, {"reason": ""}, follow=True)
    assert "Say why the scan is removed" in response.content.decode()
    assert Scan.objects.filter(pk=scans[1].pk).exists()
    response = staff_client.post(url, {"reason": "another patient's slice"}, follow=True)
    assert "removed from the case" in response.content.decode()
    assert not Scan.objects.filter(pk=scans[1].pk).exists()  # gone from every page, count and API
    kept = Scan.all_objects.get(pk=scans[1].pk)
    assert (kept.removed_by, kept.removed_reason) == (world.staff, "another patient's slice")
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert f'id="scan-{scans[1].pk}"' not in page
    assert "1 (1 analysed" in page
    assert staff_client.get(reverse("scan_card", args=[scans[1].pk])).status_code == 404
    assert staff_client.get(reverse("scans:image", args=[scans[1].pk])).status_code == 404
    # The removal's own event (the refused reads above are audited too, as denied).
    removal = AuditEvent.objects.filter(object_type="scan", object_id=str(scans[1].pk), action="delete")
    assert removal.get().detail == "scan removed: another patient's slice"


def test_a_scan_still_being_analysed_cannot_be_removed(staff_client, world, django_capture_on_commit_callbacks):
    """A worker owns a queued or processing scan: removing it then would strand its analysis."""
    from apps.scans.models import Scan
    from apps.scans.services import scan_claim

    case = case_create(created_by=world.staff, patient=world.patient, title="Study")
    with django_capture_on_commit_callbacks(execute=False):
        queued, processing = scans_upload(
            case=case, uploaded_by=world.staff, uploads=[png_upload("q.png"), png_upload("p.png")]
        ).scans
    assert scan_claim(scan_id=processing.pk) is not None
    for scan in (queued, processing):
        response = staff_client.post(reverse("scan_remove", args=[scan.pk]), {"reason": "duplicate"}, follow=True)
        assert "still being analysed" in response.content.decode()
        assert Scan.objects.filter(pk=scan.pk).exists()


def test_a_study_naming_another_patient_is_moved_to_that_patient(
    staff_client, world, django_capture_on_commit_callbacks
):
    """Issue 14, item 9: the study's Patient ID is another patient's MRN: move the case there."""
    from apps.patients.services import patient_create
    from tests.testkit import dicom as dicomdata
    from tests.testkit.data import unpack, upload

    right = patient_create(created_by=world.staff, mrn="RIGHT-7", name="Rita Right")
    case = case_create(created_by=world.staff, patient=world.patient, title="Wrong patient")
    slices = dicomdata.training_series(2, patient_id="right-7")
    files = [upload(d, f"{i}.dcm", "application/dicom") for i, d in enumerate(slices)]
    with django_capture_on_commit_callbacks(execute=False):  # the study job unpacks it here and now
        unpack(scans_upload(case=case, uploaded_by=world.staff, uploads=files))
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert "Move this case to Rita Right (MRN RIGHT-7)" in page
    response = staff_client.post(reverse("case_move", args=[case.pk]), {"patient": right.pk}, follow=True)
    assert "Case moved to Rita Right" in response.content.decode()
    case.refresh_from_db()
    assert case.patient == right
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert 'id="mrn-mismatch"' not in page
