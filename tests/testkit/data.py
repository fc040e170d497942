"""Test data built with the real write functions (services): clinics, users, patients, cases
and scans, two clinics side by side. Every test folder uses these builders."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.accounts.models import Clinic, Role, User
from apps.accounts.services import clinic_create, user_create
from apps.cases.models import Case
from apps.cases.services import case_create
from apps.patients.models import Patient
from apps.patients.services import patient_create
from apps.scans.models import Scan, StudyUpload
from apps.scans.services import UploadOutcome, scan_claim, scan_complete, scan_reject, scans_upload
from mri.intake.decode import Decoded, decode_gray, decode_gray_bounded
from mri.results import AnalysisResult, opening_label
from mri.vocabulary import CLASS_NAMES
from tests.testkit.scans import png_bytes, real_scan_bytes

PASSWORD = "test-password-7"


def api_token(user: User) -> str:
    """A new API token (django-rest-knox: the key is returned once, only its digest is stored)."""
    from knox.models import AuthToken

    return AuthToken.objects.create(user=user)[1]


def upload(data: bytes, name: str = "scan.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def png_upload(name: str = "slice.png", size: int = 96) -> SimpleUploadedFile:
    """A small gray PNG that passes the content checks."""
    return upload(png_bytes((size, size)), name, "image/png")


class PixelAnalyzer:
    """Stands in for the model in tests of the task and the pages: it really decodes the scan
    (so an unreadable file raises ScanDecodeError like the runtime does) and returns a result
    of the contract's shape, a heatmap of the scan's size; `top` is the label's probability,
    the rest is shared by the other classes. It is not the thing under test."""

    model_version = "pixel-test-1"
    ood_threshold = 2.5  # what its pretend gate holds the score against, and that gate's name
    ood_gate = "0123456789abcdef" * 4

    def __init__(
        self,
        label: str = "glioma",
        top: float = 0.7,
        model_version: str | None = None,
        out_of_distribution: bool = False,
    ) -> None:
        self.label = label
        self.top = top
        self.model_version = model_version or PixelAnalyzer.model_version
        self.out_of_distribution = out_of_distribution  # what the gate would say (mri/model/ood.py)
        self.calls = 0
        self.batch_calls = 0
        self.decoded_given = 0  # slices handed over already decoded (by the text check that read them)
        self.unvalidated_given = 0  # slices said to be on a sequence the model is not validated for
        self.explain_calls = 0
        self._counting = threading.Lock()  # a study task analyses slices on several threads

    def analyze(self, data: bytes, decoded: Decoded | None = None, unvalidated: bool = False) -> AnalysisResult:
        """The runtime's one-scan entry point; `decoded`, the pixels the worker's text check
        decoded already, must be those of `data` (checked); the stand-in reads the bytes. Like
        the runtime, an unreassuring "No tumour" (low confidence, or `unvalidated`) comes with
        the likeliest tumour class's map (`explain`'s, without counting as a call to it)."""
        _check_pixels([data], None if decoded is None else [decoded])
        with self._counting:
            self.calls += 1
            self.decoded_given += decoded is not None
            self.unvalidated_given += unvalidated
        gray = decode_gray(data)
        overlay = io.BytesIO()
        Image.fromarray((gray * 255).astype(np.uint8)).convert("RGB").save(overlay, format="PNG")
        rest = (1.0 - self.top) / (len(CLASS_NAMES) - 1)
        probabilities = {name: (self.top if name == self.label else rest) for name in CLASS_NAMES}
        opens_on = opening_label(self.label, probabilities, unvalidated)
        tumour_label = opens_on if opens_on != self.label else ""
        return AnalysisResult(
            label=self.label,
            probabilities=probabilities,
            heatmap=gray.astype(np.float32),
            overlay_png=overlay.getvalue(),
            model_version=self.model_version,
            timings_ms={"decode": 1.0, "inference": 2.0, "gradcam_and_overlay": 1.0},  # the runtime's keys
            ood_score=41.5 if self.out_of_distribution else 0.8,
            out_of_distribution=self.out_of_distribution,
            ood_threshold=self.ood_threshold,
            ood_gate=self.ood_gate,
            tumour_label=tumour_label,
            tumour_heatmap=self._class_map(data, tumour_label) if tumour_label else None,
        )

    def analyze_batch(
        self, scans: list[bytes], decoded: list[Decoded] | None = None, unvalidated: list[bool] | None = None
    ) -> list[AnalysisResult]:
        """The runtime's batch entry point: one call for the slices of a study. `decoded`, the
        pixels a caller decoded already, must be those of `scans` (checked); the stand-in analyses
        the bytes all the same."""
        _check_pixels(scans, decoded)
        if unvalidated is not None and len(unvalidated) != len(scans):
            pytest.fail(f"{len(unvalidated)} sequence flags for {len(scans)} scans")
        with self._counting:
            self.batch_calls += 1
            self.calls -= len(scans)  # `calls` counts slices analysed one by one
        pixels, flags = decoded or [None] * len(scans), unvalidated or [False] * len(scans)
        return [self.analyze(*scan) for scan in zip(scans, pixels, flags, strict=True)]

    def explain(self, data: bytes, label: str) -> np.ndarray:
        """A map of the scan's size that differs per class: the scan's pixels in one quadrant
        (a different one for each class), zeros elsewhere."""
        self.calls += 1
        self.explain_calls += 1
        return self._class_map(data, label)

    @staticmethod
    def _class_map(data: bytes, label: str) -> np.ndarray:
        gray = decode_gray(data).astype(np.float32)
        quadrant = CLASS_NAMES.index(label)
        mask = np.zeros_like(gray)
        h, w = gray.shape
        top, left = (quadrant // 2) * (h // 2), (quadrant % 2) * (w // 2)
        mask[top : top + h // 2, left : left + w // 2] = 1.0
        return gray * mask


def _check_pixels(scans: list[bytes], decoded: list[Decoded] | None) -> None:
    """The pixels a caller hands over must be its scans' own, in order. pytest.fail, not an
    assertion: a caller's broad `except Exception` (a batch retried one slice at a time) must not
    swallow the mistake."""
    if decoded is None:
        return
    if len(decoded) != len(scans):
        pytest.fail(f"{len(decoded)} decoded slices for {len(scans)} scans")
    for i, (pixels, data) in enumerate(zip(decoded, scans, strict=True)):
        if not np.array_equal(pixels.gray, decode_gray_bounded(data)):
            pytest.fail(f"the pixels handed over for slice {i} are not that slice's")


def finish_scan(scan: Scan, label: str = "glioma", top: float = 0.7, model_version: str | None = None) -> Scan:
    """queued → processing → done through the same services the worker uses; `top` is the
    label's calibrated probability."""
    claimed = scan_claim(scan_id=scan.pk)
    assert claimed is not None
    with scan.image.open("rb") as handle:
        data = handle.read()
    scan_complete(scan=claimed, result=PixelAnalyzer(label, top, model_version).analyze(data))
    return Scan.objects.get(pk=scan.pk)


