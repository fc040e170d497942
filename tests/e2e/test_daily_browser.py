"""What a radiologist and clinic staff see in a day (issue 14), in a real browser (Debian's
Chromium driven by Playwright). The scans are finished through the worker's own services
(tests/testkit/data.py), so no model runs here: what is under test is what the page shows."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from apps.scans.models import Scan
from tests.testkit.browser import log_in
from tests.testkit.data import (
    ClinicWorld,
    case_with_results,
    finish_scan,
    finish_scan_with_class_maps,
    make_world,
    unpublished,
)


def _shot(page, name: str) -> None:
    if os.environ.get("E2E_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["E2E_SCREENSHOTS"]) / f"daily-{name}.png"), full_page=True)


def _shot_element(locator, name: str) -> None:
    """One part of the page, for docs/ (E2E_SCREENSHOTS=docs/screenshots)."""
    if os.environ.get("E2E_SCREENSHOTS"):
        locator.screenshot(path=str(Path(os.environ["E2E_SCREENSHOTS"]) / f"{name}.png"))


def _shot_pdf_first_page(pdf: bytes, name: str) -> None:
    """The PDF's first page as pdftoppm renders it, for docs/."""
    import shutil
    import subprocess
    import tempfile

    if not os.environ.get("E2E_SCREENSHOTS"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "report.pdf"
        source.write_bytes(pdf)
        target = Path(os.environ["E2E_SCREENSHOTS"]) / name
        pdftoppm = shutil.which("pdftoppm") or "/usr/bin/pdftoppm"
        args = ["-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile", str(source), str(target)]
        subprocess.run([pdftoppm, *args], check=True)


def _pixels(locator) -> np.ndarray:
    """What the browser shows of an element, as RGB ints."""
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(int)


def _colourful(pixels: np.ndarray) -> float:
    """How far from gray a region is: mean of the largest channel difference (0 for a gray picture)."""
    return float((pixels.max(axis=-1) - pixels.min(axis=-1)).mean())


def _quadrants(pixels: np.ndarray) -> dict[int, np.ndarray]:
    """The four quadrants (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) without a
    margin at their edges, in PixelAnalyzer.explain's order (one class's map per quadrant)."""
    h, w = pixels.shape[:2]
    m_h, m_w = h // 12, w // 12
    out = {}
    for quadrant in range(4):
        top, left = (quadrant // 2) * (h // 2), (quadrant % 2) * (w // 2)
        out[quadrant] = pixels[top + m_h : top + h // 2 - m_h, left + m_w : left + w // 2 - m_w]
    return out


def _world(capture) -> ClinicWorld:
    return make_world("daily", capture, finished=False)


def _wait_drawn(page, canvas, label: str, colours: str) -> None:
    page.wait_for_function(
        "([c, label, colours]) => !c.hidden && c.dataset.label === label && c.dataset.colours === colours",
        arg=[canvas.element_handle(), label, colours],
    )


def test_heatmap_switch_shows_only_the_chosen_class_in_the_chosen_colours(
    live_server, page, django_capture_on_commit_callbacks
) -> None:
    """Issue 14, item 1: the server's overlay (the predicted class, jet) must not stay under the
    browser-drawn map. Each class's map covers one quadrant (glioma top-left, meningioma
    top-right, no tumour bottom-left); outside the chosen class's quadrant the viewer shows the
    gray scan, whatever was predicted."""
    world = _world(django_capture_on_commit_callbacks)
    scan = finish_scan_with_class_maps(world.scan, "glioma", 0.9)
    base = live_server.url
    log_in(page, base, world.radiologist.username)
    page.goto(f"{base}/cases/{world.case.pk}/")
    viewer = page.locator(f"#scan-{scan.pk} .viewer")
    canvas = viewer.locator("canvas.heatmap")

    # The default view: the predicted class (glioma, top-left) in jet; the rest is the gray scan.
    _wait_drawn(page, canvas, "glioma", "jet")
    for image in viewer.locator("img").element_handles():
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image)
    assert page.locator(f"#overlay-{scan.pk}").is_hidden()
    shown = _quadrants(_pixels(viewer))
    assert _colourful(shown[0]) > 6
    for quadrant in (1, 2, 3):
        assert _colourful(shown[quadrant]) < 2, quadrant

    # "No tumour" in gray: nothing on the viewer has a colour any more.
    page.select_option("[data-heatmap-class]", "notumor")
    page.select_option("[data-heatmap-colours]", "gray")
    _wait_drawn(page, canvas, "notumor", "gray")
    assert max(_colourful(q) for q in _quadrants(_pixels(viewer)).values()) < 2

    # Meningioma (top-right) in inferno: colour there only, not where glioma's map is.
    page.select_option("[data-heatmap-class]", "meningioma")
    page.select_option("[data-heatmap-colours]", "inferno")
    _wait_drawn(page, canvas, "meningioma", "inferno")
    shown = _quadrants(_pixels(viewer))
    assert _colourful(shown[1]) > 6
    for quadrant in (0, 2, 3):
        assert _colourful(shown[quadrant]) < 2, quadrant
    assert Scan.objects.get(pk=scan.pk).prediction.label == "glioma"
    page.select_option("[data-heatmap-class]", "glioma")
    page.select_option("[data-heatmap-colours]", "jet")
    _wait_drawn(page, canvas, "glioma", "jet")
    _shot_element(page.locator(f"#scan-{scan.pk}"), "scan-card")



def test_no_map_stays_on_the_viewer_under_another_class_name_while_that_class_loads(
    live_server, page, django_capture_on_commit_callbacks
) -> None:
    """The server's overlay is the predicted class's map and the canvas holds the last map
    drawn: while another class's map is being computed (202, held here for every class but the
    one allowed through), neither may be left on the viewer under the chosen class's name."""
    world = _world(django_capture_on_commit_callbacks)
    scan = finish_scan(world.scan, "glioma", 0.9)
    allowed: set[str] = set()

    def heatmaps(route) -> None:
        label = route.request.url.rstrip("/").rsplit("/", 1)[-1]
        if label in allowed:
            route.continue_()
        else:  # what the API answers while a worker computes the map
            route.fulfill(status=202, headers={"Retry-After": "30"}, json={"status": "pending"})

    page.route("**/api/scans/*/heatmaps/*/", heatmaps)
    base = live_server.url
    log_in(page, base, world.radiologist.username)
    page.goto(f"{base}/cases/{world.case.pk}/")
    viewer = page.locator(f"#scan-{scan.pk} .viewer")
    overlay, canvas = page.locator(f"#overlay-{scan.pk}"), viewer.locator("canvas.heatmap")
    status = page.locator(f"#scan-{scan.pk} [data-heatmap-status]")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=overlay.element_handle())

    # Glioma's own map pending: the server's overlay of glioma is still the right picture.
    assert "Computing the heatmap for Glioma" in status.inner_text()
    assert overlay.is_visible()
    assert canvas.is_hidden()
    page.select_option("[data-heatmap-class]", "meningioma")
    page.wait_for_function("s => s.textContent.includes('Meningioma')", arg=status.element_handle())
    assert overlay.is_hidden()  # glioma's map, no longer under "Meningioma"

    # Glioma's map drawn on the canvas, then pituitary chosen while its map is pending.
    allowed.add("glioma")
    page.select_option("[data-heatmap-class]", "glioma")
    _wait_drawn(page, canvas, "glioma", "jet")
    assert _colourful(_pixels(viewer)) > 6
    page.select_option("[data-heatmap-class]", "pituitary")
    page.wait_for_function("s => s.textContent.includes('Pituitary')", arg=status.element_handle())
    assert canvas.is_hidden()
    assert overlay.is_hidden()
    assert _colourful(_pixels(viewer)) < 2  # the gray scan alone


def test_study_summary_warns_when_slices_name_different_tumours(
    live_server, page, django_capture_on_commit_callbacks
) -> None:
    """Issue 14, item 4: three slices, three tumour types, each > 99.9 %: the summary says the
    slices disagree and names no single finding."""
    world = _world(django_capture_on_commit_callbacks)
    results = [("glioma", 0.9993), ("meningioma", 0.9992), ("pituitary", 0.9991)]
    case, scans = case_with_results(world, django_capture_on_commit_callbacks, results, title="MRI head")
    base = live_server.url
    log_in(page, base, world.radiologist.username)
    page.goto(f"{base}/cases/{case.pk}/")
    summary = page.locator("#study-summary")
    warning = summary.locator("#study-discordant")
    assert warning.is_visible()
    assert "The slices disagree" in warning.inner_text()
    for name in ("Glioma", "Meningioma", "Pituitary tumour"):
        assert name in warning.inner_text()
    assert not summary.locator("text=Most likely finding").count()
    assert not page.locator("#study-finding").count()
    # The warning is in the first screen, above the slices.
    assert warning.bounding_box()["y"] < 768
    _shot_element(summary, "study-summary")
    warning.locator("a").first.click()
    assert page.url.endswith(f"#scan-{scans[0].pk}")


def test_signed_case_leads_with_the_radiologists_conclusion(
    live_server, page, django_capture_on_commit_callbacks
) -> None:
    """Issue 14, item 5: once signed, the page opens on the conclusion (glioma), not on the
    model's badge or its finding (meningioma, a rejected image)."""
    from apps.cases.services import case_sign
    from apps.scans.services import scan_review

    world = _world(django_capture_on_commit_callbacks)
    results = [("meningioma", 0.97), ("meningioma", 0.9), "rejected"]
    case, scans = case_with_results(world, django_capture_on_commit_callbacks, results, title="MRI head")
    for scan in scans[:2]:
        scan_review(scan=Scan.objects.get(pk=scan.pk), reviewer=world.radiologist, agrees=False, label="glioma")
    case_sign(case=case, signer=world.radiologist, conclusion="Left frontal glioma; no meningioma.")
    base = live_server.url
    log_in(page, base, world.radiologist.username)
    page.goto(f"{base}/cases/{case.pk}/")
    conclusion = page.locator("#signed-conclusion")
    assert "Left frontal glioma; no meningioma." in conclusion.inner_text()
    top = conclusion.bounding_box()["y"]
    assert top < 768  # on the first screen
    assert top < page.locator("#study-summary").bounding_box()["y"]
    assert top < page.locator(f"#scan-{scans[0].pk}").bounding_box()["y"]
    badges = page.locator("#case-summary .page-head .badge")
    assert [badges.nth(i).inner_text().strip().lower() for i in range(badges.count())] == ["signed"]
    assert not page.locator("#study-summary >> text=/^Most likely finding/").count()
    if os.environ.get("E2E_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["E2E_SCREENSHOTS"]) / "signed-case.png"))
    from apps.cases.reports import case_report_export

    _shot_pdf_first_page(case_report_export(user=world.radiologist, case_id=case.pk).pdf, "report-page-1")


def _white_png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (128, 128), 255).save(out, format="PNG")
    return out.getvalue()


def _in_view(page, locator) -> bool:
    box = locator.bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + min(box["height"], 40) <= height


def test_errors_show_where_the_user_is_and_good_files_are_kept(
    live_server, page, django_capture_on_commit_callbacks, tmp_path
) -> None:
    """Issue 14, item 7: a styled 403; one bad file in a batch stores the good ones and names
    the bad one; a refused form brings its error into view with the focus; a file over the
    size limit is left out of the picker before anything is sent."""
    from tests.testkit.scans import real_scan_bytes

    world = _world(django_capture_on_commit_callbacks)
    results = [("glioma", 0.9), ("glioma", 0.8), ("notumor", 0.9)]
    case, _ = case_with_results(world, django_capture_on_commit_callbacks, results, title="MRI head")
    base = live_server.url
    log_in(page, base, world.staff.username)

    # A page the role does not open: the site's page, in words, with the navigation.
    response = page.goto(f"{base}/agreement/")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "Not allowed"
    assert "Only radiologists and clinic admins" in page.locator(".error-page").inner_text()
    assert page.locator("nav >> text=Worklist").is_visible()

    # One bad file among good ones: the good one is stored, the bad one named.
    page.goto(f"{base}/cases/{case.pk}/")
    page.set_input_files("input[name=files]", [
        {"name": "good.jpg", "mimeType": "image/jpeg", "buffer": real_scan_bytes("glioma", 2)},
        {"name": "white.png", "mimeType": "image/png", "buffer": _white_png()},
    ])  # fmt: skip
    page.click("text=Upload and analyse")
    page.wait_for_selector("text=1 scan(s) added")
    assert "white.png" in page.locator(".messages .error").inner_text()
    assert Scan.objects.filter(case=case).count() == 4

    # Nothing chosen: the error comes back far down the page; it is brought into view, focused.
    page.click("text=Upload and analyse")
    error = page.locator("form .errorlist").first
    error.wait_for()
    assert "Choose at least one scan" in error.inner_text()
    page.wait_for_function("el => document.activeElement === el", arg=error.element_handle())
    assert _in_view(page, error)

    # A 35 MB file is left out before sending, named beside the picker; the good file stays.
    huge, good = tmp_path / "huge.jpg", tmp_path / "good2.jpg"
    huge.write_bytes(b"\xff\xd8\xff" + bytes(35 * 2**20))  # a file on disk: the browser reads it, not the driver
    good.write_bytes(real_scan_bytes("glioma", 3))
    page.set_input_files("input[name=files]", [str(huge), str(good)], timeout=60_000)
    note = page.locator(".upload-left-out")
    assert "huge.jpg (35 MB; the limit is 25 MB)" in note.inner_text()
    assert page.evaluate("() => Array.from(document.querySelector('input[name=files]').files).map(f => f.name)") == [
        "good2.jpg"
    ]
    page.click("text=Upload and analyse")
    page.wait_for_selector("text=1 scan(s) added")
    assert Scan.objects.filter(case=case).count() == 5


def test_a_phone_upright_scrolls_only_down(live_server, page, django_capture_on_commit_callbacks) -> None:
    """Issue 14, item 12, at 390 px: the case page of slices with long file names does not scroll
    sideways, the worklist's model column is on screen, the header stays short; a skip link is
    the first stop of the keyboard."""
    from apps.scans.services import scans_upload
    from tests.testkit.data import finish_scan, png_upload

    world = _world(django_capture_on_commit_callbacks)
    results = [("glioma", 0.9), ("notumor", 0.8)]
    case, _ = case_with_results(world, django_capture_on_commit_callbacks, results, title="MRI head")
    long_name = "1.3.12.2.1107.5.2.43.166063.2025061212345678901234567_T2_FLAIR_AX_slice_0001.png"
    with unpublished(django_capture_on_commit_callbacks):
        (scan,) = scans_upload(case=case, uploaded_by=world.staff, uploads=[png_upload(long_name)]).scans
    finish_scan(scan, "glioma", 0.95)
    page.set_viewport_size({"width": 390, "height": 844})
    base = live_server.url
    log_in(page, base, world.radiologist.username)

    def sideways() -> int:
        return page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")

    page.goto(f"{base}/cases/{case.pk}/")
    assert sideways() <= 0
    assert page.locator(".topbar").bounding_box()["height"] <= 100
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip-link"

    page.goto(f"{base}/worklist/")
    assert sideways() <= 0
    model = page.locator(f"tr[data-case='{case.pk}'] td.model-output")
    box = model.bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 390
    assert "Glioma" in model.inner_text()
    _shot(page, "phone-worklist")


def test_the_case_form_finds_the_patient_by_typing(live_server, page, django_capture_on_commit_callbacks) -> None:
    """Issue 14, item 9: no dropdown of every patient; type, pick, open the case."""
    from apps.patients.services import patient_create
    from tests.testkit.scans import real_scan_bytes

    world = _world(django_capture_on_commit_callbacks)
    for i in range(25):
        patient_create(created_by=world.staff, mrn=f"JD-{i:03d}", name=f"Jane Doe {i:03d}")
    base = live_server.url
    log_in(page, base, world.staff.username)
    page.goto(f"{base}/cases/new/")
    assert not page.locator("select[name=patient]").count()
    page.fill("#patient-search", "JD-017")
    option = page.locator(".patient-option")
    option.first.wait_for()
    assert option.count() == 1
    option.click()
    assert page.locator("#patient-search").input_value() == "Jane Doe 017 (JD-017)"
    page.fill("input[name=title]", "Typed patient")
    scan = {"name": "a.jpg", "mimeType": "image/jpeg", "buffer": real_scan_bytes()}
    page.set_input_files("input[name=files]", [scan])
    # Stored, not sent: another module's e2e worker on the same broker would analyse it while
    # this test's database is flushed (a deadlock seen once at teardown).
    with unpublished(django_capture_on_commit_callbacks):
        page.click("text=Open case and analyse")
        page.wait_for_selector("h1:has-text('Typed patient')")
    assert "Jane Doe 017" in page.locator("#case-summary").inner_text()
