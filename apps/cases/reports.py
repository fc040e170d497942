"""The PDF report of a case: what the referring doctor gets.

`case_report_export` is the one entry point (the API view and the case page's button both
reach it), so whatever must happen on every export (an audit record) goes there.
Rendered with WeasyPrint from templates/reports/case_report.html; the scan pictures are
embedded as data: URLs and the renderer may fetch nothing else (no file, no network).
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass

from django.core.files import File
from django.template.loader import render_to_string
from django.utils import timezone

from apps.accounts.models import User
from apps.scans.labels import MODEL_LABELS
from apps.scans.models import ScanStatus
from workers.inference import LOW_CONFIDENCE

from .models import Case
from .selectors import case_get

logger = logging.getLogger(__name__)

# Pictures are scaled down to this many pixels on their long side: sharp at the printed size
# (about 8 cm wide), and the PDF stays small whatever the scan's resolution.
PICTURE_MAX_PX = 512


@dataclass(frozen=True)
class CaseReport:
    filename: str
    pdf: bytes


def _picture(field: File) -> str | None:
    """A stored image as a PNG data: URL, scaled down; None when the file is missing."""
    from PIL import Image

    try:
        with field.open("rb") as handle, Image.open(handle) as image:
            image.load()
            picture = image.convert("RGB") if image.mode not in ("L", "RGB") else image.copy()
    except (FileNotFoundError, ValueError, OSError):
        logger.warning("report: image %s is missing or unreadable", getattr(field, "name", "?"))
        return None
    picture.thumbnail((PICTURE_MAX_PX, PICTURE_MAX_PX))
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _scan_rows(case: Case) -> list[dict]:
    rows = []
    for scan in case.scans.all():
        row = {"scan": scan, "image": None, "overlay": None, "probabilities": []}
        if scan.status == ScanStatus.DONE:
            prediction = scan.prediction
            row["image"] = _picture(scan.image)
            row["overlay"] = _picture(prediction.overlay)
            # The vocabulary's order, so every report lists the classes the same way.
            row["probabilities"] = [(label, prediction.probabilities.get(label.value)) for label in MODEL_LABELS]
        rows.append(row)
    return rows


def case_report_html(*, case: Case, generated_by: User) -> str:
    return render_to_string(
        "reports/case_report.html",
        {
            "case": case,
            "clinic": case.clinic,
            "rows": _scan_rows(case),
            "generated_at": timezone.now(),
            "generated_by": generated_by,
            "low_confidence": LOW_CONFIDENCE,
            "model_versions": sorted(
                {s.prediction.model_version for s in case.scans.all() if s.status == ScanStatus.DONE}
            ),
        },
    )


def _weasyprint() -> tuple[type, type]:
    """WeasyPrint's HTML and URLFetcher, imported without its side effect: importing it sets
    Pillow's process-wide ImageFile.LOAD_TRUNCATED_IMAGES, after which this web process would
    accept truncated scans at upload. The flag is put back (our report pictures are whole PNGs)."""
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
    return HTML, URLFetcher


def case_report_pdf(*, case: Case, generated_by: User) -> bytes:
    HTML, URLFetcher = _weasyprint()
    html = case_report_html(case=case, generated_by=generated_by)
    # Only the embedded pictures: a report never reads a file or a URL named in its HTML.
    return HTML(string=html, url_fetcher=URLFetcher(allowed_protocols={"data"})).write_pdf()


def case_report_export(*, user: User, case_id: int) -> CaseReport:
    """The PDF report of a case of the user's clinic (Http404 otherwise)."""
    case = case_get(user=user, case_id=case_id)
    pdf = case_report_pdf(case=case, generated_by=user)
    # No patient name or MRN in the file name: downloads folders on ward PCs are shared.
    return CaseReport(filename=f"case-{case.pk}-report.pdf", pdf=pdf)