def finish_scan_with_class_maps(scan: Scan, label: str = "glioma", top: float = 0.9) -> Scan:
    """Like finish_scan, with maps that differ per class (PixelAnalyzer.explain: one quadrant
    each), the server's overlay drawn from the predicted class's map by the worker's own
    renderer (jet), and every other class's heatmap stored as a worker would (no worker)."""
    from apps.scans.models import ClassHeatmap
    from apps.scans.services import class_heatmap_complete
    from mri.model.overlays import encode_heatmap_png, encode_png, render_overlay

    claimed = scan_claim(scan_id=scan.pk)
    assert claimed is not None
    with scan.image.open("rb") as handle:
        data = handle.read()
    analyzer = PixelAnalyzer(label, top)
    own_map = analyzer.explain(data, label)
    result = dataclasses.replace(
        analyzer.analyze(data), heatmap=own_map, overlay_png=encode_png(render_overlay(decode_gray(data), own_map))
    )
    prediction = scan_complete(scan=claimed, result=result)
    assert prediction is not None
    for other in CLASS_NAMES:
        if other != label:
            heatmap = ClassHeatmap.objects.create(prediction=prediction, label=other)
            png = encode_heatmap_png(analyzer.explain(data, other))
            assert class_heatmap_complete(heatmap=heatmap, png=png, model_version=analyzer.model_version)
    return Scan.objects.get(pk=scan.pk)


