"""Received DICOM instances (C-STORE or STOW-RS) → the same intake as an upload.

`instance_receive` is the one way in for both: it checks the instance, finds or opens the
study's case in the sender's clinic (one case per Study Instance UID; the patient matched by
Patient ID to the clinic's MRN, else created from the patient module), refuses it when that
case was deleted or is signed (only a radiologist's addendum changes a signed case), skips an
instance it already has (same SOP Instance UID: not analysed twice), and hands the bytes,
named by the instance's numbers (never its UID), to the upload service (`_submit`, the ONE
call into apps.scans: limits, original stored as one StudyUpload, the unpacking job queued).
Nothing is decoded here (STOW-RS runs in the web process): the worker's job decodes,
de-identifies and makes the scans, and `signals.py` then links each frame row made here to
its scan. An instance whose job failed may be sent again. The original identifiers are kept in the
database only (DicomStudy/DicomInstance), to send results back into the same study.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction

from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.cases.models import Case
from apps.cases.services import case_create
from apps.patients.models import Patient, Sex
from apps.patients.services import patient_create
from apps.scans.models import StudyStatus, StudyUpload
from mri.intake import dicom
from mri.intake.limits import ScanDecodeError

from .models import DicomInstance, DicomNode, DicomStudy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    """What became of one instance: `ok` False with `reason` for a refused one."""

    ok: bool
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    reason: str = ""
    duplicate: bool = False
    case_id: int | None = None
    scans: int = 0  # the frames it holds: the scans it becomes once the worker has unpacked it


def _text(dataset, keyword: str, limit: int = 64) -> str:
    return str(dataset.get(keyword, "") or "").strip()[:limit]


CASE_DELETED = "The study's case was deleted."
# At most 64 characters: the C-STORE Error Comment and STOW-RS reason limit (PS3.7).
CASE_SIGNED = "The case is signed: a radiologist adds to it by addendum."


def _submit(*, case: Case, actor: User, data: bytes, name: str) -> StudyUpload:
    """The upload service, the single place the network intake calls it: the instance's bytes
    stored as one StudyUpload (headers checked, nothing decoded), its job queued on commit."""
    from apps.scans.services import scans_upload

    upload = SimpleUploadedFile(name, data, content_type="application/dicom")
    (received,) = scans_upload(case=case, uploaded_by=actor, uploads=[upload]).studies
    return received


def _upload_name(dataset) -> str:
    """The name the upload (and its scans' original_filename, shown in the API and pages) gets:
    series and instance numbers, never the SOP Instance UID (an original identifier)."""
    series, number = ("".join(ch for ch in _text(dataset, key, 12) if ch.isdigit())
                      for key in ("SeriesNumber", "InstanceNumber"))  # fmt: skip
    parts = [f"series-{series}"] if series else []
    parts.append(f"instance-{number}" if number else "instance")
    return "-".join(parts) + ".dcm"


def _refusal(case: Case) -> str:
    """Why a study's case takes no more instances from the network, or "". A deleted case is not
    reopened; a signed one changes only by a radiologist's addendum, and the sender (a node's
    service account, a STOW-RS token user) is no radiologist."""
    if case.deleted_at is not None:
        return CASE_DELETED
    if case.is_signed:
        return CASE_SIGNED
    return ""


def _patient_name(dataset) -> str:
    raw = _text(dataset, "PatientName", 200)
    parts = [p.strip() for p in raw.split("^")]
    family, given = ([*parts, "", ""])[:2]
    name = " ".join(p for p in (given, family) if p) or raw
    return name or "Unknown (from DICOM)"


def _birth_date(dataset) -> datetime.date | None:
    try:
        return datetime.datetime.strptime(_text(dataset, "PatientBirthDate", 8), "%Y%m%d").date()
    except ValueError:
        return None


def _patient_for(*, actor: User, dataset) -> Patient:
    patient_id = _text(dataset, "PatientID") or f"DICOM-{_text(dataset, 'StudyInstanceUID')[-40:]}"
    patient = Patient.objects.for_clinic(actor.clinic_id).filter(mrn=patient_id).first()
    if patient is not None:
        return patient
    sex = _text(dataset, "PatientSex", 1).upper()
    try:
        return patient_create(
            created_by=actor, mrn=patient_id, name=_patient_name(dataset)[:200], date_of_birth=_birth_date(dataset),
            sex=sex if sex in Sex.values else "",
        )  # fmt: skip
    except ValidationError:
        # Created by a concurrent association a moment ago.
        return Patient.objects.for_clinic(actor.clinic_id).get(mrn=patient_id)


def _study_for(*, node: DicomNode | None, actor: User, dataset) -> DicomStudy:
    study_uid = _text(dataset, "StudyInstanceUID")
    study = DicomStudy.objects.for_clinic(actor.clinic_id).filter(study_instance_uid=study_uid).first()
    if study is not None:
        return study
    patient = _patient_for(actor=actor, dataset=dataset)
    title = _text(dataset, "StudyDescription", 150) or "MR study"
    source = f" from {node.ae_title}" if node else " (STOW-RS)"
    try:
        with transaction.atomic():
            case = case_create(created_by=actor, patient=patient, title=f"{title}{source}")
            return DicomStudy.objects.create(
                clinic_id=actor.clinic_id,
                node=node,
                case=case,
                study_instance_uid=study_uid,
                patient_id=_text(dataset, "PatientID"),
                patient_name=_text(dataset, "PatientName", 200),
                patient_birth_date=_text(dataset, "PatientBirthDate", 8),
                patient_sex=_text(dataset, "PatientSex", 16),
                study_date=_text(dataset, "StudyDate", 8),
                study_time=_text(dataset, "StudyTime", 16),
                study_id=_text(dataset, "StudyID", 16),
                accession_number=_text(dataset, "AccessionNumber", 16),
                referring_physician_name=_text(dataset, "ReferringPhysicianName", 200),
            )
    except IntegrityError:
        return DicomStudy.objects.for_clinic(actor.clinic_id).get(study_instance_uid=study_uid)


def _cut_short(dataset) -> str:
    """Why uncompressed pixel data is shorter than its rows × columns × frames declare (a file
    cut short in transit), else "". Checked on arrival, nothing decoded: the C-STORE or STOW-RS
    answer is the only place the sender learns it failed. Compressed streams are left to the
    worker's job (a failed one is shown with the outbox and may be sent again)."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or syntax.is_compressed or "PixelData" not in dataset:
        return ""
    pixels = int(dataset.get("Rows", 0) or 0) * int(dataset.get("Columns", 0) or 0)
    pixels *= dicom.frame_count(dataset) * int(dataset.get("SamplesPerPixel", 1) or 1)
    bits = int(dataset.get("BitsAllocated", 8) or 8)
    expected = (pixels + 7) // 8 if bits == 1 else pixels * ((bits + 7) // 8)
    held = len(dataset.PixelData or b"")
    if held >= expected:
        return ""
    return f"The pixel data is cut short ({held} of {expected} bytes): the instance is truncated."


