"""Writes for cases: create, sign-off and addenda, soft-delete, restore, purge after retention."""

import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.clinics import require_same_clinic, same_clinic
from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.patients.models import Patient
from apps.scans.models import Scan, ScanStatus

from .models import Case, CaseAddendum

ONLY_RADIOLOGISTS_ADD_ADDENDA = "Only radiologists add addenda (and so scans or readings) to a signed case."


def case_create(*, created_by: User, patient: Patient, title: str = "", clinical_notes: str = "") -> Case:
    """Open a case for a patient of the creator's clinic."""
    if not same_clinic(created_by, patient):
        # Same wording as a missing patient: another clinic's patient must look absent.
        raise ValidationError({"patient": "No such patient."})
    case = Case(
        clinic_id=created_by.clinic_id,
        patient=patient,
        created_by=created_by,
        title=title.strip(),
        clinical_notes=clinical_notes.strip(),
    )
    case.full_clean(exclude=["clinic", "patient", "created_by"])
    case.save()
    return case


def case_soft_delete(*, case: Case, by: User) -> Case:
    """Hide a case (and so its scans and files) everywhere at once; restorable with
    `case_restore` until `cases_purge_deleted` removes it after CASE_RETENTION_DAYS.

    Refused while one of its scans is queued or processing, or one of its DICOM studies is
    received or unpacking: a worker is about to write to it."""
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record
    from apps.scans.models import ScanStatus

    if not (by.is_superuser or same_clinic(by, case)):
        raise ValidationError("No such case.")  # another clinic's case looks absent
    with transaction.atomic():
        # Lock the row: an upload or a second deletion waits for this one.
        locked = Case.all_objects.select_for_update().get(pk=case.pk)
        if locked.deleted_at is not None:
            return locked
        if locked.scans.filter(status__in=ScanStatus.IN_FLIGHT).exists():
            raise ValidationError(
                f"{locked}: a scan of this case is still being analysed; delete it when the analysis has finished."
            )
        from apps.scans.models import StudyStatus, StudyUpload

        # As case_sign: a study job is about to create this case's scans.
        if StudyUpload.objects.filter(case=locked, status__in=StudyStatus.IN_FLIGHT).exists():
            raise ValidationError(
                f"{locked}: a DICOM study of this case is still being unpacked; delete it when its slices have "
                "been analysed."
            )
        locked.deleted_at = timezone.now()
        locked.deleted_by = by
        locked.save(update_fields=["deleted_at", "deleted_by"])
        audit_record(actor=by, action=AuditAction.DELETE, obj=locked)
    return locked


def case_restore(*, case: Case, by: User) -> Case:
    """Undo `case_soft_delete` (before the retention purge)."""
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record

    if not (by.is_superuser or same_clinic(by, case)):
        raise ValidationError("No such case.")  # another clinic's case looks absent
    with transaction.atomic():
        locked = Case.all_objects.select_for_update().get(pk=case.pk)
        if locked.deleted_at is None:
            return locked
        locked.deleted_at = None
        locked.deleted_by = None
        locked.save(update_fields=["deleted_at", "deleted_by"])
        audit_record(actor=by, action=AuditAction.RESTORE, obj=locked)
    return locked


def cases_purge_deleted(*, now: datetime.datetime | None = None, limit: int = 200) -> int:
    """Delete for good the cases soft-deleted more than CASE_RETENTION_DAYS ago: rows, scans,
    predictions, reviews, and (after each commit, apps/scans/signals.py) their files. One
    transaction and one audit event per case. Returns how many cases were purged."""
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record
    from apps.scans.models import ScanStatus

    cutoff = (now or timezone.now()) - datetime.timedelta(days=settings.CASE_RETENTION_DAYS)
    due = list(
        Case.all_objects.filter(deleted_at__lt=cutoff)
        .exclude(scans__status__in=ScanStatus.IN_FLIGHT)
        .order_by("deleted_at")
        .values_list("pk", flat=True)[:limit]
    )
    purged = 0
    for case_id in due:
        with transaction.atomic():
            case = Case.all_objects.select_for_update().filter(pk=case_id, deleted_at__lt=cutoff).first()
            if case is None:
                continue  # restored meanwhile
            audit_record(actor=None, action=AuditAction.PURGE, obj=case, detail=f"deleted {case.deleted_at:%Y-%m-%d}")
            case.delete()
            purged += 1
    return purged