def reject_scan(scan: Scan, ood_score: float = 41.5) -> Scan:
    """queued → processing → rejected (not a brain MRI slice: the out-of-distribution gate said
    so) through the worker's services."""
    claimed = scan_claim(scan_id=scan.pk)
    assert claimed is not None
    with scan.image.open("rb") as handle:
        data = handle.read()
    result = PixelAnalyzer(out_of_distribution=True).analyze(data)
    assert scan_reject(scan=claimed, result=dataclasses.replace(result, ood_score=ood_score))
    return Scan.objects.get(pk=scan.pk)


def make_case(
    world: ClinicWorld,
    capture: Callable,
    results: list[tuple[str, float] | None],
    *,
    created_at: datetime | None = None,
    title: str = "",
    patient: Patient | None = None,
    model_version: str | None = None,
) -> Case:
    """A case of `world`'s clinic with one scan per entry of `results`: (label, top probability)
    analysed through the worker's services, or None for a scan left queued. `created_at` backdates
    the case (the worklist orders by it)."""
    case = case_create(created_by=world.staff, patient=patient or world.patient, title=title)
    scans = []
    if results:
        with capture(execute=False):
            uploads = [upload(png_bytes(), f"s{i}.png") for i in range(len(results))]
            scans = scans_upload(case=case, uploaded_by=world.staff, uploads=uploads).scans
    for scan, result in zip(scans, results, strict=True):
        if result is not None:
            finish_scan(scan, result[0], result[1], model_version)
    if created_at is not None:
        Case.objects.filter(pk=case.pk).update(created_at=created_at)
        case.refresh_from_db()
    return case


def clinic_user(clinic_name: str, username: str, role: str = Role.CLINIC_STAFF) -> User:
    """A new clinic with one user (password PASSWORD): for tests that build the rest over HTTP."""
    return user_create(clinic=clinic_create(name=clinic_name), username=username, password=PASSWORD, role=role)


def reading_desk(
    clinic_name: str, prefix: str, *, mrn: str, patient_name: str, password: str = PASSWORD
) -> tuple[User, Patient]:
    """A new clinic with a clinic-staff user `<prefix>-staff` and a radiologist `<prefix>-rad`
    (both with `password`) and a patient the staff user registered: (staff, patient)."""
    clinic = clinic_create(name=clinic_name)
    staff = user_create(clinic=clinic, username=f"{prefix}-staff", password=password, role=Role.CLINIC_STAFF)
    user_create(clinic=clinic, username=f"{prefix}-rad", password=password, role=Role.RADIOLOGIST)
    return staff, patient_create(created_by=staff, mrn=mrn, name=patient_name)


class ClinicWorld(NamedTuple):
    clinic: Clinic
    staff: User
    radiologist: User
    admin: User
    patient: Patient
    case: Case
    scan: Scan  # a real scan; done (prediction, heatmap, overlay) unless built with finished=False


def make_world(name: str, capture: Callable, *, finished: bool = True) -> ClinicWorld:
    """A clinic `name` with one user per role, a patient, a case and one real scan.
    `capture` is pytest-django's django_capture_on_commit_callbacks: nothing is published."""
    clinic = clinic_create(name=name)
    staff = user_create(clinic=clinic, username=f"{name}-staff", password=PASSWORD, role=Role.CLINIC_STAFF)
    radiologist = user_create(clinic=clinic, username=f"{name}-rad", password=PASSWORD, role=Role.RADIOLOGIST)
    admin = user_create(clinic=clinic, username=f"{name}-admin", password=PASSWORD, role=Role.CLINIC_ADMIN)
    patient = patient_create(created_by=staff, mrn=f"{name.upper()}-001", name=f"{name} Patient")
    case = case_create(created_by=staff, patient=patient, title=f"{name} case")
    with unpublished(capture):  # under a live server too (autocommit), no worker ever takes it
        (scan,) = scans_upload(case=case, uploaded_by=staff, uploads=[upload(real_scan_bytes())]).scans
    return ClinicWorld(clinic, staff, radiologist, admin, patient, case, finish_scan(scan) if finished else scan)