def _uids_of(data: bytes) -> tuple[str, str]:
    """(SOP Instance UID, SOP Class UID) of a refused instance, where its header still reads,
    so the sender learns which instance failed."""
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO

    try:
        header = dcmread(DicomBytesIO(data), stop_before_pixels=True, force=True,
                         specific_tags=["SOPInstanceUID", "SOPClassUID"])  # fmt: skip
        return _text(header, "SOPInstanceUID"), _text(header, "SOPClassUID")
    except Exception:  # the header itself is unreadable
        return "", ""


def instance_receive(*, data: bytes, node: DicomNode | None, actor: User, source: str) -> Received:
    """Take one DICOM instance into the actor's clinic. Never raises for bad input: a refused
    instance comes back with `ok` False and the reason (nothing is stored then)."""
    try:
        dataset = dicom.read_dicom(data)  # parseable, MR, pixel data, sizes; names the reason
    except ScanDecodeError as exc:
        return Received(False, *_uids_of(data), reason=exc.args[0])
    except Exception as exc:  # a truncated or mangled file can fail anywhere inside pydicom
        reason = f"The instance could not be read as DICOM ({type(exc).__name__})."
        return Received(False, *_uids_of(data), reason=reason)
    sop_uid, sop_class = _text(dataset, "SOPInstanceUID"), _text(dataset, "SOPClassUID")
    if reason := _cut_short(dataset):
        return Received(ok=False, sop_instance_uid=sop_uid, sop_class_uid=sop_class, reason=reason)
    if not sop_uid or not _text(dataset, "StudyInstanceUID"):
        return Received(ok=False, sop_instance_uid=sop_uid, sop_class_uid=sop_class,
                        reason="The instance has no SOP Instance UID or Study Instance UID.")  # fmt: skip
    mine = DicomInstance.objects.for_clinic(actor.clinic_id).filter(sop_instance_uid=sop_uid)
    known = mine.exclude(upload__status=StudyStatus.FAILED).select_related("study__case").first()
    if known is not None and known.study.case.deleted_at is not None:
        return Received(ok=False, sop_instance_uid=sop_uid, sop_class_uid=sop_class, reason=CASE_DELETED)
    if known is not None:  # received before: stored, being unpacked or analysed
        return Received(ok=True, sop_instance_uid=sop_uid, sop_class_uid=sop_class, duplicate=True,
                        case_id=known.study.case_id)  # fmt: skip
    upload: StudyUpload | None = None
    try:
        with transaction.atomic():
            study = _study_for(node=node, actor=actor, dataset=dataset)
            case = Case.all_objects.get(pk=study.case_id)  # a deleted one too: refused with why
            if reason := _refusal(case):
                raise ValidationError(reason)
            upload = _submit(case=case, actor=actor, data=data, name=_upload_name(dataset))
            # An earlier copy whose unpacking failed gives way to this one.
            mine.filter(study=study, upload__status=StudyStatus.FAILED).delete()
            series_uid = _text(dataset, "SeriesInstanceUID")
            frames = dicom.frame_count(dataset)
            DicomInstance.objects.bulk_create(
                DicomInstance(study=study, upload=upload, sop_instance_uid=sop_uid, sop_class_uid=sop_class,
                              series_instance_uid=series_uid, frame_number=frame)
                for frame in range(1, frames + 1)
            )  # fmt: skip
            detail = f"DICOM {source}: {frames} frame(s) received"
            audit_record(actor=actor, action=AuditAction.UPLOAD, obj=case, detail=detail)
    except ValidationError as exc:
        messages = exc.messages if hasattr(exc, "messages") else [str(exc)]
        return Received(ok=False, sop_instance_uid=sop_uid, sop_class_uid=sop_class, reason="; ".join(messages))
    except PermissionDenied as exc:  # the upload service's own checks (a signed case is refused above)
        reason = str(exc) or "The sender may not add to this study."
        return Received(ok=False, sop_instance_uid=sop_uid, sop_class_uid=sop_class, reason=reason)
    except IntegrityError:
        # The same instance arrived on another association a moment ago: this copy's rows are
        # rolled back, and its stored original (identifiers inside) must not stay behind.
        for stored in upload.sources if upload is not None else []:
            default_storage.delete(stored["path"])
        return Received(ok=True, sop_instance_uid=sop_uid, sop_class_uid=sop_class, duplicate=True)
    logger.info("DICOM %s: instance %s (%d frame(s)) received as study upload %s of case %s", source, sop_uid,
                frames, upload.pk, case.pk)  # fmt: skip
    return Received(ok=True, sop_instance_uid=sop_uid, sop_class_uid=sop_class, case_id=case.pk, scans=frames)
