"""Text burnt into a scan's pixels (issue 15, item 6): the worker holds the scan before analysis,
with the real detector (Tesseract) on real scans with a name drawn in, JPEG, PNG and DICOM;
the card and the API show it; a clinic admin or radiologist releases it to analysis or
discards it, audited; clinic staff may not; the case cannot be signed meanwhile."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.cases.services import case_sign
from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_upload
from tests.testkit import dicom as dicomdata
from tests.testkit.data import PixelAnalyzer, unpack, upload
from tests.testkit.scans import real_scan_bytes, with_burnt_text
from workers import tasks


@pytest.fixture
def analyzer(monkeypatch):
    """The model stand-in: the text check in front of it is the real one."""
    stand_in = PixelAnalyzer(label="glioma")
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: stand_in)
    return stand_in


def _png(jpeg: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("L").save(out, format="PNG")
    return out.getvalue()


def _submit(world, capture, data: bytes, name: str, content_type: str) -> Scan:
    """One uploaded scan, stored; a DICOM file through the study job (ingest_study) run here."""
    with capture(execute=False):
        (scan,) = unpack(
            scans_upload(case=world.case, uploaded_by=world.staff, uploads=[upload(data, name, content_type)])
        ).scans
    return scan


@pytest.fixture
def held(north, django_capture_on_commit_callbacks, analyzer, media_root):
    scan = _submit(north, django_capture_on_commit_callbacks, with_burnt_text(real_scan_bytes("glioma", 1)),
                   "named.jpg", "image/jpeg")  # fmt: skip
    assert tasks.analyze_scan(scan.pk) == "held"
    return Scan.objects.get(pk=scan.pk)


def test_a_jpeg_with_a_name_burnt_in_is_held_not_analysed(held, analyzer):
    assert held.status == ScanStatus.HELD
    assert "Text burnt into the image" in held.error
    assert analyzer.calls == 0
    assert not hasattr(held, "prediction") or Scan.objects.filter(pk=held.pk, prediction__isnull=False).count() == 0


@pytest.mark.parametrize("kind", ["png", "dicom"])
def test_png_and_dicom_with_a_name_burnt_in_are_held(kind, north, django_capture_on_commit_callbacks, analyzer,
                                                     media_root):  # fmt: skip
    burnt = with_burnt_text(real_scan_bytes("meningioma", 2))
    if kind == "png":
        scan = _submit(north, django_capture_on_commit_callbacks, _png(burnt), "named.png", "image/png")
    else:
        data = dicomdata.mr_slice_from_jpeg(burnt, identity=dicomdata.Identity(patient_id=north.patient.mrn))
        scan = _submit(north, django_capture_on_commit_callbacks, data, "named.dcm", "application/dicom")
    assert tasks.analyze_scan(scan.pk) == "held"
    assert Scan.objects.get(pk=scan.pk).status == ScanStatus.HELD
    assert analyzer.calls == 0


def test_the_same_scans_without_text_are_analysed(north, django_capture_on_commit_callbacks, analyzer, media_root):
    scan = _submit(north, django_capture_on_commit_callbacks, real_scan_bytes("glioma", 1), "clean.jpg", "image/jpeg")
    assert tasks.analyze_scan(scan.pk) == "done"
    assert analyzer.calls == 1


@pytest.mark.parametrize("batch_preferred", [True, False], ids=["one batch", "lanes"])
def test_a_study_batch_holds_only_the_named_slice(
    batch_preferred, north, django_capture_on_commit_callbacks, analyzer, media_root
):
    """On a CPU worker's lanes too: the named slice is held and never analysed; its chunk's
    other slices go on in one call."""
    analyzer.batch_preferred = batch_preferred
    with django_capture_on_commit_callbacks(execute=False):
        scans = scans_upload(
            case=north.case, uploaded_by=north.staff,
            uploads=[upload(real_scan_bytes("glioma", 1), "a.jpg"),
                     upload(with_burnt_text(real_scan_bytes("glioma", 2)), "b.jpg"),
                     upload(real_scan_bytes("glioma", 3), "c.jpg")],
        ).scans  # fmt: skip
    outcomes = tasks.analyze_scans([s.pk for s in scans])
    assert outcomes == {str(scans[0].pk): "done", str(scans[1].pk): "held", str(scans[2].pk): "done"}
    assert (analyzer.calls, analyzer.batch_calls) == (0, 1)  # the two clean slices in one pass


def test_a_gpu_workers_lone_slice_with_text_is_held_and_never_analysed(
    north, django_capture_on_commit_callbacks, analyzer, media_root
):
    """A study task left with one slice (a one-slice study, the rest skipped) takes no batch
    pass: its check must still come before any analysis."""
    analyzer.batch_preferred = True
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(
            case=north.case, uploaded_by=north.staff,
            uploads=[upload(with_burnt_text(real_scan_bytes("glioma", 2)), "b.jpg")],
        ).scans  # fmt: skip
    assert tasks.analyze_scans([scan.pk]) == {str(scan.pk): "held"}
    assert (analyzer.calls, analyzer.batch_calls) == (0, 0)


def test_the_card_and_the_api_show_the_hold(held, north, client):
    client.force_login(north.radiologist)
    html = client.get(reverse("scan_card", args=[held.pk])).content.decode()
    assert 'data-status="held"' in html
    assert "Held: text burnt into the image" in html
    assert "Release to analysis" in html
    assert "hx-trigger" not in html  # nothing to poll for: a person decides
    client.force_login(north.staff)
    staff_html = client.get(reverse("scan_card", args=[held.pk])).content.decode()
    assert "Release to analysis" not in staff_html
    api = APIClient()
    api.force_authenticate(north.staff)
    body = api.get(reverse("api:scan-detail", args=[held.pk])).json()
    assert (body["status"], body["held"], body["hold_reason"]) == ("held", True, "text burnt into the image")
    assert body["prediction"] is None


def test_a_radiologist_releases_it_to_analysis_audited(
    held, north, analyzer, broker, django_capture_on_commit_callbacks
):
    api = APIClient()
    api.force_authenticate(north.radiologist)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(reverse("api:scan-hold", args=[held.pk]), {"decision": "release"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert [t.task for t in broker()] == ["workers.tasks.analyze_scan"]
    assert tasks.analyze_scan(held.pk) == "done"  # the person accepted the text: no second hold
    assert analyzer.calls == 1
    event = AuditEvent.objects.filter(object_type="scan", object_id=str(held.pk)).latest("id")
    assert (event.actor_username, event.action, event.outcome) == (north.radiologist.username, "review", "success")
    assert "released" in event.detail
    again = api.post(reverse("api:scan-hold", args=[held.pk]), {"decision": "discard"}, format="json")
    assert again.status_code == 400  # no longer held


def test_a_clinic_admin_discards_it_on_the_page(held, north, client, analyzer):
    client.force_login(north.admin)
    response = client.post(reverse("scan_hold", args=[held.pk]), {"decision": "discard"})
    assert response.status_code == 302
    scan = Scan.objects.get(pk=held.pk)
    assert scan.status == ScanStatus.FAILED
    assert scan.error.startswith(f"Discarded by {north.admin.username}")
    assert analyzer.calls == 0
    event = AuditEvent.objects.filter(object_type="scan", object_id=str(held.pk)).latest("id")
    assert event.actor_username == north.admin.username
    assert event.detail == "held scan discarded (text burnt into the image)"


def test_clinic_staff_may_not_decide_and_the_refusal_is_audited(held, north, client):
    api = APIClient()
    api.force_authenticate(north.staff)
    assert api.post(reverse("api:scan-hold", args=[held.pk]), {"decision": "release"}, format="json").status_code == 403
    client.force_login(north.staff)
    assert client.post(reverse("scan_hold", args=[held.pk]), {"decision": "release"}).status_code == 403
    assert Scan.objects.get(pk=held.pk).status == ScanStatus.HELD
    refusals = AuditEvent.objects.filter(object_type="scan", object_id=str(held.pk), outcome="failure")
    assert refusals.count() == 2


def test_a_case_with_a_held_scan_cannot_be_signed_and_shows_in_progress(held, north):
    from apps.cases.selectors import case_get

    assert case_get(user=north.radiologist, case_id=north.case.pk).status == "pending"
    with pytest.raises(ValidationError, match="held"):
        case_sign(case=north.case, signer=north.radiologist, conclusion="x")


def test_a_decision_on_a_held_scan_removed_meanwhile_is_refused_clearly(held, north):
    from django.utils import timezone

    from apps.scans.holds import scan_hold_release

    Scan.all_objects.filter(pk=held.pk).update(removed_at=timezone.now(), removed_reason="duplicate")
    with pytest.raises(ValidationError, match="removed from the case"):
        scan_hold_release(scan=held, by=north.radiologist)


@pytest.mark.parametrize("batch_preferred", [False, True])
def test_a_study_batch_checks_each_slice_for_text_once(
    batch_preferred, north, django_capture_on_commit_callbacks, analyzer, media_root, monkeypatch
):
    """The batch path checks each slice before analysis; a CPU worker's lanes check each chunk
    and analyse it, without running Tesseract's check a second time."""
    from mri.intake import burnt_text

    analyzer.batch_preferred = batch_preferred
    checked = []
    real = burnt_text.burnt_in_texts  # burnt_in_text too goes through it
    monkeypatch.setattr(burnt_text, "burnt_in_texts", lambda grays: checked.extend(grays) or real(grays))
    with django_capture_on_commit_callbacks(execute=False):
        scans = scans_upload(
            case=north.case, uploaded_by=north.staff,
            uploads=[upload(real_scan_bytes("glioma", i), f"{i}.jpg") for i in (1, 2, 3)],
        ).scans  # fmt: skip
    assert set(tasks.analyze_scans([s.pk for s in scans]).values()) == {"done"}
    assert len(checked) == 3