def upload_refusal(world: ClinicWorld, uploads: list[SimpleUploadedFile]) -> list[str]:
    """The messages `scans_upload` refuses the batch with (the world's staff, into its case):
    the test fails if the batch is taken."""
    with pytest.raises(ValidationError) as refused:
        scans_upload(case=world.case, uploaded_by=world.staff, uploads=uploads)
    return refused.value.messages


@contextlib.contextmanager
def unpublished(capture: Callable) -> Iterator[None]:
    """Scans stored but never sent to a worker: the test gives them their results through the
    worker's services. `capture` alone is not enough under a live server (autocommit: on_commit
    fires at once), where another module's e2e worker on the same broker would take a slice."""
    from unittest import mock

    from apps.scans.services import publishing

    with capture(execute=False), mock.patch.object(publishing, "scan_enqueue", return_value=False):
        yield


def case_with_results(
    world: ClinicWorld, capture: Callable, results: list[tuple[str, float] | str], *, title: str = "Study"
) -> tuple[Case, list[Scan]]:
    """A case of the world's patient, one PNG slice per entry: analysed as (label, probability)
    or "rejected" (not a brain MRI slice), through the worker's services."""
    case = case_create(created_by=world.staff, patient=world.patient, title=title)
    with unpublished(capture):
        scans = scans_upload(
            case=case, uploaded_by=world.staff, uploads=[png_upload(f"slice-{i}.png") for i in range(len(results))]
        ).scans
    for scan, result in zip(scans, results, strict=True):
        if result == "rejected":
            reject_scan(scan)
        else:
            finish_scan(scan, *result)
    return case, scans


def dicom_scan(world: ClinicWorld, capture: Callable) -> Scan:
    """A DICOM scan (a real slice made into an MR DICOM) in a second case of the world's patient."""
    from tests.testkit import dicom as dicomdata

    case = case_create(created_by=world.staff, patient=world.patient, title="DICOM case")
    data = dicomdata.mr_slice_from_jpeg(real_scan_bytes(), identity=dicomdata.Identity(patient_id=world.patient.mrn))
    with capture(execute=False):
        (scan,) = unpack(
            scans_upload(case=case, uploaded_by=world.staff, uploads=[upload(data, "slice.dcm", "application/dicom")])
        ).scans
    return scan


def unpack(outcome: UploadOutcome) -> UploadOutcome:
    """Run the worker's job (apps/scans/studies.py, the code `ingest_study` runs) on every DICOM
    study the upload received, here and now; the outcome then lists the scans of the JPEG/PNG
    files and of the unpacked studies, and everything skipped, as the request used to."""
    from apps.scans.ingest import Skipped

    scans, skipped = list(outcome.scans), list(outcome.skipped)
    for received in outcome.studies:
        claimed = unpack_study(received)
        if claimed.status == "failed":
            raise ValidationError(claimed.error)
        scans += list(claimed.scans.order_by("pk"))
        skipped = [Skipped(**item) for item in claimed.skipped]
    return UploadOutcome(scans=scans, skipped=skipped, studies=outcome.studies)


def unpack_study(received: StudyUpload) -> StudyUpload:
    """The worker's job on one received study (claim, then unpack), the study refreshed after."""
    from apps.scans.studies import study_claim, study_unpack

    claimed = study_claim(study_id=received.pk)
    assert claimed is not None, f"study upload {received.pk} was not claimable"
    study_unpack(study=claimed)
    claimed.refresh_from_db()
    return claimed


def unpack_received() -> list[StudyUpload]:
    """The worker's job on every study upload still waiting to be unpacked, oldest first (what
    `ingest_study` does for each instance the DICOM network received)."""
    waiting = StudyUpload.objects.filter(status="received").order_by("pk")
    return [unpack_study(received) for received in waiting]


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


class PublishedTask(NamedTuple):
    """One message read back from a queue (tests/apps' `broker` fixtures)."""

    task: str
    args: list
    routing_key: str
