"""The upload: the one intake entry point (`scans_upload`) and the rows and files it writes."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from apps.accounts.clinics import require_same_clinic
from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.cases.models import Case
from mri.intake.sequence import UNKNOWN as UNKNOWN_SEQUENCE
from mri.intake.sequence import SequenceGuess, dataset_attributes, infer_from_dicom

from ..ingest import DicomSlice, ImageItem, Skipped, UploadRefused, check_uploads
from ..ingest import sha256 as ingest_sha256
from ..models import Scan, StudyUpload, _original_path
from . import files
from .publishing import analysis_groups, publish_on_commit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadOutcome:
    """The scans one request created (JPEG/PNG, at once), what it skipped (zip members that are
    not MR DICOM) and the DICOM studies it received (unpacked into scans by a worker job)."""

    scans: list[Scan]
    skipped: list[Skipped]
    studies: list[StudyUpload] = field(default_factory=list)


def _uid_key() -> str:
    return settings.DICOM_UID_KEY or hashlib.sha256(f"dicom-uid:{settings.SECRET_KEY}".encode()).hexdigest()


def _new_scan(*, case: Case, uploaded_by: User, item: ImageItem | DicomSlice) -> Scan:
    if isinstance(item, DicomSlice):
        scan = Scan(
            case=case,
            uploaded_by=uploaded_by,
            original_filename=item.name[-255:],
            sha256=ingest_sha256(item.dicom),
            size_bytes=len(item.dicom),
            width=item.width,
            height=item.height,
            format="DICOM",
            series_uid=item.series_uid[:64],
            slice_order=item.slice_order,
            instance_number=item.instance_number,
            source_patient_id=item.source_patient_id,
            exam_date=item.exam_date,
            series_description=item.series_description[:64],
        )
        guess = dicom_sequence(item.dicom)
        scan.sequence, scan.sequence_source = guess.sequence, guess.source
        scan.image.save("scan", ContentFile(item.png), save=False)
        scan.dicom.save("scan", ContentFile(item.dicom), save=False)
        return scan
    scan = Scan(
        case=case,
        uploaded_by=uploaded_by,
        original_filename=item.name,
        sha256=ingest_sha256(item.data),
        size_bytes=len(item.data),
        width=item.width,
        height=item.height,
        format=item.format,
    )
    scan.image.save("scan", ContentFile(item.data), save=False)
    return scan


def dicom_sequence(dicom: bytes) -> SequenceGuess:
    """The MRI sequence of a stored (de-identified) DICOM slice, from its attributes: the timings
    survive de-identification, and so do the series description and the contrast agent unless
    they named the patient (mri/intake/dicom/deidentify.py's allow-list; mri/intake/sequence.py says
    what an emptied one leaves)."""
    import io

    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(dicom), stop_before_pixels=True, force=True)
    except Exception:  # a file ingest accepted but pydicom cannot re-read: say unknown
        logger.warning("sequence: the stored DICOM could not be re-read", exc_info=True)
        return UNKNOWN_SEQUENCE
    return infer_from_dicom(dataset_attributes(dataset))


def scans_upload(
    *, case: Case, uploaded_by: User, uploads: Sequence[UploadedFile], addendum: str = "", study: bool = False
) -> UploadOutcome:
    """THE intake entry point (pages, API, the PACS receiver, management commands): store what
    one request uploaded (JPEG/PNG, DICOM files, zipped DICOM studies) for a case and queue the
    work after the commit.

    Everything is checked before anything is written (apps/scans/ingest.py `check_uploads`), so
    one bad file refuses the whole request with every problem listed. JPEG/PNG become scans at
    once. DICOM is a study, a unit of work: the request reads its HEADERS only (no pixel is
    decoded here), budgets the whole request from them, stores the original bytes as they came
    (one StudyUpload) and returns; a worker job (`study_unpack`) decodes, de-identifies and
    splits it, then its slices are analysed in batches. A failure while saving removes the
    files already written and rolls back the rows. A signed case takes new scans only with an
    `addendum` saying why, kept on the case.

    `study=True` makes the request's JPEG/PNG files one study too (one batch); otherwise each is
    its own message, and several workers share the upload. Callers holding bytes wrap them in
    `SimpleUploadedFile`; a DICOM series of one association should come in one call, so it is
    one study.
    """
    require_same_clinic(uploaded_by, case)
    if not uploads:
        raise ValidationError("Choose at least one scan to upload.")
    if case.is_signed and not uploaded_by.can_review:
        from apps.cases.services import ONLY_RADIOLOGISTS_ADD_ADDENDA

        raise PermissionDenied(ONLY_RADIOLOGISTS_ADD_ADDENDA)
    if case.is_signed and not addendum.strip():
        raise ValidationError({"addendum": "This case is signed: new scans need an addendum saying why."})
    try:
        checked = check_uploads(uploads)
    except UploadRefused as exc:
        raise ValidationError([ValidationError(problem, code=exc.code) for problem in exc.problems]) from exc

    studies: list[StudyUpload] = []
    with files.removed_on_failure() as written, transaction.atomic():
        # Locked, so a sign-off cannot slip between this check and the new rows.
        locked = Case.objects.select_for_update().get(pk=case.pk)
        if locked.is_signed:
            if not addendum.strip():
                raise ValidationError({"addendum": "This case is signed: new scans need an addendum saying why."})
            from apps.cases.services import case_addendum_add

            case_addendum_add(case=locked, author=uploaded_by, text=addendum)
        scans = []
        for item in checked.images:
            scan = _new_scan(case=case, uploaded_by=uploaded_by, item=item)
            written.append(scan.image.name)
            scan.save()
            audit_record(actor=uploaded_by, action=AuditAction.UPLOAD, obj=scan)
            logger.info(
                "scan %s: stored %s (%s %dx%d, %d bytes) for case %s", scan.pk, scan.image.name, scan.format,
                scan.width, scan.height, scan.size_bytes, case.pk, extra={"scan_id": scan.pk},
            )  # fmt: skip
            scans.append(scan)
        if checked.sources:
            studies.append(_store_sources(case=case, uploaded_by=uploaded_by, checked=checked, written=written))
        singles, groups = analysis_groups(scans, study=study)
        # After commit: a worker must never look for a row that is not there yet.
        publish_on_commit(singles, groups, study_ids=[received.pk for received in studies])
    return UploadOutcome(scans=scans, skipped=checked.skipped, studies=studies)


def _store_sources(*, case: Case, uploaded_by: User, checked: Any, written: list[str]) -> StudyUpload:
    """The request's DICOM sources stored as they came (no decoding), as one StudyUpload."""
    received = StudyUpload(
        case=case,
        uploaded_by=uploaded_by,
        slices_expected=checked.slices,
        skipped=[vars(item) for item in checked.skipped],
    )
    sources = []
    for source in checked.sources:
        source.upload.seek(0)
        path = default_storage.save(_original_path(received, source.name), source.upload)
        written.append(path)
        sources.append({"name": source.name, "path": path, "kind": source.kind})
    received.sources = sources
    received.save()
    logger.info(
        "study upload %s: received %d file(s), %d slice(s) declared, for case %s", received.pk, len(sources),
        checked.slices, case.pk,
    )  # fmt: skip
    return received
