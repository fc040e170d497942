"""A person's path in a real browser (Debian's Chromium driven by Playwright): log in, add a
patient, open a case with a real scan, watch the status update live until the heatmap appears,
move the opacity slider, and switch the heatmap to another class (computed by the worker) and
to other colours (no request)."""

from __future__ import annotations

from tests.testkit.browser import log_in
from tests.testkit.data import clinic_user
from tests.testkit.processes import SCAN_TIMEOUT_S, Worker
from tests.testkit.scans import real_scan_path


def test_login_create_case_upload_and_see_overlay(live_server, page, worker: Worker) -> None:
    clinic_user("Browser Clinic", "nurse")
    base = live_server.url

    # Log in
    page.goto(f"{base}/")
    assert "/login/" in page.url
    log_in(page, base, "nurse")
    assert page.is_visible("text=Scan queue")

    # Add a patient
    page.click("nav >> text=Patients")
    page.fill("input[name=mrn]", "BR-1")
    page.fill("input[name=name]", "Brow Ser")
    page.click("text=Add patient")
    page.wait_for_selector("text=Patient Brow Ser (BR-1) added.")

    # Open a case with one real scan
    page.click("nav >> text=New case")
    page.fill("#patient-search", "BR-1")  # the patient is found by typing (issue 14)
    page.click(".patient-option:has-text('Brow Ser')")
    page.fill("input[name=title]", "Browser case")
    page.set_input_files("input[name=files]", str(real_scan_path("pituitary")))
    page.click("text=Open case and analyse")
    page.wait_for_selector("h1:has-text('Browser case')")
    card = page.locator("article[id^=scan-]")
    assert card.get_attribute("data-status") in ("queued", "processing", "done")

    # The card updates itself (htmx polling) until the heatmap is there; no reload here. The
    # browser colours the predicted class's map (the server overlay is the no-JavaScript view).
    heatmap = page.locator("canvas.heatmap")
    heatmap.wait_for(state="visible", timeout=SCAN_TIMEOUT_S * 1000)
    assert page.locator("article[id^=scan-]").get_attribute("data-status") == "done", worker.log_tail()
    overlay = page.locator("img.overlay")
    # Visible is not loaded: the picture is fetched (from the bucket, with S3) after the card swaps in.
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=overlay.element_handle(), timeout=30_000)
    assert page.locator(".probs li").count() == 4
    # ...and the finished card makes the case summary refresh itself too.
    page.wait_for_selector("#case-summary >> text=1 analysed")  # issue 14: "done" reads "analysed"

    # The opacity slider drives the overlay
    page.locator("input[type=range]").fill("80")
    assert page.evaluate("img => img.style.opacity", overlay.element_handle()) == "0.8"

    # Another class's heatmap: fetched once (the worker computes it), and the picture changes.
    predicted = page.locator("[data-heatmap-class]").input_value()
    assert heatmap.get_attribute("data-label") == predicted
    before = page.evaluate(CANVAS_CHECKSUM, heatmap.element_handle())
    other = next(label for label in ("glioma", "meningioma", "notumor") if label != predicted)
    page.select_option("[data-heatmap-class]", other)
    page.wait_for_function(
        "([canvas, label]) => canvas.dataset.label === label",
        arg=[heatmap.element_handle(), other],
        timeout=SCAN_TIMEOUT_S * 1000,
    )
    switched = page.evaluate(CANVAS_CHECKSUM, heatmap.element_handle())
    assert switched != before, "the map did not change with the class"

    # Colours, opacity and going back to a class already seen: redrawn here, no request.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url) if "/heatmaps/" in request.url else None)
    page.select_option("[data-heatmap-colours]", "inferno")
    page.wait_for_function("canvas => canvas.dataset.colours === 'inferno'", arg=heatmap.element_handle())
    assert page.evaluate(CANVAS_CHECKSUM, heatmap.element_handle()) != switched
    page.locator("input[type=range]").fill("30")
    page.select_option("[data-heatmap-class]", predicted)
    page.wait_for_function(
        "([canvas, label]) => canvas.dataset.label === label", arg=[heatmap.element_handle(), predicted]
    )
    assert requests == []


def test_dicom_study_upload_shows_the_study_summary(live_server, page, worker: Worker) -> None:
    """Upload a zipped 3-slice DICOM series on the case page; the study summary builds itself
    as the worker finishes slices, with thumbnails, the finding and its supporting slices."""
    from apps.cases.services import case_create
    from apps.patients.services import patient_create
    from tests.testkit import dicom as dicomdata

    staff = clinic_user("Browser DICOM Clinic", "tech")
    patient = patient_create(created_by=staff, mrn="BR-DCM", name="Dee Icom")
    case = case_create(created_by=staff, patient=patient, title="MRI brain series")
    base = live_server.url
    log_in(page, base, "tech")

    page.goto(f"{base}/cases/{case.pk}/")
    archive = dicomdata.series_zip(
        dicomdata.training_series(3, labels=("notumor", "glioma", "notumor"), patient_id="SOMEONE-ELSE")
    )
    page.set_input_files("input[name=files]", {"name": "study.zip", "mimeType": "application/zip", "buffer": archive})
    page.click("text=Upload and analyse")
    page.wait_for_selector("text=DICOM study of 3 slice(s) received")
    # The worker unpacks the study; the page (polling its progress) reloads to show the slices.
    page.wait_for_selector("#mrn-mismatch", timeout=SCAN_TIMEOUT_S * 1000)  # another Patient ID than the MRN

    summary = page.locator("#study-summary")
    summary.locator("text=3 of 3 slices analysed").wait_for(timeout=SCAN_TIMEOUT_S * 1000)
    assert page.locator("#study-finding").inner_text() == "Glioma", worker.log_tail()
    # Slice 1 (Training/notumor/Tr-noTr_0000.jpg) is a real axial slice at the skull base, the
    # orbits in view. v1's gate rejected it (3.61 over 3.32); v3's gate (fitted with real MRI
    # from other sources too, docs/ood.md) scores it 1.98 under 2.77 and keeps it (v4's: 1.85
    # under 2.68; the entry-flow gate's: 1.33 under 2.27): every slice is ranked, none is named
    # as rejected (the rejected note itself: tests/web/test_pages.py).
    assert summary.locator("#study-rejected").count() == 0, worker.log_tail()
    ranked = summary.locator(".slice-rank li")
    assert ranked.count() == 3
    assert "Slice 2" in ranked.first.inner_text()  # the glioma slice is the most suspicious
    for index in range(3):
        thumbnail = ranked.nth(index).locator("img").element_handle()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail)
    assert summary.locator("text=Supporting slices").is_visible()
    ranked.first.locator("a").click()
    assert page.url.endswith(f"#scan-{ranked.first.get_attribute('data-scan')}")


# A checksum of every pixel drawn on a canvas, to see that the picture changed.
CANVAS_CHECKSUM = """canvas => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum = (sum * 31 + data[i]) % 2147483647;
  return sum;
}"""