def case_move(*, case: Case, patient: Patient, by: User) -> Case:
    """Give a case (a study uploaded under the wrong patient: its DICOM Patient ID names
    another MRN) to the right patient of the same clinic. Refused once signed; audited."""
    for owned in (case, patient):
        require_same_clinic(by, owned, what="case or patient")
    if case.is_signed:
        raise ValidationError("The case is signed: it cannot be moved to another patient.")
    if patient.pk == case.patient_id:
        return case
    before = case.patient_id
    with transaction.atomic():
        case.patient = patient
        case.save(update_fields=["patient"])
        audit_record(
            actor=by, action=AuditAction.ADMIN_CHANGE, obj=case, detail=f"moved from patient {before} to {patient.pk}"
        )
    return case


def case_addendum_add(*, case: Case, author: User, text: str) -> CaseAddendum:
    """Add text to a signed case (kept for good). Scans and reviews after sign-off call this
    with the reason they were given; a radiologist may also add a remark on its own."""
    require_same_clinic(author, case)
    if not author.can_review:
        raise PermissionDenied(ONLY_RADIOLOGISTS_ADD_ADDENDA)
    if not case.is_signed:
        raise ValidationError({"addendum": "Only a signed case takes addenda: edit the case instead."})
    text = text.strip()
    if not text:
        raise ValidationError({"addendum": "Write the addendum's text."})
    with transaction.atomic():
        addendum = CaseAddendum.objects.create(case=case, author=author, text=text)
        audit_record(actor=author, action=AuditAction.REVIEW, obj=case, detail="addendum")
    return addendum


def case_sign(*, case: Case, signer: User, conclusion: str) -> Case:
    """A radiologist signs the case with a conclusion; the case is then locked.

    Every analysed scan needs a reading first (the signature covers them), and no scan may
    still be waiting for the model. Signing twice is refused: a signed case takes addenda.
    """
    require_same_clinic(signer, case)
    if not signer.can_review:
        raise PermissionDenied("Only radiologists sign cases.")
    conclusion = conclusion.strip()
    if not conclusion:
        raise ValidationError({"conclusion": "Write the conclusion before signing."})
    with transaction.atomic():
        locked = Case.objects.select_for_update().get(pk=case.pk)
        if locked.is_signed:
            raise ValidationError(
                f"This case was signed on {locked.signed_at:%Y-%m-%d %H:%M}: add an addendum instead."
            )
        from apps.scans.models import StudyStatus, StudyUpload

        if StudyUpload.objects.filter(case=locked, status__in=StudyStatus.IN_FLIGHT).exists():
            raise ValidationError("A DICOM study is still being unpacked: sign when its slices have been analysed.")
        scans = list(Scan.objects.filter(case=locked).values_list("status", "review_id"))
        if not scans:
            raise ValidationError("This case has no scans to sign.")
        if any(status in ScanStatus.IN_FLIGHT for status, _ in scans):
            raise ValidationError("Some scans are still being analysed: sign when they are done.")
        if any(status == ScanStatus.HELD for status, _ in scans):
            raise ValidationError("A scan is held (text burnt into the image): release or discard it first.")
        unread = sum(1 for status, review in scans if status == ScanStatus.DONE and review is None)
        if unread:
            done = sum(1 for status, _ in scans if status == ScanStatus.DONE)
            raise ValidationError(f"Review every analysed scan before signing: {unread} of {done} have no reading.")
        locked.signed_by, locked.signed_at, locked.conclusion = signer, timezone.now(), conclusion
        locked.save(update_fields=["signed_by", "signed_at", "conclusion"])
        audit_record(actor=signer, action=AuditAction.REVIEW, obj=locked, detail="signed")
    case.signed_by, case.signed_at, case.conclusion = locked.signed_by, locked.signed_at, locked.conclusion
    return case
