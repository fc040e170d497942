"""The radiologist's desk in a real browser (Debian's Chromium driven by Playwright), on scans
the real model analysed in a real worker: open the worklist, open the top case, correct one
scan, sign, download the PDF report, and see the case leave the worklist."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from apps.cases.services import case_create
from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_upload
from tests.testkit.browser import log_in, open_worklist
from tests.testkit.data import reading_desk
from tests.testkit.documents import assert_shows, pdf_text
from tests.testkit.processes import SCAN_TIMEOUT_S, Worker
from tests.testkit.scans import real_scan_path as scan_file

PASSWORD = "e2e-desk-password"


def _submit(case, user, label: str, index: int = 0) -> Scan:
    path = scan_file(label, index)
    upload = SimpleUploadedFile(path.name, path.read_bytes(), content_type="image/jpeg")
    (scan,) = scans_upload(case=case, uploaded_by=user, uploads=[upload]).scans
    return scan


def _wait_done(scans: list[Scan], worker: Worker) -> None:
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    while time.monotonic() < deadline:
        statuses = set(Scan.objects.filter(pk__in=[s.pk for s in scans]).values_list("status", flat=True))
        if statuses == {ScanStatus.DONE}:
            return
        assert not statuses & {ScanStatus.FAILED, ScanStatus.REJECTED}, worker.log_tail()
        time.sleep(0.5)
    raise AssertionError(f"scans not analysed in {SCAN_TIMEOUT_S} s\n{worker.log_tail()}")


def _shot(page, name: str) -> None:
    if os.environ.get("E2E_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["E2E_SCREENSHOTS"]) / f"desk-{name}.png"), full_page=True)


def test_radiologist_reads_corrects_signs_and_downloads_the_report(live_server, page, worker: Worker) -> None:
    staff, patient = reading_desk("Desk Clinic", "desk", mrn="DESK-1", patient_name="Dora Desk", password=PASSWORD)
    tumour = case_create(created_by=staff, patient=patient, title="Headaches")
    clear = case_create(created_by=staff, patient=patient, title="Routine follow-up")
    _wait_done([_submit(tumour, staff, "glioma"), _submit(clear, staff, "notumor", 1)], worker)
    base = live_server.url

    log_in(page, base, "desk-rad", PASSWORD)

    # The worklist: the tumour case comes before the no-tumour one.
    rows = open_worklist(page)
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-case") == str(tumour.pk)
    _shot(page, "worklist")

    # Open the top case; its model output is marked unverified.
    rows.nth(0).locator("a").first.click()
    page.wait_for_selector("h1:has-text('Headaches')")
    assert page.is_visible(".unverified-banner")
    card = page.locator("article[id^=scan-]").first
    assert card.locator(".unverified-tag").is_visible()
    _shot(page, "case-unverified")

    # Correct the scan: the model said glioma, the radiologist reads meningioma.
    card.locator("input[name=reading][value=meningioma]").check()
    card.locator("textarea[name=note]").fill("Extra-axial, dural tail")
    card.locator("button:has-text('Save reading')").click()
    page.wait_for_selector("text=Review recorded.")
    assert page.locator(".review .reading").first.inner_text().startswith("Reading: Meningioma")

    # Sign: the conclusion is pre-filled with the reading; add a line and sign.
    conclusion = page.locator("textarea[name=conclusion]")
    assert "Meningioma, corrects the model" in conclusion.input_value()
    conclusion.fill(conclusion.input_value() + "\nConclusion: meningioma, left convexity.")
    page.click("button:has-text('Sign case')")
    page.wait_for_selector(".signed-banner")
    assert page.locator(".verified-tag").first.is_visible()
    _shot(page, "signed-case")

    # Download the PDF report from the case page.
    with page.expect_download() as download_info:
        page.click("a:has-text('PDF report')")
    download = download_info.value
    assert download.suggested_filename == f"case-{tumour.pk}-report.pdf"
    text = pdf_text(Path(download.path()).read_bytes())
    assert_shows(
        text, "Dora Desk", "DESK-1", "meningioma, left convexity", "Radiologist's reading: Meningioma",
        "Signed by desk-rad",
    )  # fmt: skip
    assert "UNVERIFIED" not in text

    # Back to the worklist: the signed case has left it.
    rows = open_worklist(page)
    assert rows.count() == 1
    assert rows.nth(0).get_attribute("data-case") == str(clear.pk)
    _shot(page, "worklist-after")
