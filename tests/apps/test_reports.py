"""The PDF report: its text (pypdf), a page rendered to PNG (pdftoppm), the HTTP contract."""

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from PIL import Image
from pypdf import PdfReader
from rest_framework.test import APIClient

from apps.cases.reports import case_report_export
from apps.cases.services import case_sign
from apps.scans.services import scan_review, scans_upload
from tests.testkit.data import upload
from tests.testkit.documents import assert_shows, pdf_text
from tests.testkit.scans import real_scan_bytes


def _page_png(pdf: bytes, tmp_path: Path) -> Image.Image:
    """Page 1 at 60 dpi through poppler's pdftoppm (apt: poppler-utils)."""
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        pytest.fail("pdftoppm not found: apt-get install poppler-utils (requirements/system.txt, make test does)")
    source = tmp_path / "report.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [pdftoppm, "-png", "-r", "60", "-f", "1", "-l", "1", str(source), str(tmp_path / "page")], check=True
    )
    (png,) = tmp_path.glob("page*.png")
    return Image.open(png).convert("RGB")


def _reddish(image: Image.Image) -> int:
    pixels = np.asarray(image).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((r - g > 25) & (r - b > 25)).sum())


def test_unsigned_report_names_everything_and_says_unverified(north, tmp_path):
    report = case_report_export(user=north.staff, case_id=north.case.pk)
    assert report.pdf.startswith(b"%PDF")
    assert report.filename == f"case-{north.case.pk}-report.pdf"
    text = pdf_text(report.pdf)
    assert_shows(
        text,
        "north",  # the clinic
        "north Patient", "NORTH-001",  # the patient: name and MRN
        "north case",  # the case
        "Glioma", "70.0 %", "pixel-test-1",  # the model's label, calibrated probability, version
        "No tumour", "Pituitary tumour",  # every class, named by the vocabulary
        "UNVERIFIED", "not signed",
        "Decision support only",
    )  # fmt: skip
    assert "Notumor" not in text
    # Original and overlay side by side: two pictures on the scan's page.
    images = [image for page in PdfReader(io.BytesIO(report.pdf)).pages for image in page.images]
    assert len(images) == 2
    page = _page_png(report.pdf, tmp_path)
    assert page.size[0] > 400
    assert page.size[1] > 600
    assert _reddish(page) > 2000  # the red "unverified" banner and watermark


def test_signed_report_has_the_reading_and_the_conclusion(north, tmp_path):
    scan_review(scan=north.scan, reviewer=north.radiologist, agrees=False, label="meningioma", note="dural tail")
    north.radiologist.first_name, north.radiologist.last_name = "Rita", "Rad"
    north.radiologist.save()
    case_sign(case=north.case, signer=north.radiologist, conclusion="Left convexity meningioma.")
    report = case_report_export(user=north.staff, case_id=north.case.pk)
    text = pdf_text(report.pdf)
    assert_shows(
        text, "Left convexity meningioma.", "Signed by Rita Rad", "Radiologist's reading: Meningioma",
        "corrects the model", "dural tail",
    )  # fmt: skip
    assert "UNVERIFIED" not in text
    assert _reddish(_page_png(report.pdf, tmp_path)) < 500  # nothing left in red but small text


def test_a_missing_picture_is_said_not_fatal(north):
    north.scan.image.storage.delete(north.scan.image.name)
    text = pdf_text(case_report_export(user=north.staff, case_id=north.case.pk).pdf)
    assert "Image file missing." in text


