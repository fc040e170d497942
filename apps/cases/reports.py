"""The PDF report of a case: what the referring doctor gets.

`case_report_export` is the one entry point (the API view and the case page's button both
reach it), so whatever must happen on every export (an audit record) goes there.
Rendered with WeasyPrint from templates/reports/case_report.html; the scan pictures are
embedded (JPEG, served to the renderer by its own URL fetcher), and the renderer may fetch nothing
else (no file, no network).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.files import File
from django.template.loader import render_to_string
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.timezones import clinic_zone
from apps.scans.labels import MODEL_LABELS
from apps.scans.models import ScanStatus
from mri.vocabulary import LOW_CONFIDENCE

from .models import Case
from .selectors import case_get

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

# Pictures are scaled down to this many pixels on their long side: sharp at the printed size
# (about 8 cm wide), and the PDF stays small whatever the scan's resolution.
PICTURE_MAX_PX = 512


@dataclass(frozen=True)
class CaseReport:
    filename: str
    pdf: bytes


def _eight_bit(image: Image.Image) -> Image.Image:
    """An L or RGB copy of a stored picture. A DICOM slice is stored as a 16-bit gray PNG
    (full 0-65535 range, apps/scans/ingest.py); Pillow's convert() clips those values at 255,
    which drew every such original pure white, so they are scaled down instead."""
    import numpy as np
    from PIL import Image

    if image.mode in ("L", "RGB"):
        return image.copy()
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(values / 257.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def _picture(field: File, pictures: dict[str, bytes]) -> str | None:
    """A stored image scaled down to JPEG, kept in `pictures` under a short `report:` URL the
    template names; None when the file is missing. JPEG: the PDF embeds it as it is (a PNG is
    decoded and compressed again); a short URL: a data: URL of the whole picture would be
    tokenised by the renderer's CSS parser (most of the rendering time)."""
    from PIL import Image

    try:
        with field.open("rb") as handle, Image.open(handle) as image:
            image.load()
            picture = _eight_bit(image)
    except (FileNotFoundError, ValueError, OSError):
        logger.warning("report: image %s is missing or unreadable", getattr(field, "name", "?"))
        return None
    picture.thumbnail((PICTURE_MAX_PX, PICTURE_MAX_PX))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=90)
    url = f"report:picture-{len(pictures)}"
    pictures[url] = out.getvalue()
    return url


def _scan_rows(case: Case, pictures: dict[str, bytes]) -> list[dict]:
    rows = []
    for scan in case.scans.all():
        row = {"scan": scan, "image": None, "overlay": None, "probabilities": []}
        if scan.status == ScanStatus.DONE:
            prediction = scan.prediction
            row["image"] = _picture(scan.image, pictures)
            row["overlay"] = _picture(prediction.overlay, pictures)
            # The vocabulary's order, so every report lists the classes the same way.
            row["probabilities"] = [(label, prediction.probabilities.get(label.value)) for label in MODEL_LABELS]
        rows.append(row)
    return rows


def case_report_html(*, case: Case, generated_by: User, pictures: dict[str, bytes]) -> str:
    """The report's HTML; the pictures it names go into `pictures` (URL → JPEG bytes). Its
    times are in the case's clinic's zone, named (whoever asks, from wherever)."""
    with timezone.override(clinic_zone(case.clinic)):
        return _case_report_html(case=case, generated_by=generated_by, pictures=pictures)


def _case_report_html(*, case: Case, generated_by: User, pictures: dict[str, bytes]) -> str:
    return render_to_string(
        "reports/case_report.html",
        {
            "case": case,
            "clinic": case.clinic,
            "rows": _scan_rows(case, pictures),
            "generated_at": timezone.now(),
            "generated_by": generated_by,
            "low_confidence": LOW_CONFIDENCE,
            "model_versions": sorted(
                {s.prediction.model_version for s in case.scans.all() if s.status == ScanStatus.DONE}
            ),
        },
    )


def _weasyprint() -> tuple[type, type, type]:
    """WeasyPrint's HTML, URLFetcher and URLFetcherResponse, imported without its side effect:
    importing it sets Pillow's process-wide ImageFile.LOAD_TRUNCATED_IMAGES, after which this
    web process would accept truncated scans at upload. The flag is put back (our report
    pictures are whole JPEGs)."""
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher, URLFetcherResponse
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
    return HTML, URLFetcher, URLFetcherResponse


def case_report_pdf(*, case: Case, generated_by: User) -> bytes:
    HTML, URLFetcher, URLFetcherResponse = _weasyprint()
    pictures: dict[str, bytes] = {}
    html = case_report_html(case=case, generated_by=generated_by, pictures=pictures)

    class Pictures(URLFetcher):
        """Serves the report's own pictures and nothing else: no file, no network."""

        def fetch(self, url: str, headers: object = None) -> object:
            if url not in pictures:
                raise ValueError(f"a report fetches only its own pictures, not {url[:80]!r}")
            return URLFetcherResponse(url, pictures[url], headers={"Content-Type": "image/jpeg"})

    return HTML(string=html, url_fetcher=Pictures()).write_pdf()


def case_report_export(*, user: User, case_id: int) -> CaseReport:
    """The PDF report of a case of the user's clinic (Http404 otherwise)."""
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record

    case = case_get(user=user, case_id=case_id)
    pdf = case_report_pdf(case=case, generated_by=user)
    audit_record(actor=user, action=AuditAction.EXPORT, obj=case, detail="pdf report")
    # No patient name or MRN in the file name: downloads folders on ward PCs are shared.
    return CaseReport(filename=f"case-{case.pk}-report.pdf", pdf=pdf)
