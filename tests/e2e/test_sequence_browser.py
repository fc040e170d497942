"""Issue 16 in a real browser, on a real worker running the shipped model: a two-slice T2
DICOM study (real training slices carrying T2 timings) is shown as "not validated for T2" on
the worklist, the study summary and each scan card, and the worklist ranks it with the
low-confidence tumours; the API says the same."""

from __future__ import annotations

import io
import time

import pydicom
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.cases.services import case_create
from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_upload
from tests.testkit import dicom as dicomdata
from tests.testkit.browser import log_in, open_worklist
from tests.testkit.data import api_token, reading_desk
from tests.testkit.processes import SCAN_TIMEOUT_S, Worker
from tests.testkit.scans import real_scan_bytes

PASSWORD = "e2e-sequence-password"
T2 = {"ScanningSequence": "SE", "SequenceVariant": "SK", "RepetitionTime": 4200, "EchoTime": 105}


def _t2_slice(index: int) -> SimpleUploadedFile:
    identity = dicomdata.Identity(patient_id="SEQ-1", instance=index + 1, position_z=float(index))
    dataset = pydicom.dcmread(
        io.BytesIO(dicomdata.mr_slice_from_jpeg(real_scan_bytes("glioma", index), identity=identity))
    )
    for name, value in T2.items():
        setattr(dataset, name, value)
    return SimpleUploadedFile(f"t2-{index}.dcm", dicomdata.to_bytes(dataset), content_type="application/dicom")


def _unpacked(case, count: int, worker: Worker) -> list[Scan]:
    """The case's scans once the worker's study job (ingest_study) has unpacked the upload."""
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    while time.monotonic() < deadline:
        scans = list(Scan.objects.filter(case=case))
        if len(scans) == count:
            return scans
        time.sleep(0.5)
    raise AssertionError(f"the study was not unpacked in {SCAN_TIMEOUT_S} s\n{worker.log_tail()}")


def _wait_finished(scans: list[Scan], worker: Worker) -> list[Scan]:
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    while time.monotonic() < deadline:
        current = list(Scan.objects.filter(pk__in=[s.pk for s in scans]).select_related("prediction"))
        if all(s.status == ScanStatus.DONE for s in current):
            return current
        assert not {s.status for s in current} & {ScanStatus.FAILED, ScanStatus.REJECTED}, worker.log_tail()
        time.sleep(0.5)
    raise AssertionError(f"scans not analysed in {SCAN_TIMEOUT_S} s\n{worker.log_tail()}")


def test_a_t2_study_is_not_validated_everywhere(live_server, page, worker: Worker) -> None:
    staff, patient = reading_desk("Sequence Clinic", "seq", mrn="SEQ-1", patient_name="Sam Sequence", password=PASSWORD)
    t2_case = case_create(created_by=staff, patient=patient, title="T2 study")
    scans_upload(case=t2_case, uploaded_by=staff, uploads=[_t2_slice(0), _t2_slice(1)])
    scans = _wait_finished(_unpacked(t2_case, 2, worker), worker)
    assert {(s.sequence, s.sequence_source, s.prediction.validated) for s in scans} == {("t2", "dicom", False)}
    base = live_server.url

    log_in(page, base, "seq-rad", PASSWORD)
    open_worklist(page)
    row = page.locator(f"table.worklist tbody tr[data-case='{t2_case.pk}']")
    assert "not validated for T2" in row.inner_text()
    assert "Tumour, low confidence" in row.inner_text()  # the priority the row shows

    row.locator("a").first.click()
    page.wait_for_selector("h1:has-text('T2 study')")
    assert page.locator("#study-not-validated").is_visible()
    assert "Not validated for T2." in page.locator("#study-not-validated").inner_text()
    for scan in scans:
        note = page.locator(f"#scan-{scan.pk} .not-validated")
        assert note.is_visible()
        assert note.inner_text().startswith("Not validated for T2.")

    api = requests.Session()
    api.headers["Authorization"] = f"Token {api_token(staff)}"
    body = api.get(base + reverse("api:scan-detail", args=[scans[0].pk]), timeout=10).json()
    assert (body["sequence"], body["sequence_source"], body["validated"]) == ("t2", "dicom", False)
