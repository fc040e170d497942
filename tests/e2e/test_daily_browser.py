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
from tests.testkit.data import ClinicWorld, finish_scan_with_class_maps, make_world


def _shot(page, name: str) -> None:
    if os.environ.get("E2E_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["E2E_SCREENSHOTS"]) / f"daily-{name}.png"), full_page=True)


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

