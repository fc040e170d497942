"""Reviews: a radiologist's reading of an analysed scan (the one place reviews are written)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.clinics import require_same_clinic
from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.cases.models import Case

from ..labels import READING_LABELS, Label
from ..models import Scan, ScanReview, ScanStatus


def scan_review(
    *,
    scan: Scan,
    reviewer: User,
    agrees: bool,
    label: str = "",
    note: str = "",
    addendum: str = "",
    reading_required: bool = True,
) -> ScanReview:
    """Record a radiologist's reading of an analysed scan: agreement with the model, or the
    label the scan really shows (`labels.READING_LABELS`, "other" included), and a note.

    Every review is a new row; the scan points at the latest, which is the one that counts.
    On a signed case the review needs an `addendum` saying why, which is kept on the case.
    This is the one place reviews are written (pages and API both call it).
    `reading_required=False` is for the first review endpoint's clients only: their
    disagreement may not say what the scan shows (counted in agreement, not in the confusion
    matrix or the readings export).
    """
    require_same_clinic(reviewer, scan)
    if not reviewer.can_review:
        raise PermissionDenied("Only radiologists can review predictions.")
    if scan.status != ScanStatus.DONE:
        raise ValidationError("Only an analysed scan can be reviewed.")
    model_label = scan.prediction.label
    label = (label or "").strip()
    if label and label not in READING_LABELS:
        choices = ", ".join(f"{value} ({Label.name_of(value)})" for value in READING_LABELS)
        raise ValidationError({"label": f"Unknown reading {label!r}; choose one of {choices}."})
    if agrees:
        if label and label != model_label:
            raise ValidationError(
                {"label": f"You agree with {Label.name_of(model_label)} but read {Label.name_of(label)}: choose one."}
            )
        label = model_label
    elif not label and reading_required:
        raise ValidationError({"label": "Say what the scan shows: choose the reading that replaces the model's."})
    elif label == model_label:
        raise ValidationError(
            {"label": f"The model also says {Label.name_of(label)}: record agreement, or choose another reading."}
        )
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=scan.case_id)  # serialises with case_sign
        note_for_addendum = addendum.strip()
        kept_addendum = None
        if case.is_signed:
            if not note_for_addendum:
                raise ValidationError({"addendum": "This case is signed: a new reading needs an addendum saying why."})
            from apps.cases.services import case_addendum_add

            kept_addendum = case_addendum_add(case=case, author=reviewer, text=note_for_addendum)
        review = ScanReview.objects.create(
            scan=scan,
            reviewer=reviewer,
            agrees=agrees,
            label=label,
            note=note.strip(),
            reviewed_at=timezone.now(),
            addendum=kept_addendum,
        )
        Scan.objects.filter(pk=scan.pk).update(review=review)
        detail = "agrees" if agrees else "disagrees"
        audit_record(actor=reviewer, action=AuditAction.REVIEW, obj=scan, detail=detail)
    scan.review = review
    return review