def test_http_contract(north):
    client = APIClient()
    client.force_authenticate(north.staff)
    url = reverse("api:case-report", args=[north.case.pk])
    response = client.get(url, HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="case-{north.case.pk}-report.pdf"'
    assert "no-store" in response["Cache-Control"]
    assert response.content.startswith(b"%PDF")
    assert client.get(reverse("api:case-report", args=[999_999])).status_code == 404
    assert APIClient().get(url).status_code in (401, 403)


def test_case_page_links_the_report(north, client):
    client.force_login(north.staff)
    html = client.get(reverse("case_detail", args=[north.case.pk])).content.decode()
    assert reverse("api:case-report", args=[north.case.pk]) in html
    # Session auth (the button) gets the PDF too.
    assert client.get(reverse("api:case-report", args=[north.case.pk])).content.startswith(b"%PDF")


def test_rendering_a_report_leaves_truncated_uploads_refused(north, django_capture_on_commit_callbacks):
    """WeasyPrint's import turns on Pillow's LOAD_TRUNCATED_IMAGES for the whole process;
    the report module puts it back, so the upload check still refuses a cut-off JPEG."""
    case_report_export(user=north.staff, case_id=north.case.pk)
    data = real_scan_bytes()
    with pytest.raises(ValidationError), django_capture_on_commit_callbacks(execute=False):
        scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(data[: len(data) // 2])])


def test_the_report_carries_no_upload_file_name(north):
    """Upload names are often a patient's name (SURNAME_NAME_MRI.dcm): an export leaves them out."""
    from apps.scans.models import Scan

    Scan.objects.filter(case=north.case).update(original_filename="SMITHERS_WAYLON_MRI.jpg")
    text = pdf_text(case_report_export(user=north.staff, case_id=north.case.pk).pdf)
    assert "SMITHERS" not in text
    assert "Scan " in text


def _pages_png(pdf: bytes, tmp_path: Path, dpi: int = 60) -> list[np.ndarray]:
    """Every page rendered by poppler's pdftoppm, as RGB arrays."""
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        pytest.fail("pdftoppm not found: apt-get install poppler-utils (.ci/run installs it)")
    source = tmp_path / "report.pdf"
    source.write_bytes(pdf)
    subprocess.run([pdftoppm, "-png", "-r", str(dpi), str(source), str(tmp_path / "all")], check=True)
    return [np.asarray(Image.open(png).convert("RGB")) for png in sorted(tmp_path.glob("all*.png"))]


def _dark(pixels: np.ndarray) -> int:
    return int((pixels.max(axis=-1) < 60).sum())


def test_dicom_study_report_shows_the_slice_says_rejected_and_reads_first(
    north, tmp_path, django_capture_on_commit_callbacks
):
    """Issue 14, item 2: a DICOM slice's original (a 16-bit rendering) is drawn, not blank
    white; a rejected image is said to be rejected, not "still being analysed"; the signature
    names the signer once; the signed reading comes before the model's probabilities."""
    from tests.testkit import dicom as dicomdata
    from tests.testkit.data import dicom_scan, finish_scan, reject_scan, unpack

    analysed = finish_scan(dicom_scan(north, django_capture_on_commit_callbacks), "glioma", 0.9)
    case = analysed.case
    other = dicomdata.mr_slice_from_jpeg(real_scan_bytes("notumor", 3))
    with django_capture_on_commit_callbacks(execute=False):  # the study job unpacks it here and now
        (second,) = unpack(
            scans_upload(
                case=case, uploaded_by=north.staff, uploads=[upload(other, "skull-base.dcm", "application/dicom")]
            )
        ).scans
    reject_scan(second)
    scan_review(scan=analysed, reviewer=north.radiologist, agrees=True)
    case_sign(case=case, signer=north.radiologist, conclusion="Right temporal glioma.")
    text = pdf_text(case_report_export(user=north.staff, case_id=case.pk).pdf)
    assert "Still being analysed" not in text
    assert "Not a brain MRI slice: no tumour label is given." in text
    assert "radiologist, radiologist" not in text
    assert f"{north.radiologist.username}, radiologist" not in text
    assert text.index("Right temporal glioma.") < text.index("Radiologist's reading: Glioma")
    assert text.index("Radiologist's reading: Glioma") < text.index("No tumour")  # before the probabilities

    # The slice's page: its original (left) is as dark as its overlay (right), not white.
    pdf = case_report_export(user=north.staff, case_id=case.pk).pdf
    pictured = [page for page in _pages_png(pdf, tmp_path) if _dark(page[:, page.shape[1] // 2 :]) > 5000]
    assert pictured, "no page shows the overlay"
    for page in pictured:
        left, right = _dark(page[:, : page.shape[1] // 2]), _dark(page[:, page.shape[1] // 2 :])
        assert left > 0.6 * right, (left, right)


def test_a_held_scan_is_described_as_held_for_a_person_not_as_being_analysed(
    north, django_capture_on_commit_callbacks
):
    from apps.scans.holds import scan_hold
    from apps.scans.services import scan_claim

    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(
            case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes("glioma", 2))]
        ).scans
    assert scan_hold(scan=scan_claim(scan_id=scan.pk))  # the worker found text burnt into it
    text = " ".join(pdf_text(case_report_export(user=north.staff, case_id=north.case.pk).pdf).split())
    assert "Held for a person's decision: text is burnt into the image" in text
    assert "Still being analysed" not in text
