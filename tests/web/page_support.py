"""Page-test data built with the real write functions (services), two clinics side by side.

A module with its own name (not conftest) so test files can import it: tests/ has no
__init__.py, so each test folder is on sys.path under pytest's default import mode."""
from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.accounts.models import Role, User
from apps.accounts.services import clinic_create, user_create
from apps.cases.models import Case
from apps.cases.services import case_create
from apps.patients.models import Patient
from apps.patients.services import patient_create
from apps.scans.models import Scan
from apps.scans.services import scan_claim, scan_complete, scan_reject, scans_submit
from workers.imaging import CLASS_NAMES
from workers.results import AnalysisResult

PASSWORD = "pages-test-password"


def png_upload(name: str = "slice.png", size: int = 96) -> SimpleUploadedFile:
    """A small gray PNG that passes the content checks (soft rings: not blank, not noise)."""
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    pixels = (np.clip(1 - radius, 0, 1) * (0.6 + 0.4 * np.cos(radius * 12)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return SimpleUploadedFile(name, buf.getvalue(), content_type="image/png")


def finish_scan(scan: Scan, label: str = "glioma", top: float = 0.7) -> None:
    """queued → processing → done through the services the worker uses; `top` is the
    label's probability, the rest is shared by the other classes."""
    claimed = scan_claim(scan_id=scan.pk)
    assert claimed is not None
    probs = {name: (top if name == label else (1 - top) / 3) for name in CLASS_NAMES}
    overlay = io.BytesIO()
    Image.new("RGB", (scan.width, scan.height), (255, 0, 0)).save(overlay, format="PNG")
    scan_complete(
        scan=claimed,
        result=AnalysisResult(
            label=label,
            probabilities=probs,
            heatmap=np.zeros((scan.height, scan.width), dtype=np.float32),
            overlay_png=overlay.getvalue(),
            model_version="test-model-1",
            timings_ms={"decode_ms": 3.0, "forward_ms": 120.0},
        ),
    )


def reject_scan(scan: Scan, ood_score: float = 41.5) -> None:
    """queued → processing → rejected (not a brain MRI slice) through the worker's services."""
    claimed = scan_claim(scan_id=scan.pk)
    assert claimed is not None
    result = AnalysisResult(
        label="notumor",
        probabilities=dict.fromkeys(CLASS_NAMES, 0.25),
        heatmap=np.zeros((scan.height, scan.width), dtype=np.float32),
        overlay_png=b"",
        model_version="test-model-1",
        ood_score=ood_score,
        out_of_distribution=True,
    )
    assert scan_reject(scan=claimed, result=result)


class ClinicWorld(NamedTuple):
    staff: User
    radiologist: User
    patient: Patient
    case: Case
    scan: Scan


def make_world(name: str, django_capture_on_commit_callbacks) -> ClinicWorld:
    clinic = clinic_create(name=name)
    staff = user_create(clinic=clinic, username=f"{name}-staff", password=PASSWORD, role=Role.CLINIC_STAFF)
    radiologist = user_create(
        clinic=clinic, username=f"{name}-rad", password=PASSWORD, role=Role.RADIOLOGIST
    )
    patient = patient_create(created_by=staff, mrn=f"{name}-001", name=f"{name} Patient")
    case = case_create(created_by=staff, patient=patient, title=f"{name} case")
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_submit(case=case, uploaded_by=staff, uploads=[png_upload()])
    return ClinicWorld(staff, radiologist, patient, case, scan)

