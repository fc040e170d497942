"""Sign-off: who signs, what must be done first, the lock, addenda, and "unverified" until then."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from apps.cases.models import Case, CaseAddendum
from apps.cases.selectors import case_get, case_reading_summary
from apps.cases.services import case_addendum_add, case_sign
from apps.scans.models import Scan
from apps.scans.services import scan_review, scans_upload
from tests.testkit.data import make_case, upload
from tests.testkit.scans import png_bytes


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _read_all(world) -> None:
    scan_review(scan=world.scan, reviewer=world.radiologist, agrees=False, label="meningioma", note="dural tail")


def test_sign_locks_the_case_and_records_who_and_when(north):
    _read_all(north)
    case = case_sign(case=north.case, signer=north.radiologist, conclusion="  Meningioma, left convexity.  ")
    stored = Case.objects.get(pk=north.case.pk)
    assert stored.is_signed
    assert stored.signed_by == north.radiologist
    assert stored.signed_at is not None
    assert stored.conclusion == "Meningioma, left convexity."
    assert case.signed_at == stored.signed_at
    with pytest.raises(ValidationError, match="addendum"):
        case_sign(case=stored, signer=north.radiologist, conclusion="again")


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_only_radiologists_sign(north, role):
    _read_all(north)
    with pytest.raises(PermissionDenied):
        case_sign(case=north.case, signer=getattr(north, role), conclusion="x")
    response = _api(getattr(north, role)).post(
        reverse("api:case-sign", args=[north.case.pk]), {"conclusion": "x"}, format="json"
    )
    assert response.status_code == 403
    assert not Case.objects.get(pk=north.case.pk).is_signed


def test_every_analysed_scan_needs_a_reading_before_signing(north):
    with pytest.raises(ValidationError, match="1 of 1 have no reading"):
        case_sign(case=north.case, signer=north.radiologist, conclusion="Glioma.")


def test_a_case_with_scans_still_analysing_cannot_be_signed(north, django_capture_on_commit_callbacks):
    case = make_case(north, django_capture_on_commit_callbacks, [("glioma", 0.9), None])
    scan_review(scan=case.scans.filter(status="done").get(), reviewer=north.radiologist, agrees=True)
    with pytest.raises(ValidationError, match="still being analysed"):
        case_sign(case=case, signer=north.radiologist, conclusion="Glioma.")


def test_empty_conclusion_is_refused(north):
    _read_all(north)
    response = _api(north.radiologist).post(
        reverse("api:case-sign", args=[north.case.pk]), {"conclusion": "   "}, format="json"
    )
    assert response.status_code == 400
    assert "conclusion" in response.json()["error"]["fields"]
    assert (
        _api(north.radiologist).post(reverse("api:case-sign", args=[north.case.pk]), {}, format="json").status_code
        == 400
    )


def test_sign_api_contract_and_case_json(north):
    client = _api(north.radiologist)
    before = client.get(reverse("api:case-detail", args=[north.case.pk])).json()
    assert (before["verified"], before["signed_by"], before["signed_at"], before["conclusion"]) == (
        False,
        None,
        None,
        "",
    )
    assert before["scans"][0]["verified"] is False
    _read_all(north)
    response = client.post(reverse("api:case-sign", args=[north.case.pk]), {"conclusion": "Meningioma."}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["verified"] is True
    assert body["signed_by"] == north.radiologist.username
    assert body["signed_at"]
    assert body["conclusion"] == "Meningioma."
    assert body["addenda"] == []
    assert body["scans"][0]["verified"] is True
    assert body["scans"][0]["review"]["label"] == "meningioma"
    again = client.post(reverse("api:case-sign", args=[north.case.pk]), {"conclusion": "Changed."}, format="json")
    assert again.status_code == 400


def test_new_scans_on_a_signed_case_need_an_addendum(north, django_capture_on_commit_callbacks):
    _read_all(north)
    case_sign(case=north.case, signer=north.radiologist, conclusion="Meningioma.")
    case = Case.objects.get(pk=north.case.pk)
    with pytest.raises(ValidationError) as error:
        scans_upload(case=case, uploaded_by=north.radiologist, uploads=[upload(png_bytes(), "late.png")])
    assert "addendum" in error.value.message_dict
    assert case.scans.count() == 1
    with django_capture_on_commit_callbacks(execute=False):
        (late,) = scans_upload(
            case=case,
            uploaded_by=north.radiologist,
            uploads=[upload(png_bytes(), "late.png")],
            addendum="Contrast series.",
        ).scans
    assert [a.text for a in case.addenda.all()] == ["Contrast series."]
    # The late scan is not covered by the signature: unverified until a radiologist reads it.
    assert not Scan.objects.select_related("case").get(pk=late.pk).is_verified
    assert Scan.objects.select_related("case").get(pk=north.scan.pk).is_verified


def test_api_upload_to_a_signed_case_without_addendum_is_400(north):
    _read_all(north)
    case_sign(case=north.case, signer=north.radiologist, conclusion="Meningioma.")
    response = _api(north.radiologist).post(
        reverse("api:case-scans", args=[north.case.pk]), {"file": upload(png_bytes(), "late.png")}, format="multipart"
    )
    assert response.status_code == 400
    assert "addendum" in response.json()["error"]["fields"]


def test_addenda_only_on_signed_cases_and_kept_in_order(north):
    with pytest.raises(ValidationError):
        case_addendum_add(case=north.case, author=north.radiologist, text="too early")
    _read_all(north)
    case_sign(case=north.case, signer=north.radiologist, conclusion="Meningioma.")
    case = Case.objects.get(pk=north.case.pk)
    with pytest.raises(ValidationError):
        case_addendum_add(case=case, author=north.radiologist, text="   ")
    case_addendum_add(case=case, author=north.radiologist, text="First.")
    case_addendum_add(case=case, author=north.radiologist, text="Second.")
    assert list(CaseAddendum.objects.filter(case=case).values_list("text", flat=True)) == ["First.", "Second."]
    body = _api(north.staff).get(reverse("api:case-detail", args=[case.pk])).json()
    assert [a["text"] for a in body["addenda"]] == ["First.", "Second."]


def test_addendum_from_another_clinic_is_refused(north, south):
    _read_all(north)
    case_sign(case=north.case, signer=north.radiologist, conclusion="Meningioma.")
    with pytest.raises(PermissionDenied):
        case_addendum_add(case=Case.objects.get(pk=north.case.pk), author=south.radiologist, text="x")


def test_reading_summary_prefills_the_conclusion(north, django_capture_on_commit_callbacks):
    case = make_case(north, django_capture_on_commit_callbacks, [("glioma", 0.95), ("notumor", 0.9)])
    first, second = case.scans.order_by("id")
    scan_review(scan=first, reviewer=north.radiologist, agrees=True)
    scan_review(scan=second, reviewer=north.radiologist, agrees=False, label="pituitary", note="small adenoma")
    summary = case_reading_summary(case=case_get(user=north.radiologist, case_id=case.pk))
    lines = summary.splitlines()
    assert lines[0] == "1. s0.png: Glioma, agrees with the model."
    assert lines[1] == "2. s1.png: Pituitary tumour, corrects the model (model No tumour 90.0 %). Note: small adenoma"


def test_admin_shows_signature_and_addenda_read_only(north, south, client):
    _read_all(north)
    case_sign(case=north.case, signer=north.radiologist, conclusion="Meningioma.")
    case_addendum_add(case=Case.objects.get(pk=north.case.pk), author=north.radiologist, text="Kept as written.")
    client.force_login(north.admin)
    page = client.get(reverse("admin:cases_case_change", args=[north.case.pk]))
    assert page.status_code == 200
    form_fields = page.context["adminform"].form.fields
    assert not {"signed_by", "signed_at", "conclusion"} & set(form_fields)
    html = page.content.decode()
    assert "Kept as written." in html
    assert south.radiologist.username not in html
    (addenda,) = [f for f in page.context["inline_admin_formsets"] if f.opts.model is CaseAddendum]
    assert not addenda.has_change_permission
    assert not addenda.has_add_permission


def test_sign_addendum_and_exports_are_audited(north):
    from apps.audit.models import AuditEvent
    from apps.cases.reports import case_report_export
    from apps.scans.agreement import agreement_readings_csv

    _read_all(north)
    case_sign(case=north.case, signer=north.radiologist, conclusion="Meningioma.")
    case_addendum_add(case=Case.objects.get(pk=north.case.pk), author=north.radiologist, text="Later.")
    case_report_export(user=north.staff, case_id=north.case.pk)
    list(agreement_readings_csv(user=north.admin))
    events = AuditEvent.objects.filter(clinic=north.clinic, action__in=["review", "export"]).order_by("id")
    rows = [(e.actor_username, e.action, e.object_type, e.detail) for e in events]
    assert rows[-4:] == [
        (north.radiologist.username, "review", "case", "signed"),
        (north.radiologist.username, "review", "case", "addendum"),
        (north.staff.username, "export", "case", "pdf report"),
        (north.admin.username, "export", "readings", "labelled readings csv"),
    ]


# --- A signed case is locked everywhere (issue 15, item 3) ---------------------------------


def _signed(north) -> Case:
    _read_all(north)
    case_sign(case=north.case, signer=north.radiologist, conclusion="Meningioma.")
    return Case.objects.get(pk=north.case.pk)


def _locked_columns(case_id: int) -> tuple:
    return Case.objects.filter(pk=case_id).values_list("patient_id", "title", "clinical_notes", "conclusion").get()


def test_clinic_admin_cannot_move_or_rewrite_a_signed_case(north, client):
    from apps.patients.services import patient_create

    case = _signed(north)
    other = patient_create(created_by=north.staff, mrn="NORTH-002", name="Other Patient")
    before = _locked_columns(case.pk)
    client.force_login(north.admin)
    url = reverse("admin:cases_case_change", args=[case.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert b"locked" in page.content
    assert b'name="title"' not in page.content  # shown read-only
    response = client.post(
        url, {"patient": other.pk, "title": "Rewritten", "clinical_notes": "Rewritten", "scans-TOTAL_FORMS": "0",
              "scans-INITIAL_FORMS": "0", "addenda-TOTAL_FORMS": "0", "addenda-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert response.status_code == 403
    assert _locked_columns(case.pk) == before


def test_an_unsigned_case_is_still_editable_in_the_admin(north, client):
    client.force_login(north.admin)
    page = client.get(reverse("admin:cases_case_change", args=[north.case.pk]))
    assert b'name="title"' in page.content


def test_a_signed_case_refuses_changes_through_any_save(north):
    from apps.cases.models import SignedCaseLocked
    from apps.patients.services import patient_create

    case = _signed(north)
    other = patient_create(created_by=north.staff, mrn="NORTH-002", name="Other Patient")
    for change in ({"patient": other}, {"title": "x"}, {"clinical_notes": "x"}, {"conclusion": "Glioma."}):
        stale = Case.objects.get(pk=case.pk)
        for name, value in change.items():
            setattr(stale, name, value)
        with pytest.raises(SignedCaseLocked):
            stale.save()
    assert _locked_columns(case.pk) == (north.patient.pk, case.title, case.clinical_notes, "Meningioma.")
    # Soft deletion (and restore) remain: they do not touch what the signature covers.
    from apps.cases.services import case_restore, case_soft_delete

    case_soft_delete(case=case, by=north.admin)
    case_restore(case=case, by=north.admin)


def test_staff_cannot_add_an_addendum_through_the_page_upload(north, client):
    case = _signed(north)
    client.force_login(north.staff)
    response = client.post(
        reverse("case_add_scans", args=[case.pk]), {"files": upload(png_bytes(), "late.png"), "addendum": "Mine."}
    )
    assert response.status_code == 403
    assert b"Only radiologists" in response.content
    assert not case.addenda.exists()
    assert case.scans.count() == 1
    with pytest.raises(PermissionDenied):
        case_addendum_add(case=case, author=north.staff, text="Mine.")
    api = _api(north.staff).post(
        reverse("api:case-scans", args=[case.pk]),
        {"file": upload(png_bytes(), "late.png"), "addendum": "Mine."}, format="multipart",
    )  # fmt: skip
    assert api.status_code == 403
    assert not case.addenda.exists()
    assert case.scans.count() == 1
